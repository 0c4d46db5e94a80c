//! A chat room: every text message goes to every connected client, on
//! every worker, encoded once.
//!
//! ```text
//! cargo run --release -p ringws --example chat -- 127.0.0.1:9002
//! ```
//!
//! The only argument is the address to listen on (default
//! `127.0.0.1:9002`). Runs until killed.

use std::net::SocketAddr;
use std::process::ExitCode;

use ringws::{ClosedInfo, Conn, ConnId, Handler, Message, PreparedMessage, Server};

struct Chat;

/// Each connection's chosen name (`/name <nick>`), "anonymous" until then.
#[derive(Default)]
struct Nick(Option<String>);

impl Handler for Chat {
    type ConnData = Nick;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = conn.send_text("welcome; set a name with `/name <nick>`");
        conn.broadcast(&PreparedMessage::text(&format!("{:?} joined", conn.id())));
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let Message::Text(text) = message else {
            let _ = conn.close(1003, "text only");
            return;
        };
        if let Some(nick) = text.strip_prefix("/name ") {
            conn.data_mut().0 = Some(nick.trim().to_owned());
            return;
        }
        let nick = conn.data().0.as_deref().unwrap_or("anonymous");
        let line = PreparedMessage::text(&format!("{nick}: {text}"));
        conn.broadcast(&line);
    }

    fn on_closed(&mut self, id: ConnId, nick: Nick, info: &ClosedInfo) {
        let name = nick.0.unwrap_or_else(|| format!("{id:?}"));
        println!(
            "{name} left: {} ({:?}, {:?})",
            info.code, info.initiator, info.kind
        );
    }
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("invalid address {addr:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(addr).start(|_worker| Chat) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("chat server listening on ws://{}", server.local_addr());
    match server.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
