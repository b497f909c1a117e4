//! skiff: a Kubernetes distribution in one Rust executable.
//!
//! The executable's modes live in [`cli`]; everything it stores goes through [`store`];
//! the Kubernetes API is served by [`apiserver`] with the certificates of [`pki`].

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod k8s;
pub mod pki;
pub mod scheduler;
pub mod store;
