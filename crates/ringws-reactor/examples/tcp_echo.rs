//! A raw io_uring TCP echo server on the ringws reactor, with no WebSocket
//! framing: the "kernel floor" of the benchmark suite.
//!
//! ```text
//! cargo run --release -p ringws-reactor --example tcp_echo -- \
//!     --addr 127.0.0.1:9000 --workers 2 --cores 0,1
//! ```
//!
//! Flags: `--addr ADDR` (default 127.0.0.1:9000; port 0 picks one),
//! `--workers N` (default: available cores), `--cores LIST` (comma-separated
//! core ids to pin workers to; `off` disables pinning; default: auto),
//! `--buffers COUNT` and `--buffer-size BYTES` (provided receive buffers per
//! worker). Runs until killed; prints the bound address and each worker's
//! ring mode on startup.

use std::net::SocketAddr;
use std::process::ExitCode;

use ringws_reactor::{Config, ConnId, CorePinning, Ctx, Handler, Reactor};

/// Echoes every byte back on the connection it came from.
struct Echo;

impl Handler for Echo {
    type Conn = ();
    type Timer = ();
    type Command = ();

    fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, _conn: ConnId) -> Option<()> {
        Some(())
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        _: &mut (),
        data: &mut [u8],
    ) -> usize {
        // Sent from the receive buffer itself when it is 4 KiB or more,
        // copied into the turn's send buffer otherwise, as ringws's echo.
        let _ = ctx.io.send_with_payload(conn, &[], data);
        data.len()
    }
}

struct Options {
    addr: SocketAddr,
    workers: Option<usize>,
    pinning: CorePinning,
    buffers: u16,
    buffer_size: u32,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:9000".parse().map_err(|e| format!("{e}"))?,
        workers: None,
        pinning: CorePinning::Auto,
        buffers: 1024,
        buffer_size: 32 * 1024,
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => options.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--workers" => {
                options.workers = Some(value()?.parse().map_err(|e| format!("--workers: {e}"))?)
            }
            "--cores" => {
                let list = value()?;
                options.pinning = if list == "off" {
                    CorePinning::Off
                } else {
                    let cores = list
                        .split(',')
                        .map(|core| core.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("--cores: {e}"))?;
                    CorePinning::Cores(cores)
                };
            }
            "--buffers" => {
                options.buffers = value()?.parse().map_err(|e| format!("--buffers: {e}"))?
            }
            "--buffer-size" => {
                options.buffer_size = value()?
                    .parse()
                    .map_err(|e| format!("--buffer-size: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: tcp_echo [--addr ADDR] [--workers N] [--cores LIST|off] \
                            [--buffers COUNT] [--buffer-size BYTES]"
                        .to_owned(),
                )
            }
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::new()
        .listen(options.addr)
        .pinning(options.pinning)
        .recv_buffers(options.buffers, options.buffer_size);
    if let Some(workers) = options.workers {
        config = config.workers(workers);
    }
    let handle = match Reactor::start(config, |_| Echo) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("tcp_echo: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = handle.local_addr() {
        println!("listening on {addr}");
    }
    for worker in handle.workers() {
        println!(
            "worker {}: ring {}, core {}",
            worker.id.index(),
            worker.ring_mode,
            worker
                .pinned_core
                .map_or("unpinned".to_owned(), |core| core.to_string())
        );
    }
    match handle.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tcp_echo: {error}");
            ExitCode::FAILURE
        }
    }
}
