//! skiff: a Kubernetes distribution in one Rust executable.
//!
//! The executable's modes live in [`cli`]; everything it stores goes through [`store`].

pub mod cli;
pub mod store;
