//! Tests of meta.
