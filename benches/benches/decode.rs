//! Receive-path throughput: a 1 MiB stream of masked 512-byte binary frames,
//! as a server receives them, decoded and unmasked in place.
//!
//! Two paths, each reported twice (bytes/s in `decode_bytes`, frames/s in
//! `decode_frames`):
//!
//! - `header_unmask`: `frame::decode_header` + `mask::unmask` per frame, the
//!   codec alone;
//! - `connection_read`: `Connection::read` in the caller's loop, the whole
//!   receive path up to a borrowed `Event::Binary` per frame.
//!
//! And the send side, `encode_frames/client_head_and_payload`: a client's
//! `Connection::data_frame_head` (a fresh mask key each) and the masked
//! copy of a 512-byte payload after its header, 64 frames into one buffer,
//! as `ringws load` builds its messages.
//!
//! Run: `cargo bench -p ringws-benches --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringws_proto::connection::{Config, Connection, Event};
use ringws_proto::frame::{
    decode_header, encode_header, Decoded, FrameHeader, Opcode, Role, MAX_HEADER_LEN,
};
use ringws_proto::mask::unmask;

const PAYLOAD_LEN: usize = 512;
const STREAM_LEN: usize = 1 << 20;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Whole masked frames, as many as fit in `STREAM_LEN`; returns the stream
/// and its frame count.
fn masked_stream() -> (Vec<u8>, u64) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: Opcode::Binary,
        mask: Some(MASK),
        payload_len: PAYLOAD_LEN as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = encode_header(&header, &mut head);
    let frame_len = head_len + PAYLOAD_LEN;
    let frames = STREAM_LEN / frame_len;
    let mut stream = Vec::with_capacity(frames * frame_len);
    for frame in 0..frames {
        stream.extend_from_slice(&head[..head_len]);
        let start = stream.len();
        stream.extend((0..PAYLOAD_LEN).map(|i| (i * 31 + frame) as u8));
        unmask(&mut stream[start..], MASK, 0);
    }
    (stream, frames as u64)
}

/// The codec alone. Unmasking in place toggles each payload between masked
/// and clear, which leaves the headers, and the work per pass, unchanged.
fn decode_and_unmask(stream: &mut [u8]) -> u64 {
    let mut pos = 0;
    let mut checksum = 0u64;
    while pos < stream.len() {
        match decode_header(&stream[pos..], Role::Server, 0) {
            Ok(Decoded::Complete { header, header_len }) => {
                let start = pos + header_len;
                let end = start + header.payload_len as usize;
                if let Some(key) = header.mask {
                    unmask(&mut stream[start..end], key, 0);
                }
                checksum = checksum.wrapping_add(u64::from(stream[end - 1]));
                pos = end;
            }
            other => panic!("benchmark stream is malformed: {other:?}"),
        }
    }
    checksum
}

/// The receive path as a reactor drives it.
fn read_all(connection: &mut Connection, stream: &mut [u8]) -> u64 {
    let mut pos = 0;
    let mut checksum = 0u64;
    while pos < stream.len() {
        let read = connection.read(&mut stream[pos..]);
        match read.event {
            Some(Event::Binary(payload)) => checksum = checksum.wrapping_add(payload.len() as u64),
            other => panic!("unexpected {other:?}"),
        }
        pos += read.consumed;
    }
    checksum
}

fn bench_decode(c: &mut Criterion) {
    let (mut stream, frames) = masked_stream();
    let mut connection = Connection::new(Role::Server, Config::default());
    let throughputs = [
        ("decode_bytes", Throughput::Bytes(stream.len() as u64)),
        ("decode_frames", Throughput::Elements(frames)),
    ];
    for (name, throughput) in throughputs {
        let mut group = c.benchmark_group(name);
        group.throughput(throughput);
        group.bench_function("header_unmask", |b| {
            b.iter(|| decode_and_unmask(black_box(&mut stream[..])))
        });
        group.bench_function("connection_read", |b| {
            b.iter(|| read_all(&mut connection, black_box(&mut stream[..])))
        });
        group.finish();
    }
}

/// Frames written per iteration of the encode bench.
const ENCODED_FRAMES: usize = 64;

/// `ENCODED_FRAMES` masked frames of `payload` into `out`, as a client
/// builds them; returns the bytes written.
fn encode_frames(connection: &mut Connection, payload: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    for _ in 0..ENCODED_FRAMES {
        let head = connection
            .data_frame_head(Opcode::Binary, payload.len(), true)
            .expect("an open connection sends");
        out.extend_from_slice(head.as_bytes());
        head.append_payload(out, payload);
    }
    out.len()
}

fn bench_encode(c: &mut Criterion) {
    let mut connection = Connection::new(Role::Client, Config::default());
    let payload = vec![0x5a; PAYLOAD_LEN];
    let mut out = Vec::with_capacity(ENCODED_FRAMES * (PAYLOAD_LEN + MAX_HEADER_LEN));
    let mut group = c.benchmark_group("encode_frames");
    group.throughput(Throughput::Elements(ENCODED_FRAMES as u64));
    group.bench_function("client_head_and_payload", |b| {
        b.iter(|| encode_frames(&mut connection, black_box(&payload), &mut out))
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
