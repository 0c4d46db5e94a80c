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
//!
//! ## Sequence numbers
//!
//! The first [`SEQ_LEN`] bytes of each payload (fewer in a shorter one)
//! carry the message's number on its connection, six bits per byte as
//! `b'0' + bits` (printable ASCII, so a Text payload stays UTF-8): an echo
//! names the message it answers, and a second copy of an echo, or one out
//! of order, is told from the echo awaited ([`classify_echo`]) instead of
//! being matched against a later message's send time. Writing and reading
//! the number costs a few byte operations per message.

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

/// Bytes at the start of a payload that carry its sequence number.
pub(crate) const SEQ_LEN: usize = 8;

// Masking in place starts the payload past the number at a key's first
// byte.
const _: () = assert!(SEQ_LEN.is_multiple_of(4));

/// Bits of the sequence number each of its bytes carries.
const SEQ_BITS_PER_BYTE: usize = 6;

/// Bytes of a `payload_len`-byte payload that carry its sequence number:
/// [`SEQ_LEN`], or all of a shorter payload.
pub(crate) fn seq_len(payload_len: usize) -> usize {
    payload_len.min(SEQ_LEN)
}

/// How many sequence numbers `seq_len` bytes tell apart (numbers wrap
/// there): 1 for none, at most 2^48.
pub(crate) fn seq_modulus(seq_len: usize) -> u64 {
    1 << (SEQ_BITS_PER_BYTE * seq_len)
}

/// Writes `seq` (modulo the field's [`seq_modulus`]) into `field`.
pub(crate) fn write_seq(field: &mut [u8], seq: u64) {
    for (index, byte) in field.iter_mut().enumerate() {
        *byte = b'0' + ((seq >> (SEQ_BITS_PER_BYTE * index)) & 0x3F) as u8;
    }
}

/// The sequence number in `field`; `None` if a byte is not one that
/// [`write_seq`] writes (the payload is not one of ours, or was altered).
pub(crate) fn read_seq(field: &[u8]) -> Option<u64> {
    let mut seq = 0;
    for (index, &byte) in field.iter().enumerate() {
        let bits = byte.wrapping_sub(b'0');
        if bits > 0x3F {
            return None;
        }
        seq |= u64::from(bits) << (SEQ_BITS_PER_BYTE * index);
    }
    Some(seq)
}

/// What a received message is to the messages of its connection, from the
/// sequence number it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EchoOrder {
    /// The echo of the oldest message awaiting one.
    Oldest,
    /// The echo of a later message awaiting one: the echoes of this many
    /// older ones were skipped.
    Skipping(usize),
    /// A copy of the echo of a message already answered (or given up on).
    Repeated,
    /// No message of ours: the number is unreadable, or one not sent yet.
    Unknown,
}

/// Places the echo carrying `seq` (`None`: unreadable) among the messages
/// of a connection that has sent `sent` messages (numbered from 0), the
/// last `in_flight` of them awaiting their echo, with numbers that wrap at
/// `modulus`. Numbers too short to tell the messages in flight apart
/// (`in_flight` at least half of `modulus`: a payload shorter than
/// [`SEQ_LEN`]) say nothing, and every echo is the oldest's.
pub(crate) fn classify_echo(
    seq: Option<u64>,
    sent: u64,
    in_flight: usize,
    modulus: u64,
) -> EchoOrder {
    let in_flight = in_flight as u64;
    if in_flight > 0 && in_flight >= modulus / 2 {
        return EchoOrder::Oldest;
    }
    let Some(seq) = seq else {
        return EchoOrder::Unknown;
    };
    let oldest = sent.saturating_sub(in_flight);
    // The modulus is a power of two.
    let ahead = seq.wrapping_sub(oldest) & (modulus - 1);
    if ahead < in_flight {
        return match ahead {
            0 => EchoOrder::Oldest,
            skipped => EchoOrder::Skipping(skipped as usize),
        };
    }
    let behind = modulus - ahead;
    if behind <= oldest {
        EchoOrder::Repeated
    } else {
        EchoOrder::Unknown
    }
}

/// Bytes [`append_frame`] appends for `head` and a payload of `payload_len`.
pub(crate) fn frame_len(head: &FrameHead, payload_len: usize) -> usize {
    head.as_bytes().len() + payload_len
}

/// Appends `head` and `payload` numbered `seq` (see [`write_seq`]),
/// masked with `head`'s key, to `out`.
pub(crate) fn append_frame(out: &mut Vec<u8>, head: &FrameHead, payload: &[u8], seq: u64) {
    out.extend_from_slice(head.as_bytes());
    let start = out.len();
    head.append_payload(out, payload);
    let field = &mut out[start..start + seq_len(payload.len())];
    write_seq(field, seq);
    head.mask_payload(field, 0);
}

/// Turns the echo just received, in place, into the masked payload of the
/// next frame (`head`'s), numbered `seq`, checking in the same pass that
/// the echo is `payload` past its sequence number (which the caller
/// checks): one read of the echo instead of a comparison and a masked copy
/// of `payload` into a new buffer. An echo that differs is never sent on:
/// `payload` is masked over it. Returns whether the echo matched.
///
/// # Panics
///
/// If `echo` and `payload` differ in length, or are shorter than
/// [`SEQ_LEN`].
pub(crate) fn mask_echo_as_next_payload(
    head: &FrameHead,
    echo: &mut [u8],
    payload: &[u8],
    seq: u64,
) -> bool {
    assert!(
        payload.len() >= SEQ_LEN,
        "a payload too short to mask in place"
    );
    // SEQ_LEN is a multiple of 4, so the rest starts at the mask key's
    // first byte, as `mask_payload_comparing` and `write_payload` expect.
    let (field, rest) = echo.split_at_mut(SEQ_LEN);
    let matched = head.mask_payload_comparing(rest, &payload[SEQ_LEN..]);
    if !matched {
        head.write_payload(rest, &payload[SEQ_LEN..]);
    }
    write_seq(field, seq);
    head.mask_payload(field, 0);
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringws_proto::{Config, Connection, Event, MaskSeed, Opcode, Role};

    fn client(seed: u64) -> Connection {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Connection::new(
            Role::Client,
            Config {
                mask_seed: MaskSeed::from_bytes(bytes),
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

    /// `payload` as message `seq` carries it.
    fn numbered(payload: &[u8], seq: u64) -> Vec<u8> {
        let mut numbered = payload.to_vec();
        write_seq(&mut numbered[..seq_len(payload.len())], seq);
        numbered
    }

    #[test]
    fn frames_decode_to_the_numbered_payload_with_fresh_keys() {
        let payload = build_payload(300, PayloadKind::Binary, 7);
        let mut conn = client(1);
        let mut keys = Vec::new();
        for seq in 0..8 {
            let head = conn
                .data_frame_head(Opcode::Binary, payload.len(), true)
                .unwrap();
            keys.push(head.mask().unwrap());
            let mut frame = Vec::new();
            append_frame(&mut frame, &head, &payload, seq);
            assert_eq!(frame.len(), frame_len(&head, payload.len()));
            let decoded = decode(&frame);
            assert_eq!(decoded, numbered(&payload, seq));
            assert_eq!(read_seq(&decoded[..SEQ_LEN]), Some(seq));
            assert_eq!(decoded[SEQ_LEN..], payload[SEQ_LEN..]);
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
            let mut echo = numbered(&payload, 41);
            if corrupt {
                echo[999] ^= 1;
            }
            let matched = mask_echo_as_next_payload(&head, &mut echo, &payload, 42);
            assert_eq!(matched, !corrupt);
            let mut frame = head.as_bytes().to_vec();
            frame.extend_from_slice(&echo);
            assert_eq!(frame.len(), frame_len(&head, payload.len()));
            assert_eq!(
                decode(&frame),
                numbered(&payload, 42),
                "the payload goes out numbered 42 (corrupted echo: {corrupt})"
            );
        }
    }

    #[test]
    fn sequence_numbers_round_trip_as_printable_ascii_and_wrap_at_the_modulus() {
        for len in 0..=SEQ_LEN {
            let modulus = seq_modulus(len);
            for seq in [0, 1, 63, 64, 4095, (1 << 48) - 1, 1 << 48, u64::MAX] {
                let mut field = vec![0; len];
                write_seq(&mut field, seq);
                assert!(field.iter().all(|byte| (b'0'..=b'o').contains(byte)));
                assert_eq!(read_seq(&field), Some(seq & (modulus - 1)), "{len} {seq}");
            }
        }
        assert_eq!(seq_modulus(SEQ_LEN), 1 << 48);
        assert_eq!(read_seq(b"0000000~"), None);
        assert_eq!(read_seq(&[b'0' ^ 0xFF; 8]), None);
    }

    #[test]
    fn echoes_are_placed_by_their_number() {
        use EchoOrder::*;
        let wide = seq_modulus(SEQ_LEN);
        // Messages 0..10 sent, 7..10 awaiting their echo.
        let cases = [
            (Some(7), Oldest),
            (Some(8), Skipping(1)),
            (Some(9), Skipping(2)),
            (Some(6), Repeated),
            (Some(0), Repeated),
            (Some(10), Unknown),
            (Some(wide - 1), Unknown),
            (None, Unknown),
        ];
        for (seq, order) in cases {
            assert_eq!(classify_echo(seq, 10, 3, wide), order, "{seq:?}");
        }
        // Nothing awaited: an echo repeats one, or is none of ours.
        assert_eq!(classify_echo(Some(9), 10, 0, wide), Repeated);
        assert_eq!(classify_echo(Some(10), 10, 0, wide), Unknown);
        assert_eq!(classify_echo(Some(0), 0, 0, wide), Unknown);
        // One byte of number (64 values) past its wrap: message 130 is 2.
        assert_eq!(classify_echo(Some(2), 131, 1, 64), Oldest);
        assert_eq!(classify_echo(Some(1), 131, 1, 64), Repeated);
        assert_eq!(classify_echo(Some(3), 131, 1, 64), Repeated, "message 67");
        assert_eq!(classify_echo(Some(5), 5, 1, 64), Unknown);
        // Too few values to tell the messages in flight apart, or none at
        // all (an empty payload): the oldest, in order.
        assert_eq!(classify_echo(Some(5), 100, 32, 64), Oldest);
        assert_eq!(classify_echo(Some(0), 100, 1, 1), Oldest);
        assert_ne!(classify_echo(Some(0), 100, 0, 1), Oldest);
    }

    #[test]
    fn frames_appended_to_one_buffer_decode_in_order() {
        let payload = build_payload(64, PayloadKind::Text, 3);
        assert!(std::str::from_utf8(&payload).is_ok());
        let mut conn = client(2);
        let mut buffer = b"queued before".to_vec();
        let mut ends = Vec::new();
        for seq in 0..5 {
            let head = conn.data_frame_head(Opcode::Text, 64, true).unwrap();
            append_frame(&mut buffer, &head, &payload, seq);
            ends.push(buffer.len());
        }
        let mut start = b"queued before".len();
        for (seq, end) in ends.into_iter().enumerate() {
            assert_eq!(decode(&buffer[start..end]), numbered(&payload, seq as u64));
            start = end;
        }
    }
}
