//! OS entropy for handshake nonces and masking-key seeds.
//!
//! RFC 6455 wants the `Sec-WebSocket-Key` nonce and every masking key to be
//! unpredictable to the peer (§4.1, §10.3). Each thread keeps a small pool
//! filled by `getrandom(2)`, so one system call serves about ten connects;
//! every byte handed out comes straight from the kernel's CSPRNG and is
//! erased from the pool once handed out, so no two callers ever see the
//! same bytes.

use std::cell::RefCell;
use std::io;

/// Bytes fetched per `getrandom` call.
const POOL_BYTES: usize = 256;

struct Pool {
    bytes: [u8; POOL_BYTES],
    /// Bytes at the front of `bytes` already handed out.
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_BYTES],
            used: POOL_BYTES,
        })
    };
}

/// Fills `dest` with bytes from the OS's CSPRNG.
pub(crate) fn fill(dest: &mut [u8]) -> io::Result<()> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let mut filled = 0;
        while filled < dest.len() {
            if pool.used == POOL_BYTES {
                getrandom(&mut pool.bytes)?;
                pool.used = 0;
            }
            let take = (dest.len() - filled).min(POOL_BYTES - pool.used);
            let from = pool.used;
            dest[filled..filled + take].copy_from_slice(&pool.bytes[from..from + take]);
            pool.bytes[from..from + take].fill(0);
            pool.used += take;
            filled += take;
        }
        Ok(())
    })
}

/// `getrandom(2)` into all of `buf` (blocking only before the kernel's pool
/// is first initialised, early in boot).
fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes to
        // `rest.as_mut_ptr()`, a live buffer borrowed exclusively here.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        filled += got as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn draws_never_repeat_across_pool_refills() {
        let mut seen = HashSet::new();
        // 200 draws of 24 bytes span about 19 refills of the pool.
        for _ in 0..200 {
            let mut draw = [0u8; 24];
            fill(&mut draw).unwrap();
            assert!(seen.insert(draw), "a 192-bit draw repeated");
        }
    }

    #[test]
    fn requests_larger_than_the_pool_are_filled_completely() {
        let mut big = vec![0u8; POOL_BYTES * 3 + 5];
        fill(&mut big).unwrap();
        // A run of 64 zero bytes from a CSPRNG has probability 2^-512.
        assert!(big.chunks(64).all(|chunk| chunk.iter().any(|&b| b != 0)));
    }

    #[test]
    fn threads_draw_different_bytes() {
        let mut here = [0u8; 16];
        fill(&mut here).unwrap();
        let there = std::thread::spawn(|| {
            let mut bytes = [0u8; 16];
            fill(&mut bytes).unwrap();
            bytes
        })
        .join()
        .unwrap();
        assert_ne!(here, there);
    }
}
