//! RFC 6455 conformance of ringws in the server role, organised like the
//! sections of the Autobahn|Testsuite: raw TCP clients write masked frames
//! byte-exact against in-process ringws echo servers and check, for every
//! case, exactly which frames come back, the close code, that ringws closes
//! TCP first, and what the handler saw.
//!
//! The cases are written from the RFC: §5.2 (framing), §5.4 (fragmentation),
//! §5.5 (control frames), §5.6 and §8.1 (UTF-8), §7.1–7.4 (closing), §10.4
//! (limits).

mod support;

mod close;
mod fragmentation;
mod framing;
mod limits;
mod misc;
mod opcodes;
mod pings;
mod reserved_bits;
mod utf8;
