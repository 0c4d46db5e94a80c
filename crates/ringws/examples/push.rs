//! Server push from a background thread: every connection gets a tick
//! every second through its `ConnHandle`, from outside the workers.
//!
//! ```text
//! cargo run --release -p ringws --example push -- 127.0.0.1:9003 [seconds]
//! ```
//!
//! Arguments: the address to listen on (default `127.0.0.1:9003`) and how
//! many seconds to run before a graceful shutdown (default: forever).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringws::{ClosedInfo, Conn, ConnHandle, ConnId, Handler, Message, Server};

/// Connections the pusher thread serves, registered by the workers.
type Registry = Arc<Mutex<HashMap<ConnId, ConnHandle>>>;

struct Push {
    registry: Registry,
}

impl Handler for Push {
    type ConnData = ();

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conn.id(), conn.handle());
    }

    fn on_message(&mut self, _conn: &mut Conn<'_, Self>, _message: Message<'_>) {}

    fn on_closed(&mut self, id: ConnId, _data: (), _info: &ClosedInfo) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("invalid address {addr:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run_for = args
        .next()
        .and_then(|secs| secs.parse().ok())
        .map(Duration::from_secs);
    let registry = Registry::default();
    let workers_registry = registry.clone();
    let server = match Server::bind(addr).start(move |_worker| Push {
        registry: workers_registry.clone(),
    }) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("push server listening on ws://{}", server.local_addr());
    let started = Instant::now();
    let mut tick = 0u64;
    while !matches!(run_for, Some(limit) if started.elapsed() >= limit) {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        let handles: Vec<ConnHandle> = registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let message = format!("tick {tick}");
        for handle in handles {
            // Gone: it closed since the snapshot; on_closed unregisters it.
            let _ = handle.send_text(&message);
        }
    }
    let report = server.shutdown(Duration::from_secs(5));
    println!(
        "shut down: {} connections, {} closed cleanly, {} forced",
        report.total, report.clean, report.forced
    );
    ExitCode::SUCCESS
}
