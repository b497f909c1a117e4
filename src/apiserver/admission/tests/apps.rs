//! Tests of apps.
