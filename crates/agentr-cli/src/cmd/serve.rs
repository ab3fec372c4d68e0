//! `agentr serve`: a native environment behind AgentGym's HTTP API (see `crate::gym`), a
//! drop-in for AgentGym's environment servers.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::envs::{self, EnvName, EnvOptions};
use crate::gym::{GymServer, Limits, Natives};
use crate::http::{self, ServerOptions};

/// Arguments of `agentr serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment to serve.
    #[arg(long, value_enum)]
    pub(crate) env: EnvName,
    /// Port; 0 picks a free one. The bound address is printed to stderr as
    /// `listening on http://HOST:PORT`.
    #[arg(long, default_value_t = 8000)]
    pub(crate) port: u16,
    /// Address to bind (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Most environments held at once; `/create` beyond it evicts an idle one or answers
    /// 503 (default: 1024, or 8 for sciworld, whose environments are a JVM each).
    #[arg(long, value_name = "N")]
    pub(crate) max_envs: Option<usize>,
    /// Seconds an environment must have been untouched before a `/create` on a full server
    /// may evict it (the least recently used first; nothing is evicted while there is room).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub(crate) idle_timeout: u64,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) max_body_bytes: usize,
    #[command(flatten)]
    pub(crate) connections: http::ConnectionArgs,
    #[command(flatten)]
    pub(crate) env_options: EnvOptions,
}

pub fn run(args: Args) -> Result<()> {
    if args.env_options.agentgym.is_some() {
        bail!("agentr serve serves a native environment: leave out --agentgym");
    }
    let natives = match args.env {
        EnvName::Textcraft => Natives::TextCraft(envs::textcraft_env(&args.env_options)?),
        EnvName::Sciworld => Natives::SciWorld(envs::sciworld_config(&args.env_options)?),
        EnvName::Webshop => Natives::WebShop(envs::shop(&args.env_options)?),
    };
    let max_envs = args.max_envs.unwrap_or(match args.env {
        EnvName::Sciworld => 8,
        EnvName::Textcraft | EnvName::Webshop => 1024,
    });
    if max_envs == 0 || args.idle_timeout == 0 {
        bail!("--max-envs and --idle-timeout must be at least 1");
    }
    let idle_timeout = Duration::from_secs(args.idle_timeout);
    let server = GymServer::new(
        natives,
        Limits {
            max_envs,
            idle_timeout,
        },
    );
    let options = ServerOptions::new(
        args.max_body_bytes,
        Duration::from_secs(10),
        &args.connections,
    );
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let addr = format!("{host}:{}", args.port);
    let name = args.env.name();
    http::run(&addr, server, options, |bound| {
        tracing::info!(
            "serving {name} with AgentGym's HTTP API (at most {max_envs} environments, \
             idle ones evicted after {}s)",
            args.idle_timeout
        );
        // Plain, for scripts that wait for the address (a port of 0 picks a free one).
        eprintln!("listening on http://{bound}");
    })
    .with_context(|| format!("serving on {addr}"))?;
    tracing::info!("stopped");
    Ok(())
}
