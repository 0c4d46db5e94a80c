//! The close timeout (an unanswered Close, a peer that never closes TCP, a
//! Close stuck behind a full send buffer, an answer stuck behind unread
//! data) and `terminate()` on the owning core and from other threads, in
//! every state.

mod common;
mod lifecycle_common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use common::{builder, close_payload, masked_frame, RawClient, WAIT};
use lifecycle_common::*;
use ringws::{CloseKind, ConnHandle, ConnId, Initiator, ServerHandle, DEFAULT_CLOSE_TIMEOUT};

const CLOSE_TIMEOUT: Duration = Duration::from_millis(200);
/// "Well before 2 s": generous for a loaded CI machine, far below any
/// default.
const ABORT_BOUND: Duration = Duration::from_secs(2);
/// How soon a terminated connection must be gone, seen from the client.
const PROMPT: Duration = Duration::from_secs(1);

/// How the server ended the connection, as the client sees it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
}

/// Reads and discards until EOF or reset (bounded by the read timeout).
fn read_until_end(client: &mut RawClient) -> End {
    client.pending.clear();
    let mut chunk = [0u8; 65536];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => return End::Eof,
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return End::Reset,
            Err(error) => panic!("no EOF or reset within {WAIT:?}: {error}"),
        }
    }
}

#[test]
fn the_default_close_timeout_is_at_most_ten_seconds() {
    assert!(DEFAULT_CLOSE_TIMEOUT > Duration::ZERO);
    assert!(DEFAULT_CLOSE_TIMEOUT <= Duration::from_secs(10));
}

#[test]
fn an_unanswered_close_is_aborted_after_the_close_timeout() {
    let (server, probed) = start_probe(builder().close_timeout(CLOSE_TIMEOUT), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    let asked = Instant::now();
    client.write_frame(true, 0x1, b"close 4000 answer me");
    assert_eq!(client.read_close(), close_payload(4000, "answer me"));
    // Never answer: the server gives up and resets.
    assert_eq!(read_until_end(&mut client), End::Reset);
    let waited = asked.elapsed();
    assert!(waited >= CLOSE_TIMEOUT, "aborted early: {waited:?}");
    assert!(waited < ABORT_BOUND, "aborted late: {waited:?}");
    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.sent.map(|c| c.0), Some(4000));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    assert!(
        (CLOSE_TIMEOUT..ABORT_BOUND).contains(&info.close_duration),
        "{:?}",
        info.close_duration
    );
    let stats = server.stats();
    assert_eq!(stats.total.close_timeouts, 1);
    assert_eq!(stats.total.forced_terminations, 1);
    assert_eq!(closing(&server), 0);
    eprintln!("unanswered Close aborted after {waited:?} (timeout {CLOSE_TIMEOUT:?})");
    server.shutdown(WAIT);
}

#[test]
fn a_peer_that_never_closes_tcp_is_cut_at_the_close_timeout_yet_clean() {
    let (server, probed) = start_probe(builder().close_timeout(CLOSE_TIMEOUT), OnClose::Return);
    let port = server.local_addr().port();
    let mut client = RawClient::connect(server.local_addr());
    let local = client.stream.local_addr().unwrap().port();
    let (id, _) = probed.opened();
    let sent = Instant::now();
    client.write_frame(true, 0x8, &close_payload(1000, ""));
    assert_eq!(client.read_close(), 1000u16.to_be_bytes());
    assert_eq!(read_until_end(&mut client), End::Eof, "the server's FIN");
    // The client keeps its socket open (CLOSE-WAIT); the server waits for
    // its FIN only until the close timeout.
    let (info, _) = probed.closed(id);
    let waited = sent.elapsed();
    assert!(
        waited >= CLOSE_TIMEOUT && waited < ABORT_BOUND,
        "{waited:?}"
    );
    assert_eq!(info.kind, CloseKind::Clean, "both Closes were exchanged");
    assert_eq!(info.initiator, Initiator::Remote);
    assert!(
        info.close_duration >= CLOSE_TIMEOUT,
        "{:?}",
        info.close_duration
    );
    assert_eq!(server.stats().total.close_timeouts, 1);
    // The reset took the client's half-closed socket away too.
    let gone = poll_until(WAIT, || {
        tcp_sockets("all", &format!("sport = :{local} and dport = :{port}"))
            .is_empty()
            .then_some(())
    });
    assert!(gone.is_some(), "the client's socket is still there");
    drop(client);
    server.shutdown(WAIT);
}

/// A connection with 32 MiB queued, far beyond the socket buffers, that
/// its client never reads.
fn connection_with_32_mib_unread() -> (ServerHandle, Probed, RawClient, ConnId, ConnHandle) {
    let (server, probed) = start_probe(
        builder()
            .close_timeout(CLOSE_TIMEOUT)
            .max_queued_bytes(64 << 20),
        OnClose::Return,
    );
    let mut client = RawClient::connect(server.local_addr());
    let (id, handle) = probed.opened();
    client.write_frame(true, 0x1, b"big 33554432");
    assert!(probed.outcome("big").starts_with("(Ok(()), "));
    (server, probed, client, id, handle)
}

#[test]
fn a_close_stuck_behind_a_full_send_buffer_is_aborted_on_time() {
    let (server, probed, mut client, id, handle) = connection_with_32_mib_unread();
    let closed_at = Instant::now();
    handle.close(4000, "cannot get through").unwrap();
    let (info, gone_at) = probed.closed(id);
    let waited = gone_at - closed_at;
    assert!(
        waited >= CLOSE_TIMEOUT - Duration::from_millis(5) && waited < ABORT_BOUND,
        "{waited:?}"
    );
    assert_eq!(info.kind, CloseKind::Forced);
    assert_eq!(info.sent.map(|c| c.0), Some(4000));
    assert_eq!(read_until_end(&mut client), End::Reset);
    assert_eq!(closing(&server), 0);
    server.shutdown(WAIT);
}

/// The peer's Close arrives while 32 MiB wait for it to read, and our
/// answer queues behind them: at the close timeout the connection is reset
/// with the answer still queued, so the closing handshake did not complete.
#[test]
fn an_answer_stuck_behind_unread_data_does_not_make_the_close_clean() {
    let (server, probed, mut client, id, _handle) = connection_with_32_mib_unread();
    client.write_frame(true, 0x8, &close_payload(1000, "done"));
    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 1000, "the peer's Close was received");
    assert_eq!(info.sent.map(|c| c.0), Some(1000), "and answered");
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Forced, "but the answer never left");
    assert_eq!(read_until_end(&mut client), End::Reset);
    server.shutdown(WAIT);
}

fn assert_terminated(info: &ringws::ClosedInfo) {
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.reason, "");
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
}

#[test]
fn terminate_inside_a_callback_discards_the_queue_and_resets_promptly() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    // 8 MiB queued, then terminate, in one callback turn each.
    let mut commands = masked_frame(true, 0x1, b"big 8388608");
    commands.extend(masked_frame(true, 0x1, b"terminate"));
    let asked = Instant::now();
    std::io::Write::write_all(&mut client.stream, &commands).unwrap();
    let end = read_until_end(&mut client);
    let took = asked.elapsed();
    assert!(took < PROMPT, "{took:?}");
    assert_eq!(end, End::Reset);
    let (info, _) = probed.closed(id);
    assert_terminated(&info);
    assert_eq!(info.sent, None);
    // From terminate() until the socket is gone: one loop turn.
    assert!(info.close_duration < PROMPT, "{:?}", info.close_duration);
    assert_eq!(server.stats().total.forced_terminations, 1);
    assert_eq!(closing(&server), 0);
    server.shutdown(WAIT);
}

#[test]
fn terminate_from_another_thread_resets_promptly() {
    let (server, probed) = start_probe(builder().max_queued_bytes(64 << 20), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, handle) = probed.opened();
    // A full send buffer does not delay it.
    client.write_frame(true, 0x1, b"big 33554432");
    probed.outcome("big");
    let asked = Instant::now();
    let terminated = std::thread::spawn(move || handle.terminate());
    let end = read_until_end(&mut client);
    assert!(asked.elapsed() < PROMPT, "{:?}", asked.elapsed());
    assert_eq!(end, End::Reset);
    terminated.join().unwrap().unwrap();
    let (info, _) = probed.closed(id);
    assert_terminated(&info);
    server.shutdown(WAIT);
}

#[test]
fn terminate_in_on_open_still_reports_on_closed_once() {
    let (server, probed) = start_probe_with(builder(), OnClose::Return, true);
    // The 101 may or may not get out before the reset.
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut stream, common::upgrade_request("/", "").as_bytes()).unwrap();
    let (id, _) = probed.opened();
    let mut sink = Vec::new();
    let ended = stream.read_to_end(&mut sink);
    assert!(
        ended.is_ok() || ended.unwrap_err().kind() == ErrorKind::ConnectionReset,
        "EOF or reset"
    );
    let (info, _) = probed.closed(id);
    assert_terminated(&info);
    assert!(
        poll_until(Duration::from_millis(200), || probed
            .drain()
            .into_iter()
            .find(|seen| matches!(seen, Seen::Closed { .. })))
        .is_none(),
        "on_closed fires once"
    );
    assert_eq!(server.stats().total.connections(), 0);
    server.shutdown(WAIT);
}

#[test]
fn terminate_cuts_a_pending_close_short() {
    let (server, probed) = start_probe(
        builder().close_timeout(Duration::from_secs(30)),
        OnClose::Return,
    );
    let mut client = RawClient::connect(server.local_addr());
    let (id, handle) = probed.opened();
    handle.close(1001, "going").unwrap();
    assert_eq!(client.read_close(), close_payload(1001, "going"));
    // The Close is unanswered and the timeout is far away: terminate ends
    // it now.
    let asked = Instant::now();
    handle.terminate().unwrap();
    assert_eq!(read_until_end(&mut client), End::Reset);
    assert!(asked.elapsed() < PROMPT);
    let (info, _) = probed.closed(id);
    assert_terminated(&info);
    assert_eq!(info.sent.map(|c| c.0), Some(1001));
    assert!(info.close_duration < Duration::from_secs(30));
    server.shutdown(WAIT);
}

#[test]
fn terminate_while_half_closed_sends_no_close() {
    let (server, probed) = start_probe(builder(), OnClose::Terminate);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    client.write_frame(true, 0x8, &close_payload(4444, "half"));
    assert_eq!(read_until_end(&mut client), End::Reset);
    assert!(client.pending.is_empty());
    let (info, _) = probed.closed(id);
    // The peer's Close was received, ours never sent: forced, and the
    // close was the peer's.
    assert_eq!((info.code.0, info.reason.as_str()), (4444, "half"));
    assert_eq!(info.sent, None);
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Forced);
    server.shutdown(WAIT);
}
