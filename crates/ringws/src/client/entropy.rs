//! OS entropy for handshake nonces and masking-key seeds.
//!
//! RFC 6455 wants the `Sec-WebSocket-Key` nonce and every masking key to be
//! unpredictable to the peer (§4.1, §10.3). Each thread keeps a small pool
//! filled by `getrandom(2)`, so one system call serves about ten connects;
//! every byte handed out comes straight from the kernel's CSPRNG and is
//! erased from the pool once handed out, so no two callers ever see the
//! same bytes.
//!
//! `fork(2)` copies the forking thread's pool into the child, where the
//! parent would hand out the same bytes again (same nonces, same
//! masking-key seeds in both processes); a `pthread_atfork` handler empties
//! that copy in the child, which refills from the kernel. Should the
//! handler not register, nothing is pooled: each draw is a `getrandom`.

use std::cell::RefCell;
use std::io;
use std::sync::OnceLock;

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

/// Whether pools may keep bytes: the fork handler that empties the
/// child's copy is registered (once per process, before any pool fills).
fn pooling() -> bool {
    static FORK_HANDLER: OnceLock<bool> = OnceLock::new();
    *FORK_HANDLER.get_or_init(|| {
        // SAFETY: registers a child handler that only touches this thread's
        // pool (no allocation, no lock, no panic), which is all a handler
        // may do in the child of a multi-threaded process.
        unsafe { libc::pthread_atfork(None, None, Some(empty_pool_in_child)) == 0 }
    })
}

/// In a forked child, on the thread that called `fork` (the only thread
/// there, so the only pool left): forgets the bytes copied from the
/// parent, which the parent hands out too.
extern "C" fn empty_pool_in_child() {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            pool.bytes.fill(0);
            pool.used = POOL_BYTES;
        }
    });
}

/// Fills `dest` with bytes from the OS's CSPRNG.
pub(crate) fn fill(dest: &mut [u8]) -> io::Result<()> {
    if !pooling() {
        return getrandom(dest);
    }
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

    /// What a forked child draws first, read back through a pipe; `None`
    /// if the child could not report.
    fn first_draw_of_a_forked_child() -> Option<[u8; 24]> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a live array of two descriptors for pipe2 to fill.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [read_end, write_end] = fds;
        // SAFETY: the child only draws (a thread-local and getrandom(2)),
        // writes to the pipe and leaves with _exit, all of which are safe
        // in the child of a multi-threaded process.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let mut draw = [0u8; 24];
            let status = match fill(&mut draw) {
                // SAFETY: writes 24 bytes from a live local to the pipe.
                Ok(()) => unsafe { libc::write(write_end, draw.as_ptr().cast(), draw.len()) },
                Err(_) => -1,
            };
            // SAFETY: ends the child without running the parent's atexit
            // handlers or unwinding the test harness's stack.
            unsafe { libc::_exit(i32::from(status != 24)) };
        }
        // SAFETY: closes the parent's copy of the write end, owned here.
        unsafe { libc::close(write_end) };
        let mut draw = [0u8; 24];
        // SAFETY: reads at most 24 bytes into a live local.
        let got = unsafe { libc::read(read_end, draw.as_mut_ptr().cast(), draw.len()) };
        let mut status = 0;
        // SAFETY: reaps the child just forked, writing its status to a live local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: closes the read end, owned here.
        unsafe { libc::close(read_end) };
        (got == 24 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0).then_some(draw)
    }

    #[test]
    fn a_forked_child_never_draws_the_parents_bytes() {
        // Half a pool drawn before the fork: the rest is in this thread's
        // pool, which fork(2) copies into the child.
        let mut before = [0u8; POOL_BYTES / 2];
        fill(&mut before).unwrap();
        let child = first_draw_of_a_forked_child().expect("the forked child reports its draw");
        let mut parent = [0u8; 24];
        fill(&mut parent).unwrap();
        assert_ne!(parent, child, "parent and child drew the same bytes");
        // Nor does the child repeat anything the parent had drawn.
        assert!(!before.windows(24).any(|window| window == child));
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
