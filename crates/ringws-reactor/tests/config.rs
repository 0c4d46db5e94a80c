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

/// The `listen(2)` backlog of every listening socket on `port` (the Send-Q
/// column `ss` shows for a listener), or `None` when `ss` is unavailable.
fn listen_backlogs(port: u16) -> Option<Vec<u32>> {
    let output = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
            .collect(),
    )
}

#[test]
fn the_configured_backlog_is_applied_whichever_setter_comes_first() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let base = || {
        Config::new()
            .workers(2)
            .pinning(CorePinning::Off)
            .recv_buffers(16, 4096)
    };
    for (order, config) in [
        ("listen, then backlog", base().listen(addr).backlog(7)),
        ("backlog, then listen", base().backlog(7).listen(addr)),
    ] {
        assert_eq!(
            config.listen_config().map(|listen| listen.backlog),
            Some(7),
            "{order}"
        );
        let server = start_with(config, Mode::Echo, false);
        if let Some(backlogs) = listen_backlogs(server.addr.port()) {
            assert_eq!(backlogs, vec![7, 7], "{order}: one listener per worker");
        }
        server.shutdown();
    }
}

#[test]
fn an_invalid_backlog_is_refused_whichever_setter_comes_first() {
    let addr = "127.0.0.1:0".parse().unwrap();
    for config in [
        Config::new().workers(1).listen(addr).backlog(0),
        Config::new().workers(1).backlog(-1).listen(addr),
    ] {
        match start_unwinding(config) {
            Err(StartError::Config(message)) => assert!(message.contains("backlog"), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}

#[test]
fn receive_buffers_that_cannot_be_allocated_are_a_typed_error() {
    // 32768 buffers of 1 GiB: 32 TiB of address space per worker. Four
    // workers need more than a 47-bit address space holds, so some worker
    // fails even where the kernel overcommits without limit.
    let config = Config::new()
        .workers(4)
        .pinning(CorePinning::Off)
        .recv_buffers(32768, 1 << 30);
    let error = match start_unwinding(config) {
        Err(error) => error,
        Ok(()) => {
            eprintln!("the address space held 128 TiB of receive buffers; nothing to check");
            return;
        }
    };
    let text = error.to_string();
    assert!(text.contains("receive buffers"), "{text}");
    assert!(text.contains("32768 of 1073741824 bytes"), "{text}");
    assert!(!text.contains("io_uring_setup"), "{text}");
    let source = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("the OS error is the source: {error:?}"));
    assert_eq!(source.raw_os_error(), Some(libc::ENOMEM), "{text}");
    match error {
        StartError::RecvBuffers {
            worker,
            count,
            size,
            source,
        } => {
            assert!(worker.index() < 4);
            assert_eq!((count, size), (32768, 1 << 30));
            assert!(
                text.starts_with(&format!("worker {}:", worker.index())),
                "{text}"
            );
            assert_eq!(source.raw_os_error(), Some(libc::ENOMEM));
        }
        other => panic!("expected StartError::RecvBuffers, got {other:?}"),
    }
}
