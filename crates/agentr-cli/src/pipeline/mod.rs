//! The stages of an Agent-R run as library calls that take typed settings and return typed
//! results; the commands of the binary map their arguments onto these and print.
//!
//! * [`gold`]: the expert's episodes as samples.
//! * [`compare`]: paired comparisons of two evaluations (success difference, bootstrap
//!   interval, McNemar p-value) and of their responses.
//! * [`files`]: what every stage does with its output folder.
//!
//! Each call takes a [`Reporter`](crate::report::Reporter) for its progress and lines.

pub mod compare;
pub mod files;
pub mod gold;
