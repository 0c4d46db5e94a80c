//! Outgoing frames without per-message allocation.
//!
//! Every message carries the same prebuilt payload, but a client must mask
//! each frame with a fresh random key, so each frame is its own bytes. A
//! [`FramePool`] keeps frame buffers as `Arc<[u8]>`: the reactor holds a
//! clone only until the kernel has taken the bytes, after which the pool's
//! copy is unique again and is rewritten in place for the next frame. In
//! steady state a message costs a header copy and one masked copy of the
//! payload, and no allocation.

use std::collections::VecDeque;
use std::sync::Arc;

use ringws_proto::connection::FrameHead;
use ringws_reactor::Chunk;

use crate::load::config::PayloadKind;

/// Buffers examined for reuse before a new one is allocated.
const REUSE_PROBES: usize = 4;

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

/// Reusable frame buffers of one worker.
#[derive(Debug, Default)]
pub(crate) struct FramePool {
    /// Every buffer the pool owns, in use by the reactor or free; the front
    /// is the one sent longest ago, so the likeliest to be free.
    frames: VecDeque<Arc<[u8]>>,
    allocated: u64,
}

impl FramePool {
    /// A chunk holding `head` followed by `payload` masked with `head`'s key.
    pub(crate) fn frame(&mut self, head: &FrameHead, payload: &[u8]) -> Chunk {
        let head_bytes = head.as_bytes();
        let len = head_bytes.len() + payload.len();
        for _ in 0..REUSE_PROBES.min(self.frames.len()) {
            let Some(mut frame) = self.frames.pop_front() else {
                break;
            };
            if frame.len() == len {
                if let Some(bytes) = Arc::get_mut(&mut frame) {
                    write_frame(bytes, head, payload);
                    self.frames.push_back(frame.clone());
                    return Chunk::Shared(frame);
                }
            }
            self.frames.push_back(frame);
        }
        let mut bytes = vec![0u8; len];
        write_frame(&mut bytes, head, payload);
        let frame: Arc<[u8]> = Arc::from(bytes);
        self.allocated += 1;
        self.frames.push_back(frame.clone());
        Chunk::Shared(frame)
    }

    /// Buffers allocated so far (the pool's high-water mark of frames in
    /// the reactor's send queues at once, plus a few).
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
    }
}

fn write_frame(out: &mut [u8], head: &FrameHead, payload: &[u8]) {
    let head_bytes = head.as_bytes();
    let (header, body) = out.split_at_mut(head_bytes.len());
    header.copy_from_slice(head_bytes);
    head.write_payload(body, payload);
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
        let mut pool = FramePool::default();
        let mut keys = Vec::new();
        for _ in 0..8 {
            let head = conn
                .data_frame_head(Opcode::Binary, payload.len(), true)
                .unwrap();
            keys.push(head.mask().unwrap());
            let chunk = pool.frame(&head, &payload);
            assert_eq!(decode(chunk.as_bytes()), payload.to_vec());
        }
        keys.sort_unstable();
        keys.dedup();
        assert!(keys.len() > 1, "every frame gets its own key");
    }

    #[test]
    fn buffers_are_reused_once_the_reactor_lets_go() {
        let payload = build_payload(64, PayloadKind::Text, 3);
        assert!(std::str::from_utf8(&payload).is_ok());
        let mut conn = client(2);
        let mut pool = FramePool::default();
        let mut held = Vec::new();
        for _ in 0..3 {
            let head = conn.data_frame_head(Opcode::Text, 64, true).unwrap();
            held.push(pool.frame(&head, &payload));
        }
        assert_eq!(
            pool.allocated(),
            3,
            "frames in flight need their own buffers"
        );
        drop(held);
        for _ in 0..100 {
            let head = conn.data_frame_head(Opcode::Text, 64, true).unwrap();
            let chunk = pool.frame(&head, &payload);
            assert_eq!(decode(chunk.as_bytes()), payload.to_vec());
        }
        assert_eq!(
            pool.allocated(),
            3,
            "released buffers are rewritten, not reallocated"
        );
    }
}
