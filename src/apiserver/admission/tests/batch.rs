//! Tests of batch.
