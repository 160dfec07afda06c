//! Command-line definition and dispatch. Add a subcommand by adding a module, a variant
//! of [`Command`] and a match arm in [`run`].

mod max_pods;

use clap::{Parser, Subcommand};

/// Operator tools for the Rust VPC CNI node agent.
#[derive(Debug, Parser)]
#[command(name = "vpc-cni", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the max-pods value for an instance type (same rules as the EKS AMI's
    /// max-pods-calculator.sh).
    MaxPods(max_pods::Args),
}

/// Runs a parsed command line and returns what to print on stdout.
pub fn run(cli: Cli) -> anyhow::Result<String> {
    match cli.command {
        Command::MaxPods(args) => max_pods::run(&args),
    }
}
