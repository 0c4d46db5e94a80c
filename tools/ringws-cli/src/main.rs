//! `ringws`: load-test WebSocket servers.
//!
//! Subcommands: `load` (the load generator). `serve` and `bench` are not
//! part of this binary yet.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringws_cli::load::cli::LoadArgs;

/// ringws: an io_uring WebSocket engine and load generator.
#[derive(Debug, Parser)]
#[command(name = "ringws", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // The help text comes from `LoadArgs`.
    Load(LoadArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Load(args) => ringws_cli::load::cli::main(args),
    }
}
