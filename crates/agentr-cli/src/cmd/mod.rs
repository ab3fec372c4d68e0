//! One module per subcommand.

pub mod gold;
pub mod play;
pub mod replay;
pub mod setup;
