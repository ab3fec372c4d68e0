//! The stages of an Agent-R run as library calls that take typed settings and return typed
//! results; the commands of the binary map their arguments onto these and print.
//!
//! * [`compare`]: paired comparisons of two evaluations (success difference, bootstrap
//!   interval, McNemar p-value) and of their responses.

pub mod compare;
