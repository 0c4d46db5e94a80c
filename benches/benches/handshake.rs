//! Opening handshake: what a worker spends reading an upgrade request, and
//! what the load generator spends checking the `101` answer, once per
//! connection (the churn workload does little else).
//!
//! - `server/minimal`: the request `ringws load` sends (five headers).
//! - `server/browser`: a request as Chromium sends it, with its user agent,
//!   cookies, caches and extension offer (thirteen headers).
//! - `client/response`: the `101` answer to the minimal request.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringws_proto::handshake::{ClientHandshake, RequestKind, ServerHandshake};

const NONCE: [u8; 16] = *b"ringws-bench-key";

const BROWSER_REQUEST: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: 127.0.0.1:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:9001\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn parse_upgrade(request: &[u8]) -> usize {
    let mut parser = ServerHandshake::default();
    match parser.parse(request) {
        Ok(Some(parsed)) => match parsed.kind {
            RequestKind::Upgrade(upgrade) => upgrade.key().len() + parsed.head_len,
            RequestKind::PlainHttp(_) => panic!("not an upgrade"),
        },
        other => panic!("request did not parse: {other:?}"),
    }
}

fn handshake(c: &mut Criterion) {
    let client = ClientHandshake::new("127.0.0.1", 9001, "/", NONCE, &[], &[]).unwrap();
    let minimal = client.request().to_vec();
    let mut response = Vec::new();
    let mut parser = ServerHandshake::default();
    match parser.parse(&minimal) {
        Ok(Some(parsed)) => match parsed.kind {
            RequestKind::Upgrade(upgrade) => upgrade
                .write_switching_protocols(None, &[], &mut response)
                .unwrap(),
            RequestKind::PlainHttp(_) => panic!("not an upgrade"),
        },
        other => panic!("request did not parse: {other:?}"),
    }

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("server/minimal", |b| {
        b.iter(|| parse_upgrade(black_box(&minimal)))
    });
    group.bench_function("server/browser", |b| {
        b.iter(|| parse_upgrade(black_box(BROWSER_REQUEST)))
    });
    group.bench_function("client/response", |b| {
        b.iter_batched_ref(
            || client.clone(),
            |client| {
                let parsed = client.parse_response(black_box(&response));
                matches!(parsed, Ok(Some(_)))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
