//! Arbitrary bytes, split arbitrarily, into a server-role `Connection`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws_proto::frame::Role;

#[path = "common/receive.rs"]
mod receive;

fuzz_target!(|data: &[u8]| receive::run(Role::Server, data));
