//! Unmasking payloads in place (RFC 6455 §5.3).
//!
//! `offset` is the position, within the frame payload, of `buf[0]`. It lets a
//! payload split across two receive buffers be unmasked piece by piece.

/// XORs `buf` in place with `mask`, starting at payload position `offset`.
pub fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    unmask_bytewise(buf, mask, offset);
}

/// The reference implementation every faster path must equal.
pub fn unmask_bytewise(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}
