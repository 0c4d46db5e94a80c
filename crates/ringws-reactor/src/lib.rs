//! # ringws-reactor: one io_uring per core
//!
//! Accept, multishot receive from provided buffer rings, batched vectored
//! sends, fd lifecycle and the cross-core inbox with its wakeup.
//!
//! ## What this crate must never do
//!
//! It never lets a completion for a closed connection touch the next owner of
//! its slot or fd, and never exposes an io-uring or socket2 type to the public
//! `ringws` API.
