//! Shared driver for the frame_decode_{server,client} targets: feeds a byte
//! stream, split into receive buffers, through a `Connection` the way a
//! reactor does, and checks what must hold whatever the bytes are.
//!
//! Input layout (so seeds can be real WebSocket streams with a short prefix):
//! byte 0 holds flags (bit 0 small limits, bit 1 no auto Close reply, bit 2 no
//! auto Pong, bit 3 alternate chunk sizes with single bytes), byte 1 the
//! receive-buffer size (0: the whole stream at once), the rest is the stream.

use ringws_proto::connection::{Config, Connection, Event, MAX_UNCONSUMED_INPUT};
use ringws_proto::frame::{decode_header, Decoded, Opcode, Role};
use ringws_proto::MaskSeed;

pub fn run(role: Role, data: &[u8]) {
    let [flags, chunk_size, stream @ ..] = data else {
        return;
    };
    let config = Config {
        max_frame_size: if flags & 1 != 0 { 64 } else { 1 << 20 },
        max_message_size: if flags & 1 != 0 { 200 } else { 1 << 20 },
        mask_seed: MaskSeed::default(),
        auto_close_reply: flags & 2 == 0,
        auto_pong: flags & 4 == 0,
    };
    let alternate = flags & 8 != 0;
    let mut connection = Connection::new(role, config);
    let mut carried: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut errors = 0;
    let mut events_after_error = 0;
    let mut turn = 0usize;
    while !rest.is_empty() {
        let size = match (chunk_size, alternate && turn % 2 == 1) {
            (0, _) => rest.len(),
            (_, true) => 1,
            (&size, false) => usize::from(size),
        };
        turn += 1;
        let size = size.min(rest.len());
        let mut buffer = std::mem::take(&mut carried);
        buffer.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        let mut pos = 0;
        let len = buffer.len();
        // Every event consumes input, so this bound is never the limit.
        for _ in 0..=len {
            let read = connection.read(&mut buffer[pos..]);
            assert!(read.consumed <= len - pos);
            pos += read.consumed;
            let Some(event) = read.event else { break };
            if errors > 0 {
                events_after_error += 1;
            }
            if let Event::ProtocolError(err) = event {
                assert!(
                    matches!(err.close_code(), 1002 | 1007 | 1009),
                    "{err:?} carries {}",
                    err.close_code()
                );
                errors += 1;
            }
        }
        assert!(buffer.len() - pos < MAX_UNCONSUMED_INPUT);
        carried = buffer[pos..].to_vec();
    }
    assert!(errors <= 1 && events_after_error == 0);
    check_output(role, connection.pending_output());
}

/// Our output must be a valid frame stream of control frames with nothing
/// after a Close.
fn check_output(sender: Role, output: &[u8]) {
    let receiver = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut pos = 0;
    let mut closed = false;
    while pos < output.len() {
        assert!(!closed, "a frame after our Close");
        match decode_header(&output[pos..], receiver, 0) {
            Ok(Decoded::Complete { header, header_len }) => {
                assert!(
                    header.opcode.is_control(),
                    "only control frames are sent on our own"
                );
                closed = header.opcode == Opcode::Close;
                pos += header_len + header.payload_len as usize;
            }
            other => panic!("invalid output frame: {other:?}"),
        }
    }
    assert_eq!(pos, output.len());
}
