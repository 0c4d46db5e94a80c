//! # ringws-proto: the WebSocket protocol, sans I/O
//!
//! Everything RFC 6455 asks of an endpoint that can be decided from bytes alone:
//! the frame header codec, in-place unmasking (SIMD where it wins), streaming
//! UTF-8 validation, message assembly, close codes and payloads, the HTTP/1.1
//! upgrade handshake for both roles, and the per-connection state machine.
//!
//! ## What this crate must never do
//!
//! It does no I/O, opens no socket, reads no clock, spawns no thread and never
//! touches io_uring. Bytes go in; events and bytes to send come out. Time, if a
//! caller needs it, is the caller's business. That is what makes every part of
//! it deterministic, testable as a pure function and fuzzable.
//!
//! No input from the network may make it panic: malformed input becomes an
//! error carrying the close code (1002, 1007, 1009) or HTTP status the peer
//! must be told.

pub mod close;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;
pub use connection::{Config, Connection, Event, MaskSeed, Read, State};
pub use error::{ProtocolError, SendError};
pub use frame::{Opcode, Role};
