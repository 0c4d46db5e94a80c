//! A WebSocket client: connects, sends one message, prints the echo, closes
//! with 1000.
//!
//! ```text
//! cargo run -p ringws --example echo -- 127.0.0.1:9001 &
//! cargo run -p ringws --example client -- ws://127.0.0.1:9001/ "hello"
//! ```
//!
//! Arguments: the URL (default `ws://127.0.0.1:9001/`) and the message
//! (default `hello from ringws`). Exits with failure if the connection does
//! not open, the server closes uncleanly, or nothing comes back within
//! 10 seconds.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use ringws::{
    Client, CloseCode, CloseKind, ClosedInfo, Conn, ConnId, ConnectError, Handler, Message,
};

/// How the one connection ended.
enum Outcome {
    Closed(ClosedInfo),
    Failed(ConnectError),
}

/// Sends the message on open, prints the first message back, closes.
struct OneShot {
    message: String,
    outcome: mpsc::Sender<Outcome>,
}

impl Handler for OneShot {
    type ConnData = ();

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        match conn.subprotocol() {
            Some(protocol) => println!("connected (subprotocol {protocol})"),
            None => println!("connected"),
        }
        if let Err(error) = conn.send_text(&self.message) {
            eprintln!("cannot send: {error}");
            let _ = conn.close(1011, "cannot send");
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        match message {
            Message::Text(text) => println!("echo: {text}"),
            Message::Binary(bytes) => println!("echo: {} bytes of binary", bytes.len()),
        }
        // Already closing after the first echo is fine: the call does nothing.
        let _ = conn.close(1000, "done");
    }

    fn on_closed(&mut self, _id: ConnId, _data: (), info: &ClosedInfo) {
        let _ = self.outcome.send(Outcome::Closed(info.clone()));
    }

    fn on_connect_failed(&mut self, _id: Option<ConnId>, _data: (), error: &ConnectError) {
        let _ = self.outcome.send(Outcome::Failed(error.clone()));
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let message = args
        .next()
        .unwrap_or_else(|| "hello from ringws".to_owned());
    let (tx, outcome) = mpsc::channel();
    let client = match Client::builder().workers(1).start(move |_worker| OneShot {
        message: message.clone(),
        outcome: tx.clone(),
    }) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = client.connect(&url, ()) {
        eprintln!("cannot connect to {url}: {error}");
        client.shutdown(Duration::from_secs(1));
        return ExitCode::FAILURE;
    }
    let status = match outcome.recv_timeout(Duration::from_secs(10)) {
        Ok(Outcome::Closed(info)) if info.kind == CloseKind::Clean => {
            println!("closed cleanly ({})", info.code.0);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Closed(info)) => {
            eprintln!(
                "closed {:?} with code {} (we sent {:?})",
                info.kind,
                info.code.0,
                info.sent.map(|CloseCode(code)| code)
            );
            ExitCode::FAILURE
        }
        Ok(Outcome::Failed(error)) => {
            eprintln!("cannot connect to {url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("no answer from {url} within 10 s");
            ExitCode::FAILURE
        }
    };
    client.shutdown(Duration::from_secs(1));
    status
}
