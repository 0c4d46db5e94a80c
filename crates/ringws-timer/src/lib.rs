//! # ringws-timer: a hierarchical timing wheel for one core
//!
//! Keepalive, pong, close and handshake deadlines for every connection a
//! worker owns live in one wheel per worker.
//!
//! ## What this crate must never do
//!
//! It never reads a clock and never shares itself between threads: the owner
//! passes the current tick in. It never fires a timer early.
