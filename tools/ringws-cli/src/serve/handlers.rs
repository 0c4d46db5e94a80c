//! The handlers `ringws serve` runs: echo and broadcast.

use ringws::{Conn, Handler, Message, OwnedMessage, PreparedMessage};

/// Sends every message back to the connection it came from, with its type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        // A refused send (queue over its limit, connection closing) is
        // counted in the server's stats; an echo server has nothing better
        // to do with it.
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

/// Sends every message to every open connection on every worker, the sender
/// included, encoded once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast;

impl Handler for Broadcast {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let prepared = match message {
            Message::Text(text) => PreparedMessage::text(text),
            Message::Binary(bytes) => PreparedMessage::binary(bytes),
        };
        conn.broadcast(&prepared);
    }
}
