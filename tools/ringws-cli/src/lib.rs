//! # ringws-cli
//!
//! The `ringws` command-line tool, and its engines as a library so other
//! tools (tests, scripts) can run them in-process.
//!
//! * [`load`]: the load generator behind `ringws load`, on the same
//!   per-core io_uring reactor as the ringws server.
//! * [`serve`]: `ringws serve`, a ringws echo or broadcast server with
//!   Prometheus metrics and graceful shutdown on signals.
//! * [`bench`](mod@bench): `ringws bench`, the one-command benchmark: a ringws echo
//!   server and the load generator in one process, on separate cores.

pub mod bench;
pub mod load;
pub mod serve;
