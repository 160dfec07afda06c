//! Command-line definition and dispatch. Add a subcommand by adding a module, a variant
//! of [`Command`] and a match arm in [`run`].

mod max_pods;
pub mod plan;
pub mod status;

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
    /// Subnet calculator: simulate the warm pools of a fleet of nodes (ipamd's own planner)
    /// and report pods hosted, subnet addresses used and left, ENIs, IPs and prefixes.
    Plan(plan::Args),
    /// Summarise a running node from ipamd's introspection and metrics endpoints.
    Status(status::Args),
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document with stable field names (see docs/cli.md).
    Json,
}

/// Runs a parsed command line and returns what to print on stdout.
pub fn run(cli: Cli) -> anyhow::Result<String> {
    match cli.command {
        Command::MaxPods(args) => max_pods::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Status(args) => status::run(&args),
    }
}

/// Left-aligned columns separated by two spaces; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
