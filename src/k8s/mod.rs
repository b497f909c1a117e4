//! Kubernetes helpers shared by every subsystem: label and field selectors, object
//! metadata and times.

pub mod cidr;
pub mod events;
pub mod fields;
pub mod labels;
pub mod meta;
pub mod pods;
pub mod quantity;
