//! `ringws`: serve, load-test and benchmark WebSocket servers.
//!
//! Subcommands: `serve` (a ringws echo or broadcast server), `load` (the
//! load generator) and `bench` (the one-command benchmark).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringws_cli::bench::cli::BenchArgs;
use ringws_cli::load::cli::LoadArgs;
use ringws_cli::serve::ServeArgs;

/// ringws: an io_uring WebSocket engine and load generator.
#[derive(Debug, Parser)]
#[command(name = "ringws", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // The help texts come from the argument structs.
    Serve(ServeArgs),
    Load(LoadArgs),
    Bench(BenchArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => ringws_cli::serve::main(args),
        Command::Load(args) => ringws_cli::load::cli::main(args),
        Command::Bench(args) => ringws_cli::bench::cli::main(args),
    }
}
