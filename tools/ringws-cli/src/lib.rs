//! # ringws-cli
//!
//! The `ringws` command-line tool, and its engines as a library so other
//! tools (the `ringws bench` harness, tests) can run them in-process.
//!
//! * [`load`]: the load generator behind `ringws load`, on the same
//!   per-core io_uring reactor as the ringws server.

pub mod load;
