//! `ringws`: serve, load-test and benchmark WebSocket servers.

use clap::Parser;

/// ringws: an io_uring WebSocket engine and load generator.
#[derive(Debug, Parser)]
#[command(name = "ringws", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
