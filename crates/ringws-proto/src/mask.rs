//! Unmasking payloads in place (RFC 6455 §5.3).
//!
//! `offset` is the position, within the frame payload, of `buf[0]`. It lets a
//! payload split across two receive buffers be unmasked piece by piece: unmask
//! the first piece with offset 0 and the second with the first piece's length.
//!
//! [`unmask`] handles buffers under 32 bytes inline, a word at a time, and
//! hands longer ones to the fastest implementation this CPU supports, chosen
//! once on first use. The implementations, from slowest to fastest:
//!
//! - [`UnmaskImpl::Bytewise`]: one byte at a time, the reference every other
//!   path is tested against; never chosen.
//! - [`UnmaskImpl::Word`]: eight bytes at a time on aligned `u64` words; the
//!   fallback for architectures without a SIMD path.
//! - [`UnmaskImpl::Sse2`] (x86_64 without AVX2), [`UnmaskImpl::Avx2`]
//!   (x86_64 with AVX2), [`UnmaskImpl::Neon`] (aarch64): 16 or 32 bytes per
//!   instruction.
//!
//! The masked copies a client sends with ([`mask_into`], [`mask_extend`],
//! [`mask_comparing`]) take the AVX2 path when [`unmask`] chose AVX2, and
//! portable 32-byte block loops otherwise.
//!
//! `docs/benchmarks.md` ("Unmask", "Masked copy") has the measurements behind
//! the choices.
//! Every path is tested equal to the byte loop for every length up to 256,
//! every payload offset mod 4 and every alignment up to 32, plus large and
//! random cases.

use std::sync::OnceLock;

/// Buffers shorter than this are unmasked inline, a word at a time: the call
/// through the run-time choice costs more than SIMD saves.
const SIMD_MIN_LEN: usize = 32;

/// One way of unmasking. All of them produce identical bytes; they differ in
/// speed and in which CPUs can run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnmaskImpl {
    /// One byte per step; the reference implementation.
    Bytewise,
    /// Eight bytes per step on aligned `u64` words; runs everywhere.
    Word,
    /// 16 bytes per step with SSE2 (x86_64 only).
    Sse2,
    /// 32 bytes per step with AVX2 (x86_64 with AVX2 only).
    Avx2,
    /// 16 bytes per step with NEON (aarch64 only).
    Neon,
}

impl UnmaskImpl {
    /// Every implementation, whether this CPU can run it or not.
    pub const ALL: [UnmaskImpl; 5] = [
        UnmaskImpl::Bytewise,
        UnmaskImpl::Word,
        UnmaskImpl::Sse2,
        UnmaskImpl::Avx2,
        UnmaskImpl::Neon,
    ];

    /// The implementations this CPU can run, slowest first.
    pub fn available() -> Vec<UnmaskImpl> {
        Self::ALL
            .into_iter()
            .filter(|imp| imp.is_available())
            .collect()
    }

    /// Whether this CPU can run this implementation.
    pub fn is_available(self) -> bool {
        match self {
            UnmaskImpl::Bytewise | UnmaskImpl::Word => true,
            #[cfg(target_arch = "x86_64")]
            UnmaskImpl::Sse2 => std::arch::is_x86_feature_detected!("sse2"),
            #[cfg(target_arch = "x86_64")]
            UnmaskImpl::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            UnmaskImpl::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// A short lowercase name, for benchmark labels.
    pub fn name(self) -> &'static str {
        match self {
            UnmaskImpl::Bytewise => "bytewise",
            UnmaskImpl::Word => "word",
            UnmaskImpl::Sse2 => "sse2",
            UnmaskImpl::Avx2 => "avx2",
            UnmaskImpl::Neon => "neon",
        }
    }

    /// The implementation [`unmask`] uses on this CPU.
    pub fn selected() -> UnmaskImpl {
        static SELECTED: OnceLock<UnmaskImpl> = OnceLock::new();
        *SELECTED.get_or_init(Self::detect_fastest)
    }

    fn detect_fastest() -> UnmaskImpl {
        // Ordered by measured speed, fastest first (see docs/benchmarks.md).
        [UnmaskImpl::Avx2, UnmaskImpl::Neon, UnmaskImpl::Sse2]
            .into_iter()
            .find(|imp| imp.is_available())
            .unwrap_or(UnmaskImpl::Word)
    }
}

/// XORs `buf` in place with `mask`, starting at payload position `offset`,
/// using the fastest implementation this CPU supports.
#[inline]
pub fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    if buf.len() < SIMD_MIN_LEN {
        unmask_short(buf, mask, offset);
        return;
    }
    let imp = UnmaskImpl::selected();
    // `selected` only returns implementations that passed `is_available`.
    run_available(imp, buf, mask, offset);
}

/// Unmasks with a chosen implementation; for tests and benchmarks.
///
/// # Panics
///
/// If this CPU cannot run `imp` (see [`UnmaskImpl::is_available`]).
pub fn unmask_with(imp: UnmaskImpl, buf: &mut [u8], mask: [u8; 4], offset: usize) {
    assert!(
        imp.is_available(),
        "unmask implementation {imp:?} is not available on this CPU"
    );
    run_available(imp, buf, mask, offset);
}

/// Runs `imp`, which the caller has checked with [`UnmaskImpl::is_available`].
#[inline]
fn run_available(imp: UnmaskImpl, buf: &mut [u8], mask: [u8; 4], offset: usize) {
    match imp {
        UnmaskImpl::Bytewise => unmask_bytewise(buf, mask, offset),
        UnmaskImpl::Word => unmask_word(buf, mask, offset),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `is_available`, i.e. the CPU has SSE2.
        UnmaskImpl::Sse2 => unsafe { x86::unmask_sse2(buf, mask, offset) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `is_available`, i.e. the CPU has AVX2.
        UnmaskImpl::Avx2 => unsafe { x86::unmask_avx2(buf, mask, offset) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the caller checked `is_available`, i.e. the CPU has NEON.
        UnmaskImpl::Neon => unsafe { arm::unmask_neon(buf, mask, offset) },
        // Not compiled for this architecture, so never available.
        #[allow(unreachable_patterns)]
        _ => unmask_word(buf, mask, offset),
    }
}

/// The reference implementation every faster path must equal.
pub fn unmask_bytewise(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        // Wrapping: only `offset mod 4` matters, and 2^64 is a multiple of 4.
        *b ^= mask[offset.wrapping_add(i) & 3];
    }
}

/// Bytes per step of the masked copies: a fixed-size block of plain XORs
/// that the compiler turns into the target's widest vector operations.
const COPY_BLOCK: usize = 32;

/// The rotated key repeated over a [`COPY_BLOCK`]; blocks keep the key's
/// phase because `COPY_BLOCK` is a multiple of 4.
fn block_key(key: [u8; 4]) -> [u8; COPY_BLOCK] {
    std::array::from_fn(|i| key[i & 3])
}

#[cfg(target_arch = "x86_64")]
/// Whether the masked copies below run their AVX2 path, chosen along with
/// [`unmask`]'s AVX2.
#[inline]
fn copies_use_avx2(len: usize) -> bool {
    len >= SIMD_MIN_LEN && UnmaskImpl::selected() == UnmaskImpl::Avx2
}

/// Writes `src` masked with `mask` (from payload position `offset`) into
/// `dst`: a masked copy in one pass, for a sender that builds each frame from
/// a shared payload (a copy followed by an in-place XOR reads and writes
/// the bytes twice).
///
/// # Panics
///
/// If `dst` and `src` differ in length.
pub fn mask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4], offset: usize) {
    assert_eq!(dst.len(), src.len(), "mask_into: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if copies_use_avx2(src.len()) {
        // SAFETY: `copies_use_avx2` saw AVX2 chosen, which `is_available` checked.
        return unsafe { x86::mask_into_avx2(dst, src, mask, offset) };
    }
    mask_into_portable(dst, src, mask, offset);
}

#[inline(always)]
fn mask_into_portable(dst: &mut [u8], src: &[u8], mask: [u8; 4], offset: usize) {
    let key = rotated_mask(mask, offset);
    let block = block_key(key);
    let mut dst_blocks = dst.chunks_exact_mut(COPY_BLOCK);
    let mut src_blocks = src.chunks_exact(COPY_BLOCK);
    for (out, input) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((out, input), key) in out.iter_mut().zip(input).zip(&block) {
            *out = input ^ key;
        }
    }
    let dst_rest = dst_blocks.into_remainder();
    for (i, (out, input)) in dst_rest.iter_mut().zip(src_blocks.remainder()).enumerate() {
        *out = input ^ key[i & 3];
    }
}

/// Appends `src` masked with `mask` (from payload position `offset`) to
/// `out` in one pass: unlike growing `out` and calling [`mask_into`], the new
/// bytes are written once, not zeroed first.
pub fn mask_extend(out: &mut Vec<u8>, src: &[u8], mask: [u8; 4], offset: usize) {
    let start = out.len();
    out.reserve(src.len());
    let spare = &mut out.spare_capacity_mut()[..src.len()];
    mask_uninit(spare, src, mask, offset);
    // SAFETY: `reserve` made room for `src.len()` more bytes, and the masked
    // copy wrote every one of them (whole blocks, then the rest).
    unsafe { out.set_len(start + src.len()) };
}

/// Writes every byte of `dst` (as long as `src`) with `src` masked.
fn mask_uninit(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8], mask: [u8; 4], offset: usize) {
    #[cfg(target_arch = "x86_64")]
    if copies_use_avx2(src.len()) {
        // SAFETY: `copies_use_avx2` saw AVX2 chosen, which `is_available` checked.
        return unsafe { x86::mask_uninit_avx2(dst, src, mask, offset) };
    }
    mask_uninit_portable(dst, src, mask, offset);
}

#[inline(always)]
fn mask_uninit_portable(
    dst: &mut [std::mem::MaybeUninit<u8>],
    src: &[u8],
    mask: [u8; 4],
    offset: usize,
) {
    let key = rotated_mask(mask, offset);
    let block = block_key(key);
    let mut dst_blocks = dst.chunks_exact_mut(COPY_BLOCK);
    let mut src_blocks = src.chunks_exact(COPY_BLOCK);
    for (dst, input) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((dst, input), key) in dst.iter_mut().zip(input).zip(&block) {
            dst.write(input ^ key);
        }
    }
    let dst_rest = dst_blocks.into_remainder();
    for (i, (dst, input)) in dst_rest.iter_mut().zip(src_blocks.remainder()).enumerate() {
        dst.write(input ^ key[i & 3]);
    }
}

/// Masks `buf` in place with `mask` (from payload position `offset`), like
/// [`unmask`], and tells whether `buf` equalled `expected` before, in the
/// same pass: a client that sends on what it has just received (a load
/// generator checking an echo and sending it as the next message) reads
/// each byte once instead of comparing it and then masking it.
///
/// # Panics
///
/// If `buf` and `expected` differ in length.
pub fn mask_comparing(buf: &mut [u8], expected: &[u8], mask: [u8; 4], offset: usize) -> bool {
    assert_eq!(buf.len(), expected.len(), "mask_comparing: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if copies_use_avx2(buf.len()) {
        // SAFETY: `copies_use_avx2` saw AVX2 chosen, which `is_available` checked.
        return unsafe { x86::mask_comparing_avx2(buf, expected, mask, offset) };
    }
    mask_comparing_portable(buf, expected, mask, offset)
}

#[inline(always)]
fn mask_comparing_portable(buf: &mut [u8], expected: &[u8], mask: [u8; 4], offset: usize) -> bool {
    let key = rotated_mask(mask, offset);
    let block = block_key(key);
    // Differences are OR-ed into a block and tested once at the end, so the
    // loop has no branch and vectorises like the plain masked copies.
    let mut differences = [0u8; COPY_BLOCK];
    let mut blocks = buf.chunks_exact_mut(COPY_BLOCK);
    let mut expected_blocks = expected.chunks_exact(COPY_BLOCK);
    for (bytes, wanted) in (&mut blocks).zip(&mut expected_blocks) {
        for (((byte, wanted), key), difference) in bytes
            .iter_mut()
            .zip(wanted)
            .zip(&block)
            .zip(&mut differences)
        {
            *difference |= *byte ^ wanted;
            *byte ^= key;
        }
    }
    let mut rest_differs = 0u8;
    let rest = blocks.into_remainder();
    for (i, (byte, wanted)) in rest.iter_mut().zip(expected_blocks.remainder()).enumerate() {
        rest_differs |= *byte ^ wanted;
        *byte ^= key[i & 3];
    }
    rest_differs == 0 && differences.iter().all(|&difference| difference == 0)
}

/// The four mask bytes in the order they apply from payload position `offset`.
#[inline]
fn rotated_mask(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let o = offset & 3;
    [
        mask[o],
        mask[(o + 1) & 3],
        mask[(o + 2) & 3],
        mask[(o + 3) & 3],
    ]
}

/// Eight bytes at a time on aligned words; the head and tail that do not fill
/// an aligned word go through the byte loop.
#[inline]
fn unmask_word(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // SAFETY: every bit pattern is a valid `u64`, and `align_to_mut` only hands
    // out the correctly aligned middle as words.
    let (head, words, tail) = unsafe { buf.align_to_mut::<u64>() };
    unmask_bytewise(head, mask, offset);
    let words_offset = offset.wrapping_add(head.len());
    let quad = rotated_mask(mask, words_offset);
    let word_mask = u64::from_ne_bytes([
        quad[0], quad[1], quad[2], quad[3], quad[0], quad[1], quad[2], quad[3],
    ]);
    for word in words.iter_mut() {
        *word ^= word_mask;
    }
    // Each word is 8 bytes, so the tail starts at the same position mod 4.
    unmask_bytewise(tail, mask, words_offset);
}

/// For buffers under [`SIMD_MIN_LEN`] bytes and the SIMD paths' last bytes:
/// eight bytes at a time without regard to alignment (at most three words,
/// where aligning first would cost more than it saves), then the byte loop.
#[inline]
fn unmask_short(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let quad = rotated_mask(mask, offset);
    let word_mask = u64::from_ne_bytes([
        quad[0], quad[1], quad[2], quad[3], quad[0], quad[1], quad[2], quad[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let unmasked = u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]) ^ word_mask;
        word.copy_from_slice(&unmasked.to_ne_bytes());
    }
    // Words are 8 bytes, so the rest starts at the same position mod 4.
    unmask_bytewise(words.into_remainder(), mask, offset);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Both paths XOR whole vectors only. The loop runs over vector-aligned
    //! addresses (for buffers long enough to be worth it); the bytes before
    //! and after it are covered by one unaligned vector at each end that
    //! overlaps the loop's range. Those two edge vectors are loaded before
    //! the loop stores anything and stored after it, XORed with the full key:
    //! the overlapping lanes then receive exactly the bytes the loop wrote,
    //! and no load ever reads a recent, partially overlapping store (which
    //! would stall on store forwarding).

    use super::{rotated_mask, unmask_short};
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_loadu_si256, _mm256_or_si256, _mm256_set1_epi32,
        _mm256_setzero_si256, _mm256_storeu_si256, _mm256_testz_si256, _mm256_xor_si256,
        _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    };
    use std::mem::MaybeUninit;

    /// From this length on, the loop starts at a vector-aligned address so
    /// that none of its loads or stores splits a cache line.
    const ALIGN_MIN_LEN: usize = 256;

    /// The mask as one 32-bit lane, in the order it applies from `offset`.
    #[inline(always)]
    fn mask_lane(mask: [u8; 4], offset: usize) -> i32 {
        i32::from_ne_bytes(rotated_mask(mask, offset))
    }

    /// Where the aligned loop starts: past a head that reaches `W`-byte
    /// alignment for long buffers, at 0 otherwise.
    #[inline(always)]
    fn loop_start<const W: usize>(buf: &[u8]) -> usize {
        match buf.as_ptr().align_offset(W) {
            head if head < W && buf.len() >= ALIGN_MIN_LEN => head,
            _ => 0,
        }
    }

    /// The `N` bytes at `start` of `buf`; callers keep `start + N <= buf.len()`.
    #[inline(always)]
    fn array_at<const N: usize>(buf: &[u8], start: usize) -> &[u8; N] {
        <&[u8; N]>::try_from(&buf[start..start + N]).unwrap()
    }

    /// The `N` bytes at `start` of `buf`; callers keep `start + N <= buf.len()`.
    #[inline(always)]
    fn array_at_mut<const N: usize>(buf: &mut [u8], start: usize) -> &mut [u8; N] {
        <&mut [u8; N]>::try_from(&mut buf[start..start + N]).unwrap()
    }

    #[target_feature(enable = "sse2")]
    fn load128(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: `bytes` is 16 readable bytes; `loadu` needs no alignment.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    #[target_feature(enable = "sse2")]
    fn store128(bytes: &mut [u8; 16], value: __m128i) {
        // SAFETY: `bytes` is 16 writable bytes; `storeu` needs no alignment.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), value) }
    }

    #[target_feature(enable = "sse2")]
    fn xor128_in_place(bytes: &mut [u8], key: __m128i) {
        let bytes = array_at_mut::<16>(bytes, 0);
        store128(bytes, _mm_xor_si128(load128(bytes), key));
    }

    #[target_feature(enable = "avx2")]
    fn load256(bytes: &[u8; 32]) -> __m256i {
        // SAFETY: `bytes` is 32 readable bytes; `loadu` needs no alignment.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx2")]
    fn store256(bytes: &mut [u8; 32], value: __m256i) {
        // SAFETY: `bytes` is 32 writable bytes; `storeu` needs no alignment.
        unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), value) }
    }

    #[target_feature(enable = "avx2")]
    fn xor256_in_place(bytes: &mut [u8], key: __m256i) {
        let bytes = array_at_mut::<32>(bytes, 0);
        store256(bytes, _mm256_xor_si256(load256(bytes), key));
    }

    /// SSE2 unmasking: 64 bytes per loop iteration.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE2.
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn unmask_sse2(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        const W: usize = 16;
        let len = buf.len();
        if len < W {
            return unmask_short(buf, mask, offset);
        }
        let start = loop_start::<W>(buf);
        let end = len - (len - start) % W;
        let last = len - W;
        let head = load128(array_at::<W>(buf, 0));
        let tail = load128(array_at::<W>(buf, last));

        let key = _mm_set1_epi32(mask_lane(mask, offset.wrapping_add(start)));
        let mut blocks = buf[start..end].chunks_exact_mut(4 * W);
        for block in &mut blocks {
            for lane in block.chunks_exact_mut(W) {
                xor128_in_place(lane, key);
            }
        }
        for lane in blocks.into_remainder().chunks_exact_mut(W) {
            xor128_in_place(lane, key);
        }

        if start != 0 {
            let key = _mm_set1_epi32(mask_lane(mask, offset));
            store128(array_at_mut::<W>(buf, 0), _mm_xor_si128(head, key));
        }
        if end != len {
            let key = _mm_set1_epi32(mask_lane(mask, offset.wrapping_add(last)));
            store128(array_at_mut::<W>(buf, last), _mm_xor_si128(tail, key));
        }
    }

    /// Stores the edge vectors of an in-place AVX2 pass (`head` and `tail`,
    /// loaded before its aligned loop over `start..end` stored anything)
    /// where the loop did not cover them, XORed with the key at their
    /// positions: the lanes they share with the loop get the bytes the loop
    /// wrote.
    #[target_feature(enable = "avx2")]
    fn store_edges_avx2(
        buf: &mut [u8],
        (start, end): (usize, usize),
        (head, tail): (__m256i, __m256i),
        mask: [u8; 4],
        offset: usize,
    ) {
        const W: usize = 32;
        if start != 0 {
            let key = _mm256_set1_epi32(mask_lane(mask, offset));
            store256(array_at_mut::<W>(buf, 0), _mm256_xor_si256(head, key));
        }
        let last = buf.len() - W;
        if end != buf.len() {
            let key = _mm256_set1_epi32(mask_lane(mask, offset.wrapping_add(last)));
            store256(array_at_mut::<W>(buf, last), _mm256_xor_si256(tail, key));
        }
    }

    /// The masked copy into `dst` with AVX2.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_into_avx2(dst: &mut [u8], src: &[u8], mask: [u8; 4], offset: usize) {
        assert_eq!(dst.len(), src.len(), "mask_into: lengths differ");
        if src.len() < 32 {
            return super::mask_into_portable(dst, src, mask, offset);
        }
        // SAFETY: `dst` has `src.len()` writable bytes; the caller
        // guarantees AVX2.
        unsafe { mask_to_avx2(dst.as_mut_ptr(), src, mask, offset) }
    }

    /// [`mask_into_avx2`] into memory not yet initialised.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_uninit_avx2(
        dst: &mut [MaybeUninit<u8>],
        src: &[u8],
        mask: [u8; 4],
        offset: usize,
    ) {
        assert_eq!(dst.len(), src.len(), "mask_uninit: lengths differ");
        if src.len() < 32 {
            return super::mask_uninit_portable(dst, src, mask, offset);
        }
        // SAFETY: `dst` has `src.len()` writable bytes, which are only
        // written; the caller guarantees AVX2.
        unsafe { mask_to_avx2(dst.as_mut_ptr().cast(), src, mask, offset) }
    }

    /// Writes `src` masked to `dst`, 32 bytes per step. The vector at
    /// `len - 32` overlaps the loop's last one when `len` is not a multiple
    /// of 32; both write the same bytes, computed from the unchanged `src`.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2; `src.len()` is at least 32; `dst` is valid
    /// for `src.len()` bytes of writes and does not overlap `src`.
    #[target_feature(enable = "avx2")]
    unsafe fn mask_to_avx2(dst: *mut u8, src: &[u8], mask: [u8; 4], offset: usize) {
        const W: usize = 32;
        let len = src.len();
        let key = _mm256_set1_epi32(mask_lane(mask, offset));
        for (start, input) in (0..).step_by(W).zip(src.chunks_exact(W)) {
            let masked = _mm256_xor_si256(load256(array_at::<W>(input, 0)), key);
            // SAFETY: `start + W <= len`, and `dst` has `len` writable bytes.
            unsafe { _mm256_storeu_si256(dst.wrapping_add(start).cast(), masked) };
        }
        if !len.is_multiple_of(W) {
            let last = len - W;
            let key = _mm256_set1_epi32(mask_lane(mask, offset.wrapping_add(last)));
            let masked = _mm256_xor_si256(load256(array_at::<W>(src, last)), key);
            // SAFETY: `last + W == len`, and `dst` has `len` writable bytes.
            unsafe { _mm256_storeu_si256(dst.wrapping_add(last).cast(), masked) };
        }
    }

    /// Masks `buf` in place and compares it with `expected`, 32 bytes per
    /// step, with the edge vectors of [`unmask_avx2`]: they are loaded, and
    /// compared, before the loop stores anything. Differences are OR-ed into
    /// vectors tested once at the end, so the loop has no branch.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_comparing_avx2(
        buf: &mut [u8],
        expected: &[u8],
        mask: [u8; 4],
        offset: usize,
    ) -> bool {
        const W: usize = 32;
        let len = buf.len();
        if len < W {
            return super::mask_comparing_portable(buf, expected, mask, offset);
        }
        let start = loop_start::<W>(buf);
        let end = len - (len - start) % W;
        let last = len - W;
        let head = load256(array_at::<W>(buf, 0));
        let tail = load256(array_at::<W>(buf, last));
        let zero = _mm256_setzero_si256();
        let mut differences = _mm256_or_si256(
            _mm256_xor_si256(head, load256(array_at::<W>(expected, 0))),
            _mm256_xor_si256(tail, load256(array_at::<W>(expected, last))),
        );

        let key = _mm256_set1_epi32(mask_lane(mask, offset.wrapping_add(start)));
        // Four accumulators, one per lane of a block, so the OR chains run
        // side by side instead of one after another.
        let mut block_differences = [differences, zero, zero, zero];
        let mut blocks = buf[start..end].chunks_exact_mut(4 * W);
        let mut wanted_blocks = expected[start..end].chunks_exact(4 * W);
        for (block, wanted) in (&mut blocks).zip(&mut wanted_blocks) {
            for (i, accumulator) in block_differences.iter_mut().enumerate() {
                let lane = array_at_mut::<W>(block, i * W);
                let bytes = load256(lane);
                let wanted = load256(array_at::<W>(wanted, i * W));
                *accumulator = _mm256_or_si256(*accumulator, _mm256_xor_si256(bytes, wanted));
                store256(lane, _mm256_xor_si256(bytes, key));
            }
        }
        let [a, b, c, d] = block_differences;
        differences = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        let lanes = blocks.into_remainder().chunks_exact_mut(W);
        for (lane, wanted) in lanes.zip(wanted_blocks.remainder().chunks_exact(W)) {
            let lane = array_at_mut::<W>(lane, 0);
            let bytes = load256(lane);
            let wanted = load256(array_at::<W>(wanted, 0));
            differences = _mm256_or_si256(differences, _mm256_xor_si256(bytes, wanted));
            store256(lane, _mm256_xor_si256(bytes, key));
        }

        store_edges_avx2(buf, (start, end), (head, tail), mask, offset);
        _mm256_testz_si256(differences, differences) == 1
    }

    /// AVX2 unmasking: 128 bytes per loop iteration.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unmask_avx2(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        const W: usize = 32;
        let len = buf.len();
        if len < W {
            // SAFETY: every CPU with AVX2 has SSE2.
            return unsafe { unmask_sse2(buf, mask, offset) };
        }
        let start = loop_start::<W>(buf);
        let end = len - (len - start) % W;
        let last = len - W;
        let head = load256(array_at::<W>(buf, 0));
        let tail = load256(array_at::<W>(buf, last));

        let key = _mm256_set1_epi32(mask_lane(mask, offset.wrapping_add(start)));
        let mut blocks = buf[start..end].chunks_exact_mut(4 * W);
        for block in &mut blocks {
            for lane in block.chunks_exact_mut(W) {
                xor256_in_place(lane, key);
            }
        }
        for lane in blocks.into_remainder().chunks_exact_mut(W) {
            xor256_in_place(lane, key);
        }

        store_edges_avx2(buf, (start, end), (head, tail), mask, offset);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{rotated_mask, unmask_short};
    use std::arch::aarch64::{uint8x16_t, veorq_u8, vld1q_u8, vst1q_u8};

    #[target_feature(enable = "neon")]
    fn xor128(bytes: &mut [u8], key: uint8x16_t) {
        // Callers pass exact 16-byte chunks; anything shorter is left alone.
        if bytes.len() < 16 {
            return;
        }
        // SAFETY: `bytes` has at least 16 readable bytes; no alignment needed.
        let v = unsafe { vld1q_u8(bytes.as_ptr()) };
        let unmasked = veorq_u8(v, key);
        // SAFETY: `bytes` has at least 16 writable bytes; no alignment needed.
        unsafe { vst1q_u8(bytes.as_mut_ptr(), unmasked) }
    }

    /// NEON unmasking, 64 bytes per loop iteration, then whole vectors, then
    /// the word path for the last bytes.
    ///
    /// # Safety
    ///
    /// The CPU must support NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn unmask_neon(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        const W: usize = 16;
        if buf.len() < W {
            return unmask_short(buf, mask, offset);
        }
        let quad = rotated_mask(mask, offset);
        let mut pattern = [0u8; W];
        for (i, byte) in pattern.iter_mut().enumerate() {
            *byte = quad[i & 3];
        }
        // SAFETY: `pattern` is 16 readable bytes.
        let key = unsafe { vld1q_u8(pattern.as_ptr()) };
        let mut blocks = buf.chunks_exact_mut(4 * W);
        for block in &mut blocks {
            for lane in block.chunks_exact_mut(W) {
                xor128(lane, key);
            }
        }
        let mut lanes = blocks.into_remainder().chunks_exact_mut(W);
        for lane in &mut lanes {
            xor128(lane, key);
        }
        // Vectors are multiples of 4 bytes, so the remainder keeps the offset.
        unmask_short(lanes.into_remainder(), mask, offset);
    }
}

#[cfg(test)]
mod mask_into_tests {
    use super::*;

    #[test]
    fn a_masked_copy_equals_copy_then_unmask() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in (0..=100).chain([255, 256, 257]) {
            for offset in 0..6 {
                for start in 0..3 {
                    let src = &src[start..start + len];
                    let mut expected = src.to_vec();
                    unmask_bytewise(&mut expected, mask, offset);
                    let mut out = vec![0xAA; len];
                    mask_into(&mut out, src, mask, offset);
                    assert_eq!(out, expected, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn a_masked_append_equals_copy_then_unmask_and_keeps_what_was_there() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 13 + 5) as u8).collect();
        let mask = [0x9a, 0x01, 0xfe, 0x42];
        for len in (0..=100).chain([255, 256, 257, 300]) {
            for offset in 0..6 {
                for start in 0..3 {
                    let len = len.min(src.len() - start);
                    let src = &src[start..start + len];
                    let mut expected = b"head".to_vec();
                    let mut masked = src.to_vec();
                    unmask_bytewise(&mut masked, mask, offset);
                    expected.extend_from_slice(&masked);
                    let mut out = b"head".to_vec();
                    mask_extend(&mut out, src, mask, offset);
                    assert_eq!(out, expected, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn comparing_masks_like_unmask_and_finds_any_one_differing_byte() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 29 + 11) as u8).collect();
        let mask = [0x5c, 0xe3, 0x07, 0xb1];
        for len in (0..=70).chain([255, 256, 257, 300]) {
            for offset in 0..5 {
                let src = &src[..len];
                let mut masked = src.to_vec();
                unmask_bytewise(&mut masked, mask, offset);
                let mut buf = src.to_vec();
                assert!(mask_comparing(&mut buf, src, mask, offset));
                assert_eq!(buf, masked, "len {len} offset {offset}");
                if len == 0 {
                    continue;
                }
                for flipped in [0, len / 2, len - 1] {
                    let mut expected = src.to_vec();
                    expected[flipped] ^= 0x80;
                    let mut buf = src.to_vec();
                    let matched = mask_comparing(&mut buf, &expected, mask, offset);
                    assert!(!matched, "len {len} offset {offset} byte {flipped}");
                    assert_eq!(buf, masked, "`buf` is masked all the same");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn comparing_needs_equal_lengths() {
        mask_comparing(&mut [0; 3], &[0; 4], [1, 2, 3, 4], 0);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn lengths_must_match() {
        mask_into(&mut [0; 3], &[0; 4], [1, 2, 3, 4], 0);
    }

    /// The masked copies' paths: the portable loops and, where the CPU has
    /// it, AVX2; each is checked on its own whatever `unmask` chose.
    type Comparing = fn(&mut [u8], &[u8], [u8; 4], usize) -> bool;
    type Into = fn(&mut [u8], &[u8], [u8; 4], usize);
    type Uninit = fn(&mut [std::mem::MaybeUninit<u8>], &[u8], [u8; 4], usize);

    fn copy_paths() -> Vec<(&'static str, Comparing, Into, Uninit)> {
        let mut paths: Vec<(&'static str, Comparing, Into, Uninit)> = vec![(
            "portable",
            mask_comparing_portable,
            mask_into_portable,
            mask_uninit_portable,
        )];
        #[cfg(target_arch = "x86_64")]
        if UnmaskImpl::Avx2.is_available() {
            paths.push((
                "avx2",
                // SAFETY: AVX2 is available, checked just above.
                |buf, expected, mask, offset| unsafe {
                    x86::mask_comparing_avx2(buf, expected, mask, offset)
                },
                // SAFETY: AVX2 is available, checked just above.
                |dst, src, mask, offset| unsafe { x86::mask_into_avx2(dst, src, mask, offset) },
                // SAFETY: AVX2 is available, checked just above.
                |dst, src, mask, offset| unsafe { x86::mask_uninit_avx2(dst, src, mask, offset) },
            ));
        }
        paths
    }

    /// Lengths around every edge the paths have: the 32-byte vector, the
    /// 128-byte unrolled block, and the 256 bytes from which the loop aligns.
    fn edge_lengths() -> impl Iterator<Item = usize> {
        (0..=140).chain([
            159, 160, 161, 255, 256, 257, 287, 288, 289, 383, 384, 385, 511, 512, 513, 1000,
        ])
    }

    #[test]
    fn every_masked_copy_path_equals_the_byte_loop_at_every_alignment() {
        let data: Vec<u8> = (0..1100u32).map(|i| (i * 37 + 19) as u8).collect();
        let mask = [0xc4, 0x1f, 0x80, 0x6b];
        for (name, _, into, uninit) in copy_paths() {
            for len in edge_lengths() {
                for start in [0, 1, 7, 31] {
                    let offset = start + len;
                    let src = &data[start..start + len];
                    let mut expected = src.to_vec();
                    unmask_bytewise(&mut expected, mask, offset);

                    let mut out = vec![0xAAu8; len + 64];
                    into(&mut out[start..start + len], src, mask, offset);
                    assert_eq!(
                        &out[start..start + len],
                        &expected[..],
                        "{name} into: len {len} start {start}"
                    );
                    assert!(
                        out[..start]
                            .iter()
                            .chain(&out[start + len..])
                            .all(|&b| b == 0xAA),
                        "{name} into wrote outside: len {len}"
                    );

                    let mut spare = vec![std::mem::MaybeUninit::new(0x55u8); len];
                    uninit(&mut spare, src, mask, offset);
                    // SAFETY: every element was initialised with 0x55 above.
                    let written: Vec<u8> =
                        spare.iter().map(|b| unsafe { b.assume_init() }).collect();
                    assert_eq!(written, expected, "{name} uninit: len {len} start {start}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn masked_copy_paths_agree_on_random_inputs(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            mask in proptest::prelude::any::<[u8; 4]>(),
            offset in proptest::prelude::any::<usize>(),
            start in 0usize..40,
            flipped in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let mut masked = data.clone();
            unmask_bytewise(&mut masked, mask, offset);
            let mut expected = data.clone();
            if let (Some(index), false) = (flipped, data.is_empty()) {
                expected[index.index(data.len())] ^= 0x40;
            }
            for (name, comparing, into, _) in copy_paths() {
                let mut storage = vec![0u8; start + data.len()];
                let buf = &mut storage[start..];
                into(buf, &data, mask, offset);
                proptest::prop_assert_eq!(&buf[..], &masked[..], "{} into", name);

                buf.copy_from_slice(&data);
                let matched = comparing(buf, &expected, mask, offset);
                proptest::prop_assert_eq!(matched, expected == data, "{} comparing", name);
                proptest::prop_assert_eq!(&buf[..], &masked[..], "{} comparing", name);
            }
        }
    }

    #[test]
    fn every_comparing_path_masks_in_place_and_finds_any_one_differing_byte() {
        let data: Vec<u8> = (0..1100u32).map(|i| (i * 53 + 3) as u8).collect();
        let mask = [0x0d, 0xf0, 0x5a, 0x99];
        for (name, comparing, _, _) in copy_paths() {
            for len in edge_lengths() {
                // `start` moves the buffer against 32-byte alignment, and so
                // where the aligned loop begins.
                for start in [0, 5, 32 - 7] {
                    let offset = len / 3;
                    let src = &data[..len];
                    let mut masked = src.to_vec();
                    unmask_bytewise(&mut masked, mask, offset);
                    let mut storage = vec![0u8; len + 64];
                    storage[start..start + len].copy_from_slice(src);
                    let buf = &mut storage[start..start + len];
                    assert!(
                        comparing(buf, src, mask, offset),
                        "{name}: len {len} start {start} equal input"
                    );
                    assert_eq!(buf, &masked[..], "{name}: len {len} start {start}");
                    let flips: Vec<usize> = if len <= 300 {
                        (0..len).collect()
                    } else {
                        (0..len).step_by(7).chain([len - 1]).collect()
                    };
                    for flipped in flips {
                        let mut expected = src.to_vec();
                        expected[flipped] ^= 0x01;
                        storage[start..start + len].copy_from_slice(src);
                        let buf = &mut storage[start..start + len];
                        assert!(
                            !comparing(buf, &expected, mask, offset),
                            "{name}: len {len} start {start} byte {flipped}"
                        );
                        assert_eq!(buf, &masked[..], "{name}: masked all the same");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Deterministic, non-repeating test bytes.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
            .collect()
    }

    /// Unmasks `len` bytes placed `align` bytes into a larger buffer with both
    /// `imp` and the byte loop; the bytes around the slice must be untouched.
    fn assert_matches_bytewise(
        imp: UnmaskImpl,
        len: usize,
        align: usize,
        mask: [u8; 4],
        offset: usize,
    ) {
        let original = pattern(align + len + 8);
        let mut expected = original.clone();
        unmask_bytewise(&mut expected[align..align + len], mask, offset);
        let mut actual = original;
        unmask_with(imp, &mut actual[align..align + len], mask, offset);
        assert!(
            actual == expected,
            "{imp:?} differs from the byte loop: len {len}, align {align}, offset {offset}, mask {mask:02x?}"
        );
    }

    #[test]
    fn bytewise_follows_rfc_example() {
        // RFC 6455 §5.7: masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        unmask_bytewise(&mut payload, MASK, 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn unmask_twice_restores_input() {
        let original = pattern(1000);
        let mut buf = original.clone();
        unmask(&mut buf, MASK, 3);
        assert_ne!(buf, original);
        unmask(&mut buf, MASK, 3);
        assert_eq!(buf, original);
    }

    #[test]
    fn available_includes_portable_paths_and_selected() {
        let available = UnmaskImpl::available();
        assert!(available.contains(&UnmaskImpl::Bytewise));
        assert!(available.contains(&UnmaskImpl::Word));
        assert!(available.contains(&UnmaskImpl::selected()));
        #[cfg(target_arch = "x86_64")]
        assert!(available.contains(&UnmaskImpl::Sse2));
        #[cfg(not(target_arch = "x86_64"))]
        assert!(!available.contains(&UnmaskImpl::Avx2));
        #[cfg(not(target_arch = "aarch64"))]
        assert!(!available.contains(&UnmaskImpl::Neon));
    }

    #[test]
    fn every_path_matches_bytewise_for_small_lengths_offsets_alignments() {
        for imp in UnmaskImpl::available() {
            for len in 0..=256 {
                for offset in 0..4 {
                    for align in 0..32 {
                        assert_matches_bytewise(imp, len, align, MASK, offset);
                    }
                }
            }
        }
    }

    #[test]
    fn every_path_matches_bytewise_for_large_lengths() {
        for imp in UnmaskImpl::available() {
            for len in [4095, 4096, 65536 + 7, (1 << 20) + 3] {
                for (offset, align) in [(0, 0), (1, 3), (2, 17), (3, 31)] {
                    assert_matches_bytewise(imp, len, align, MASK, offset);
                }
            }
        }
    }

    #[test]
    fn dispatching_unmask_matches_bytewise() {
        for len in (0..=300).chain([4096 + 5, 65536 + 3]) {
            for offset in 0..4 {
                for align in 0..8 {
                    let original = pattern(align + len);
                    let mut expected = original.clone();
                    unmask_bytewise(&mut expected[align..], MASK, offset);
                    let mut actual = original;
                    unmask(&mut actual[align..], MASK, offset);
                    assert!(
                        actual == expected,
                        "len {len}, offset {offset}, align {align}"
                    );
                }
            }
        }
    }

    #[test]
    fn offset_only_matters_mod_four() {
        let original = pattern(300);
        for imp in UnmaskImpl::available() {
            let mut small = original.clone();
            unmask_with(imp, &mut small, MASK, 2);
            let mut huge = original.clone();
            unmask_with(imp, &mut huge, MASK, usize::MAX - 1);
            assert_eq!(small, huge, "{imp:?}");
        }
    }

    proptest! {
        #[test]
        fn random_inputs_match_bytewise(
            mask in any::<[u8; 4]>(),
            offset in any::<usize>(),
            len in 0usize..5000,
            align in 0usize..64,
        ) {
            for imp in UnmaskImpl::available() {
                assert_matches_bytewise(imp, len, align, mask, offset);
            }
        }

        #[test]
        fn two_pieces_equal_one_shot(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            mask in any::<[u8; 4]>(),
            split_fraction in 0.0f64..=1.0,
        ) {
            let split = ((data.len() as f64) * split_fraction) as usize;
            let split = split.min(data.len());
            let mut one_shot = data.clone();
            unmask_bytewise(&mut one_shot, mask, 0);
            for imp in UnmaskImpl::available() {
                let mut pieces = data.clone();
                let (first, second) = pieces.split_at_mut(split);
                unmask_with(imp, first, mask, 0);
                unmask_with(imp, second, mask, split);
                prop_assert_eq!(&pieces, &one_shot, "{:?} split at {}", imp, split);
            }
            let mut pieces = data.clone();
            let (first, second) = pieces.split_at_mut(split);
            unmask(first, mask, 0);
            unmask(second, mask, split);
            prop_assert_eq!(&pieces, &one_shot);
        }
    }
}
