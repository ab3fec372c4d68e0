//! One module per subcommand.

pub mod collect;
pub mod compare;
pub mod eval;
pub mod experiment;
pub mod generate;
pub mod gold;
pub mod play;
pub mod replay;
pub mod revise;
pub mod self_train;
pub mod serve;
pub mod serve_model;
pub mod setup;
pub mod train;
