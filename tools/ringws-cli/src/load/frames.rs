//! Outgoing frames without per-message allocation.
//!
//! Every message carries the same prebuilt payload, but a client must mask
//! each frame with a fresh random key, so each frame is its own bytes.
//! [`append_frame`] writes a frame at the end of the buffer the reactor's
//! `Io::send_with` hands out: the frames a worker sends to one connection
//! in one loop turn share one pooled buffer and leave in one system call,
//! and the buffer returns to the reactor's pool once the kernel has taken
//! it. In steady state a message costs a header copy and one masked copy of
//! the payload, and no allocation; a large echo becomes the next payload in
//! place ([`mask_echo_as_next_payload`]), with no copy at all.

use ringws_proto::connection::FrameHead;

use crate::load::config::PayloadKind;

/// The payload every message carries: pseudo-random bytes for binary,
/// printable ASCII for text (so it is valid UTF-8).
pub(crate) fn build_payload(size: usize, kind: PayloadKind, seed: u64) -> Box<[u8]> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..size)
        .map(|_| match kind {
            PayloadKind::Binary => rng.u8(..),
            PayloadKind::Text => rng.u8(b' '..=b'~'),
        })
        .collect()
}

/// Bytes [`append_frame`] appends for `head` and a payload of `payload_len`.
pub(crate) fn frame_len(head: &FrameHead, payload_len: usize) -> usize {
    head.as_bytes().len() + payload_len
}

/// Appends `head` and `payload` masked with `head`'s key to `out`.
pub(crate) fn append_frame(out: &mut Vec<u8>, head: &FrameHead, payload: &[u8]) {
    out.extend_from_slice(head.as_bytes());
    head.append_payload(out, payload);
}

/// Turns the echo just received, in place, into the masked payload of the
/// next frame (`head`'s), checking in the same pass that the echo is
/// `payload`: one read of the echo instead of a comparison and a masked
/// copy of `payload` into a new buffer. An echo that differs is never sent
/// on: `payload` is masked over it. Returns whether the echo matched.
///
/// # Panics
///
/// If `echo` and `payload` differ in length.
pub(crate) fn mask_echo_as_next_payload(head: &FrameHead, echo: &mut [u8], payload: &[u8]) -> bool {
    if head.mask_payload_comparing(echo, payload) {
        return true;
    }
    head.write_payload(echo, payload);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringws_proto::{Config, Connection, Event, Opcode, Role};

    fn client(seed: u64) -> Connection {
        Connection::new(
            Role::Client,
            Config {
                mask_seed: seed,
                ..Config::default()
            },
        )
    }

    /// Decodes a client frame the way a server would.
    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut server = Connection::new(Role::Server, Config::default());
        let mut bytes = frame.to_vec();
        let read = server.read(&mut bytes);
        assert_eq!(read.consumed, frame.len());
        match read.event {
            Some(Event::Binary(payload)) => payload.into_owned(),
            Some(Event::Text(text)) => text.into_owned().into_bytes(),
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn frames_decode_to_the_payload_with_fresh_keys() {
        let payload = build_payload(300, PayloadKind::Binary, 7);
        let mut conn = client(1);
        let mut keys = Vec::new();
        for _ in 0..8 {
            let head = conn
                .data_frame_head(Opcode::Binary, payload.len(), true)
                .unwrap();
            keys.push(head.mask().unwrap());
            let mut frame = Vec::new();
            append_frame(&mut frame, &head, &payload);
            assert_eq!(frame.len(), frame_len(&head, payload.len()));
            assert_eq!(decode(&frame), payload.to_vec());
        }
        keys.sort_unstable();
        keys.dedup();
        assert!(keys.len() > 1, "every frame gets its own key");
    }

    #[test]
    fn a_matching_echo_becomes_the_next_payload_and_a_bad_echo_is_never_sent_on() {
        let payload = build_payload(1000, PayloadKind::Binary, 11);
        let mut conn = client(4);
        for corrupt in [false, true] {
            let head = conn
                .data_frame_head(Opcode::Binary, payload.len(), true)
                .unwrap();
            let mut echo = payload.to_vec();
            if corrupt {
                echo[999] ^= 1;
            }
            let matched = mask_echo_as_next_payload(&head, &mut echo, &payload);
            assert_eq!(matched, !corrupt);
            let mut frame = head.as_bytes().to_vec();
            frame.extend_from_slice(&echo);
            assert_eq!(frame.len(), frame_len(&head, payload.len()));
            assert_eq!(
                decode(&frame),
                payload.to_vec(),
                "the payload goes out (corrupted echo: {corrupt})"
            );
        }
    }

    #[test]
    fn frames_appended_to_one_buffer_decode_in_order() {
        let payload = build_payload(64, PayloadKind::Text, 3);
        assert!(std::str::from_utf8(&payload).is_ok());
        let mut conn = client(2);
        let mut buffer = b"queued before".to_vec();
        let mut ends = Vec::new();
        for _ in 0..5 {
            let head = conn.data_frame_head(Opcode::Text, 64, true).unwrap();
            append_frame(&mut buffer, &head, &payload);
            ends.push(buffer.len());
        }
        let mut start = b"queued before".len();
        for end in ends {
            assert_eq!(decode(&buffer[start..end]), payload.to_vec());
            start = end;
        }
    }
}
