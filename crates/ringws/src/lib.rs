//! # ringws: a multi-threaded io_uring WebSocket engine for Linux
//!
//! The public API: server and client builders, the handler trait, connection
//! handles, shutdown and stats.
//!
//! ## What this crate must never do
//!
//! It never puts an io-uring or socket2 type in a public signature, and never
//! lets input from the network panic a worker.
