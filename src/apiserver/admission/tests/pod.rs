//! Tests of pod.
