//! A WebSocket echo server.
//!
//! ```text
//! cargo run --release -p ringws --example echo -- 127.0.0.1:9001
//! ```
//!
//! The only argument is the address to listen on (default
//! `127.0.0.1:9001`; port 0 picks a free one). Runs until killed.

use std::net::SocketAddr;
use std::process::ExitCode;

use ringws::{Conn, Handler, Message, OwnedMessage, Server};

/// Sends every message back to the connection it came from.
struct Echo;

impl Handler for Echo {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        // A refused send (queue full, connection closing) is counted in the
        // server's stats; an echo server has nothing better to do with it.
        let _ = match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }

    fn on_owned_message(&mut self, conn: &mut Conn<'_, Self>, message: &mut OwnedMessage) {
        // A message assembled in a buffer of its own (the large ones) goes
        // back in that buffer: no copy.
        let _ = match message.take_text() {
            Some(text) => conn.send_text_owned(text),
            None => conn.send_binary_owned(message.take_bytes()),
        };
    }
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("invalid address {addr:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(addr).start(|_worker| Echo) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("echo server listening on ws://{}", server.local_addr());
    match server.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
