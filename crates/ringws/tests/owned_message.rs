//! `Handler::on_owned_message`: messages ringws assembled in a buffer of
//! their own (fragmented, or larger than a receive buffer) reach it, and a
//! handler that takes the buffer sends it back intact without a copy;
//! messages read in place still reach `on_message`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use ringws::{Conn, Handler, Message, OwnedMessage};

#[derive(Default)]
struct Deliveries {
    borrowed: AtomicUsize,
    owned_text: AtomicUsize,
    owned_binary: AtomicUsize,
}

/// Echoes borrowed messages by copying and owned ones by handing their
/// buffer to the send queue.
struct OwningEcho {
    deliveries: Arc<Deliveries>,
}

impl Handler for OwningEcho {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        self.deliveries.borrowed.fetch_add(1, Ordering::SeqCst);
        match message {
            Message::Text(text) => conn.send_text(text).unwrap(),
            Message::Binary(bytes) => conn.send_binary(bytes).unwrap(),
        }
    }

    fn on_owned_message(&mut self, conn: &mut Conn<'_, Self>, message: &mut OwnedMessage) {
        if let Some(text) = message.take_text() {
            self.deliveries.owned_text.fetch_add(1, Ordering::SeqCst);
            conn.send_text_owned(text).unwrap();
        } else {
            self.deliveries.owned_binary.fetch_add(1, Ordering::SeqCst);
            conn.send_binary_owned(message.take_bytes()).unwrap();
        }
        // Taken: what is left is empty.
        assert!(message.message().is_empty());
    }
}

fn payload(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + seed) % 251) as u8).collect()
}

#[test]
fn assembled_messages_are_handed_over_and_sent_back_by_ownership() {
    let deliveries = Arc::new(Deliveries::default());
    let server = {
        let deliveries = deliveries.clone();
        builder()
            .workers(1)
            .max_message_size(4 << 20)
            .start(move |_worker| OwningEcho {
                deliveries: deliveries.clone(),
            })
            .expect("server starts")
    };
    let mut client = RawClient::connect(server.local_addr());

    // Fits a receive buffer: read in place, borrowed.
    let small = payload(512, 1);
    client.write_frame(true, 0x2, &small);
    assert_eq!(client.read_frame().unwrap(), (true, 0x2, small));

    // Larger than a receive buffer (32 KiB by default): assembled. Sizes
    // across the 16-bit and 64-bit length encodings, many in a row so the
    // buffers sent away come back to the pool and are reused.
    let mut expected_binary = 0;
    for (round, len) in [32_761, 32_768, 65_535, 65_536, 1 << 20]
        .into_iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let message = payload(len, round);
        client.write_frame(true, 0x2, &message);
        let (fin, opcode, echoed) = client.read_frame().unwrap();
        assert_eq!(
            (fin, opcode, echoed.len()),
            (true, 0x2, len),
            "round {round}"
        );
        assert!(echoed == message, "round {round}: {len} bytes differ");
        expected_binary += 1;
    }

    // Fragmented text, split inside a multi-byte character: assembled.
    let text = "ownership: é€𝄞 ".repeat(100);
    let bytes = text.as_bytes();
    client.write_frame(false, 0x1, &bytes[..13]);
    client.write_frame(false, 0x0, &bytes[13..700]);
    client.write_frame(true, 0x0, &bytes[700..]);
    let (fin, opcode, echoed) = client.read_frame().unwrap();
    assert_eq!((fin, opcode), (true, 0x1));
    assert_eq!(echoed, bytes);

    assert_eq!(deliveries.borrowed.load(Ordering::SeqCst), 1);
    assert_eq!(
        deliveries.owned_binary.load(Ordering::SeqCst),
        expected_binary
    );
    assert_eq!(deliveries.owned_text.load(Ordering::SeqCst), 1);
    let stats = server.stats();
    assert_eq!(stats.total.messages_in, stats.total.messages_out);
    drop(client);
    server.shutdown(WAIT);
}
