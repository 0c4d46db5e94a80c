//! `close(code, reason)` as a Python `websockets` client receives it: the
//! code and reason byte-exact (a 123-byte multi-byte UTF-8 reason
//! included), and typed errors, with nothing sent, for everything a Close
//! may not carry.

mod common;
mod lifecycle_common;

use std::io::Write;
use std::process::Command;

use common::{builder, WAIT};
use lifecycle_common::*;
use ringws::{CloseKind, Initiator};

/// A UTF-8 reason of exactly `len` bytes with 2-, 3- and 4-byte characters,
/// padded with ASCII.
fn reason_of(len: usize) -> String {
    let mut reason = String::new();
    for c in "ringws ✓ — ünïcödé 😀 ".chars().cycle() {
        if reason.len() + c.len_utf8() > len {
            break;
        }
        reason.push(c);
    }
    while reason.len() < len {
        reason.push('.');
    }
    reason
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One session's report from `py_close_client.py`.
#[derive(Debug, Default)]
struct Session {
    messages: Vec<String>,
    close: Option<String>,
    error: Option<String>,
}

/// Runs the Python client against `url` with these sessions (lists of text
/// messages), returning each session's report.
fn run_python(url: &str, sessions: &[Vec<String>]) -> Vec<Session> {
    let mut input = String::new();
    for messages in sessions {
        for message in messages {
            input.push_str(&hex(message.as_bytes()));
            input.push('\n');
        }
        input.push('\n');
    }
    let mut peer = ChildGuard::spawn(
        Command::new(python())
            .arg(interop_script("py_close_client.py"))
            .arg(url),
    );
    let lines = peer.lines();
    peer.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    peer.close_stdin();
    let mut reports = Vec::new();
    let mut current = Session::default();
    while reports.len() < sessions.len() {
        let Ok(line) = lines.recv_timeout(LIMIT) else {
            panic!("the Python client stalled: {}", peer.stderr());
        };
        let (kind, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match kind {
            "message" => current.messages.push(rest.to_owned()),
            "close" => current.close = Some(rest.to_owned()),
            "error" => current.error = Some(rest.to_owned()),
            "end" => reports.push(std::mem::take(&mut current)),
            _ => panic!("unexpected line from the Python client: {line}"),
        }
    }
    peer.wait_success();
    reports
}

#[test]
fn a_python_client_receives_code_and_reason_byte_exact() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let url = format!("ws://{}/", server.local_addr());
    let long = reason_of(123);
    assert_eq!(long.len(), 123);
    assert!(long.chars().any(|c| c.len_utf8() == 4) && long.chars().any(|c| c.len_utf8() == 3));

    let mut cases: Vec<(u16, String)> = vec![(4123, long.clone()), (1000, String::new())];
    for code in [
        1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 3999, 4000, 4999,
    ] {
        cases.push((code, format!("code {code} ✓")));
    }
    let sessions: Vec<Vec<String>> = cases
        .iter()
        .map(|(code, reason)| {
            let command = if reason.is_empty() {
                format!("close {code}")
            } else {
                format!("close {code} {reason}")
            };
            vec!["hello".to_owned(), command]
        })
        .collect();
    let reports = run_python(&url, &sessions);

    for ((code, reason), report) in cases.iter().zip(&reports) {
        assert_eq!(report.error, None, "code {code}");
        assert_eq!(
            report.messages,
            [format!("text {}", hex(b"hello"))],
            "code {code}: the echo, then nothing but the Close"
        );
        let reason_hex = if reason.is_empty() {
            "-".to_owned()
        } else {
            hex(reason.as_bytes())
        };
        assert_eq!(
            report.close.as_deref(),
            Some(format!("{code} {reason_hex} 1").as_str()),
            "code {code}: the server's Close arrives first, code and reason exact"
        );
    }
    // The server saw each close succeed and each handshake complete.
    let mut outcomes = 0;
    let mut clean = 0;
    for seen in std::iter::from_fn(|| probed.rx.recv_timeout(WAIT).ok()) {
        match seen {
            Seen::Outcome {
                what: "close",
                result,
                ..
            } => {
                assert_eq!(result, "Ok(())");
                outcomes += 1;
            }
            Seen::Closed { info, .. } => {
                assert_eq!(info.kind, CloseKind::Clean, "{info:?}");
                assert_eq!(info.initiator, Initiator::Local);
                assert_eq!(info.code, info.sent.unwrap(), "the client echoes the code");
                clean += 1;
            }
            _ => {}
        }
        if clean == cases.len() {
            break;
        }
    }
    assert_eq!((outcomes, clean), (cases.len(), cases.len()));
    let closes = server.stats().total.closes;
    assert_eq!(closes.get(1011, Initiator::Local), 1);
    assert_eq!(closes.total(Initiator::Local), cases.len() as u64);
    server.shutdown(WAIT);
}

#[test]
fn invalid_codes_and_reasons_are_refused_and_nothing_is_sent() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let url = format!("ws://{}/", server.local_addr());
    let mut commands: Vec<(String, &str)> = Vec::new();
    for code in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        commands.push((
            format!("close {code} x"),
            match code {
                999 => "Err(InvalidCode(999))",
                1004 => "Err(InvalidCode(1004))",
                1005 => "Err(InvalidCode(1005))",
                1006 => "Err(InvalidCode(1006))",
                1015 => "Err(InvalidCode(1015))",
                1016 => "Err(InvalidCode(1016))",
                2999 => "Err(InvalidCode(2999))",
                _ => "Err(InvalidCode(5000))",
            },
        ));
    }
    let ascii_124 = "a".repeat(124);
    let utf8_124 = format!("{}é", reason_of(122));
    assert_eq!(utf8_124.len(), 124);
    commands.push((format!("close 1000 {ascii_124}"), "Err(ReasonTooLong(124))"));
    commands.push((format!("close 4000 {utf8_124}"), "Err(ReasonTooLong(124))"));
    // Not UTF-8: a lone lead byte, and a byte that never appears in UTF-8.
    commands.push(("closebytes 1000 c328".to_owned(), "Err(ReasonNotUtf8)"));
    commands.push(("closebytes 1000 ff".to_owned(), "Err(ReasonNotUtf8)"));

    let mut session: Vec<String> = commands.iter().map(|(c, _)| c.clone()).collect();
    session.push("still open".to_owned());
    session.push("close 4000 after the refusals".to_owned());
    let reports = run_python(&url, &[session]);

    let report = &reports[0];
    assert_eq!(report.error, None);
    assert_eq!(
        report.messages,
        [format!("text {}", hex(b"still open"))],
        "no Close (or anything else) went out for a refused close"
    );
    assert_eq!(
        report.close.as_deref(),
        Some(format!("4000 {} 1", hex(b"after the refusals")).as_str())
    );
    for (command, expected) in &commands {
        assert_eq!(probed.outcome("close"), *expected, "{command}");
    }
    assert_eq!(probed.outcome("close"), "Ok(())");
    server.shutdown(WAIT);
}
