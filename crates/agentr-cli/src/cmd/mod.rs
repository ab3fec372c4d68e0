//! One module per subcommand.

pub mod collect;
pub mod compare;
pub mod eval;
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

pub(crate) use agentr_cli::pipeline::files::create_parent;

/// Reads a count that must be at least 1 (`--workers`).
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Parses `flags` as the arguments of the subcommand `name` would be (for tests of a
/// command's flags).
#[cfg(test)]
pub(crate) fn parse_flags<A: clap::Args + clap::FromArgMatches>(
    name: &str,
    flags: &[&str],
) -> Result<A, clap::Error> {
    #[derive(clap::Parser)]
    struct Command<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    <Command<A> as clap::Parser>::try_parse_from(std::iter::once(name).chain(flags.iter().copied()))
        .map(|command| command.args)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_start_at_one() {
        assert_eq!(super::at_least_one("2"), Ok(2));
        assert!(super::at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(super::at_least_one("-1").is_err());
        assert!(super::at_least_one("two").is_err());
    }
}
