//! Configuration as a user writes it: settings that cannot work are typed
//! start errors (never a panic), and settings that can are applied whatever
//! the order of the setters.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use common::*;
use ringws_reactor::{Config, CorePinning, Reactor, StartError};

fn never_started(_: ringws_reactor::WorkerId) -> TestHandler {
    unreachable!("no worker may start")
}

/// Starts `config` without letting a panic escape: a panic fails the test
/// with its message rather than aborting it.
fn start_unwinding(config: Config) -> Result<(), StartError> {
    let started = catch_unwind(AssertUnwindSafe(|| Reactor::start(config, never_started)));
    match started {
        Ok(result) => result.map(|handle| {
            handle.stop();
            handle.join().expect("workers exit cleanly");
        }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            panic!("Reactor::start panicked: {message}")
        }
    }
}

#[test]
fn a_thread_name_with_a_nul_byte_is_a_config_error() {
    let config = Config::new()
        .workers(1)
        .pinning(CorePinning::Off)
        .thread_name("ringws\0worker");
    match start_unwinding(config) {
        Err(StartError::Config(message)) => {
            assert!(message.contains("thread name"), "{message}");
            assert!(message.contains("NUL"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
