//! Tests of service.
