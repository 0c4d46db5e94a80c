//! Arbitrary byte streams through the live server: the same reactor,
//! receive path, parser and state machine a real peer reaches. Each case
//! upgrades a raw connection, sends a mix of well-formed, malformed and
//! random frames split at arbitrary points, then half-closes. Whatever the
//! bytes, the server must not panic, must end the connection (a Close with a
//! code valid on the wire and then EOF, or EOF/reset without a Close), and
//! must keep serving other connections.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use common::upgrade_request;
use proptest::prelude::*;

/// Upper bound on how long one connection may take to end.
const END_WITHIN: Duration = Duration::from_secs(10);

struct Live {
    addr: SocketAddr,
    server: ringws::ServerHandle,
}

/// One echo server shared by every case (small limits, so 1009 is reachable).
fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let (server, events) = common::start(
            common::builder()
                .max_frame_size(4096)
                .max_message_size(8192)
                .ping_interval(None)
                .close_timeout(Duration::from_secs(2)),
        );
        // Nobody reads the recorder's events here; keep the receiver alive.
        std::mem::forget(events);
        Live {
            addr: server.local_addr(),
            server,
        }
    })
}

#[derive(Debug, Clone)]
enum Piece {
    /// Arbitrary bytes.
    Raw(Vec<u8>),
    /// A frame with arbitrary header fields.
    Frame {
        fin: bool,
        rsv: u8,
        opcode: u8,
        masked: bool,
        /// 0: shortest length form, 1: 16-bit, 2: 64-bit.
        length_form: u8,
        payload: Vec<u8>,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(Piece::Raw),
        6 => (
            any::<bool>(),
            prop_oneof![6 => Just(0u8), 1 => 0u8..8],
            prop_oneof![4 => 0u8..3, 2 => 8u8..11, 1 => 0u8..16],
            prop_oneof![9 => Just(true), 1 => Just(false)],
            prop_oneof![8 => Just(0u8), 1 => 1u8..3],
            prop_oneof![
                4 => proptest::collection::vec(any::<u8>(), 0..32),
                2 => "\\PC{0,40}".prop_map(String::into_bytes),
                1 => proptest::collection::vec(any::<u8>(), 100..300),
            ],
        )
            .prop_map(|(fin, rsv, opcode, masked, length_form, payload)| Piece::Frame {
                fin,
                rsv,
                opcode,
                masked,
                length_form,
                payload,
            }),
    ]
}

fn encode(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Frame {
                fin,
                rsv,
                opcode,
                masked,
                length_form,
                payload,
            } => {
                out.push((u8::from(*fin) << 7) | ((rsv & 7) << 4) | (opcode & 0xF));
                let mask_bit = if *masked { 0x80 } else { 0 };
                let len = payload.len();
                match (length_form, len) {
                    (0, 0..=125) => out.push(mask_bit | len as u8),
                    (0 | 1, _) if len <= 0xFFFF => {
                        out.push(mask_bit | 126);
                        out.extend_from_slice(&(len as u16).to_be_bytes());
                    }
                    _ => {
                        out.push(mask_bit | 127);
                        out.extend_from_slice(&(len as u64).to_be_bytes());
                    }
                }
                let key = [0x9A, 0x11, 0x5C, 0xE3];
                if *masked {
                    out.extend_from_slice(&key);
                    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
                } else {
                    out.extend_from_slice(payload);
                }
            }
        }
    }
    out
}

/// Reads what the server sends until EOF or reset; returns the bytes.
fn read_until_end(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    stream.set_read_timeout(Some(END_WITHIN)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(received),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("connection not ended within {END_WITHIN:?}"))
            }
            // A reset is a clean abort.
            Err(_) => return Ok(received),
        }
    }
}

/// Walks the server's frames; returns the Close code it sent, if any.
fn close_code_sent(received: &[u8]) -> Result<Option<u16>, String> {
    let mut at = 0;
    while at + 2 <= received.len() {
        let opcode = received[at] & 0x0F;
        if received[at + 1] & 0x80 != 0 {
            return Err("server frame is masked".into());
        }
        let (len, header) = match received[at + 1] & 0x7F {
            126 if at + 4 <= received.len() => (
                u16::from_be_bytes([received[at + 2], received[at + 3]]) as usize,
                4,
            ),
            127 if at + 10 <= received.len() => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&received[at + 2..at + 10]);
                (u64::from_be_bytes(len) as usize, 10)
            }
            126 | 127 => return Ok(None),
            len => (len as usize, 2),
        };
        let Some(payload) = received.get(at + header..at + header + len) else {
            // Cut short by a reset after a partial write: nothing to judge.
            return Ok(None);
        };
        if opcode == 0x8 {
            return match payload.len() {
                0 => Ok(Some(1005)),
                1 => Err("1-byte Close payload sent".into()),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                    if !valid {
                        return Err(format!("server sent close code {code}"));
                    }
                    if std::str::from_utf8(&payload[2..]).is_err() {
                        return Err("close reason is not UTF-8".into());
                    }
                    let trailing = received.len() - (at + header + len);
                    if trailing != 0 {
                        return Err(format!("{trailing} bytes sent after the Close"));
                    }
                    Ok(Some(code))
                }
            };
        }
        at += header + len;
    }
    Ok(None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn any_byte_stream_ends_the_connection_cleanly(
        pieces in proptest::collection::vec(piece(), 0..12),
        cuts in proptest::collection::vec(1usize..64, 0..8),
    ) {
        let live = live();
        let bytes = encode(&pieces);
        let mut stream = TcpStream::connect(live.addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(upgrade_request("/", "").as_bytes()).unwrap();
        // Send in pieces so frames straddle receive buffers.
        let mut rest = &bytes[..];
        for cut in cuts {
            let (now, later) = rest.split_at(cut.min(rest.len()));
            if stream.write_all(now).is_err() {
                break;
            }
            rest = later;
        }
        let _ = stream.write_all(rest);
        let _ = stream.shutdown(Shutdown::Write);
        let received = read_until_end(&mut stream).map_err(TestCaseError::fail)?;
        let head_end = received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| TestCaseError::fail("no 101 response"))?
            + 4;
        prop_assert!(received.starts_with(b"HTTP/1.1 101"));
        close_code_sent(&received[head_end..]).map_err(TestCaseError::fail)?;
    }
}

/// After every case, the server still serves: a fresh connection echoes and
/// nothing is left open. Runs after the property in the same process when
/// both run in one binary; on its own it still checks the server works.
#[test]
fn server_still_serves_after_arbitrary_input() {
    let live = live();
    let mut client = common::RawClient::connect(live.addr);
    client.write_frame(true, 0x1, b"still here");
    let (fin, opcode, payload) = client.read_frame().expect("echo");
    assert!(fin);
    assert_eq!(opcode, 0x1);
    assert_eq!(payload, b"still here");
    drop(client);
    common::wait_stats(&live.server, |stats| {
        stats.total.open == 0 || stats.total.open == 1
    });
}
