//! Streaming UTF-8 validation of a 64 KiB text message fed in receive-sized
//! chunks, against one-shot validation of the same bytes.
//!
//! `one_shot_simdutf8` is `ringws_proto::utf8::validate_utf8`, a direct call to
//! `simdutf8::basic::from_utf8`; `one_shot_std` is `std::str::from_utf8`.
//! Chunk boundaries fall inside multi-byte code points, so the streaming runs
//! exercise the carry-over path.
//!
//! Run: `cargo bench -p ringws-benches --bench utf8`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws_proto::utf8::{validate_utf8, Utf8Validator};

const MESSAGE_LEN: usize = 64 << 10;
const CHUNK_LENS: [usize; 3] = [1 << 10, 4 << 10, 16 << 10];

/// 64 KiB of valid text mixing 1-, 2-, 3- and 4-byte code points, padded with
/// ASCII to the exact length.
fn mixed_text() -> Vec<u8> {
    const SAMPLE: &str = "The quick brown fox jumps over the lazy dog. \
        Größe, Straße, naïve café, Ελληνικά, кириллица; \
        日本語のテキスト、中文文本、한국어 텍스트; \
        emoji 🦀🚀🎉 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢. ";
    let mut text = String::with_capacity(MESSAGE_LEN);
    'fill: loop {
        for c in SAMPLE.chars() {
            if text.len() + c.len_utf8() > MESSAGE_LEN {
                break 'fill;
            }
            text.push(c);
        }
    }
    while text.len() < MESSAGE_LEN {
        text.push('.');
    }
    text.into_bytes()
}

fn bench_utf8(c: &mut Criterion) {
    let text = mixed_text();
    assert!(std::str::from_utf8(&text).is_ok());
    let mut group = c.benchmark_group("utf8");
    group.throughput(Throughput::Bytes(text.len() as u64));

    group.bench_function(BenchmarkId::new("one_shot_simdutf8", MESSAGE_LEN), |b| {
        b.iter(|| validate_utf8(black_box(&text)).is_ok())
    });
    group.bench_function(BenchmarkId::new("one_shot_std", MESSAGE_LEN), |b| {
        b.iter(|| std::str::from_utf8(black_box(&text)).is_ok())
    });

    let mut validator = Utf8Validator::new();
    for chunk_len in CHUNK_LENS {
        let name = format!("streaming_{}k_chunks", chunk_len >> 10);
        group.bench_function(BenchmarkId::new(name, MESSAGE_LEN), |b| {
            b.iter(|| {
                for chunk in black_box(&text).chunks(chunk_len) {
                    if validator.feed(chunk).is_err() {
                        break;
                    }
                }
                validator.finish().is_ok()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_utf8);
criterion_main!(benches);
