//! Tests of cron.
