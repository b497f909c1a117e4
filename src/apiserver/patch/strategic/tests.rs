//! Tests of the strategic merge patch.
