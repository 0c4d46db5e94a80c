//! Unmasking throughput of every implementation this CPU can run, next to
//! `copy_from_slice` of the same size as the memory-bandwidth yardstick.
//!
//! Group `unmask`: buffers as the allocator returns them (16-byte aligned or
//! better). Group `unmask_after_header`: the buffer starts 6 bytes into an
//! allocation, where a masked client frame's payload starts after a 2-byte
//! header and a 4-byte mask; only the run-time choice and the copy run there.
//!
//! Group `masked_copy`: building a client frame from a shared payload,
//! `mask_into` (one pass into an initialised buffer) and `mask_extend` (one
//! pass appended to a `Vec`) against a copy followed by an in-place unmask;
//! and a load generator's next frame built from a checked echo,
//! `mask_comparing` (one pass, in place) against a comparison followed by
//! `mask_extend` of the payload.
//!
//! Run: `cargo bench -p ringws-benches --bench unmask`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws_proto::mask::{mask_comparing, mask_extend, mask_into, unmask, unmask_with, UnmaskImpl};

const SIZES: [usize; 6] = [16, 128, 512, 4 << 10, 16 << 10, 1 << 20];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const HEADER_LEN: usize = 6;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn bench_unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = payload(size);

        for imp in UnmaskImpl::available() {
            group.bench_function(BenchmarkId::new(imp.name(), size), |b| {
                // Unmasking in place toggles the buffer; the work per call is
                // the same either way.
                b.iter(|| unmask_with(imp, black_box(&mut buf[..]), black_box(MASK), black_box(0)))
            });
        }

        group.bench_function(BenchmarkId::new("dispatch", size), |b| {
            b.iter(|| unmask(black_box(&mut buf[..]), black_box(MASK), black_box(0)))
        });

        let src = payload(size);
        let mut dst = vec![0u8; size];
        group.bench_function(BenchmarkId::new("copy_from_slice", size), |b| {
            b.iter(|| black_box(&mut dst[..]).copy_from_slice(black_box(&src[..])))
        });
    }
    group.finish();
}

fn bench_unmask_after_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask_after_header");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut frame = payload(HEADER_LEN + size);
        group.bench_function(BenchmarkId::new("dispatch", size), |b| {
            b.iter(|| {
                unmask(
                    black_box(&mut frame[HEADER_LEN..]),
                    black_box(MASK),
                    black_box(0),
                )
            })
        });

        let src = payload(HEADER_LEN + size);
        let mut dst = vec![0u8; HEADER_LEN + size];
        group.bench_function(BenchmarkId::new("copy_from_slice", size), |b| {
            b.iter(|| {
                black_box(&mut dst[HEADER_LEN..]).copy_from_slice(black_box(&src[HEADER_LEN..]))
            })
        });
    }
    group.finish();
}

fn bench_masked_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("masked_copy");
    for size in [512, 4 << 10, 16 << 10] {
        group.throughput(Throughput::Bytes(size as u64));
        let src = payload(size);
        let mut dst = vec![0u8; size];
        group.bench_function(BenchmarkId::new("mask_into", size), |b| {
            b.iter(|| mask_into(black_box(&mut dst[..]), black_box(&src[..]), MASK, 0))
        });
        let mut appended = Vec::with_capacity(size);
        group.bench_function(BenchmarkId::new("mask_extend", size), |b| {
            b.iter(|| {
                appended.clear();
                mask_extend(black_box(&mut appended), black_box(&src[..]), MASK, 0);
            })
        });
        let received = src.clone();
        group.bench_function(BenchmarkId::new("compare_then_mask_extend", size), |b| {
            b.iter(|| {
                appended.clear();
                let matched = black_box(&received[..]) == black_box(&src[..]);
                mask_extend(black_box(&mut appended), black_box(&src[..]), MASK, 0);
                matched
            })
        });
        let mut echo = src.clone();
        group.bench_function(BenchmarkId::new("mask_comparing", size), |b| {
            b.iter(|| mask_comparing(black_box(&mut echo[..]), black_box(&src[..]), MASK, 0))
        });
        group.bench_function(BenchmarkId::new("copy_then_unmask", size), |b| {
            b.iter(|| {
                let out = black_box(&mut dst[..]);
                out.copy_from_slice(black_box(&src[..]));
                unmask(out, MASK, 0);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_unmask,
    bench_unmask_after_header,
    bench_masked_copy
);
criterion_main!(benches);
