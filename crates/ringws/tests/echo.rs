//! Echo of text and binary messages across the frame-length encodings, up
//! to 16 MiB, with tokio-tungstenite as the client; fragmented messages and
//! the size limit over raw TCP.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

fn text_of(len: usize) -> String {
    // Multi-byte characters too, so UTF-8 validation is exercised across
    // receive buffers.
    let mut text = String::with_capacity(len);
    let pattern = ['a', 'é', '€', '𝄞', 'z'];
    let mut i = 0;
    while text.len() < len {
        let c = pattern[i % pattern.len()];
        if text.len() + c.len_utf8() > len {
            text.push('x');
        } else {
            text.push(c);
        }
        i += 1;
    }
    text
}

#[tokio::test]
async fn text_and_binary_echo_at_every_length_encoding() {
    let (server, events) = start(builder().max_message_size(16 << 20));
    let mut client = connect(server.local_addr()).await;
    for len in SIZES {
        let text = text_of(len);
        assert_eq!(text.len(), len);
        send(&mut client, WsMessage::Text(text.clone())).await;
        let echoed = recv(&mut client).await;
        assert_eq!(echoed, WsMessage::Text(text), "text of {len} bytes");

        let binary: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        send(&mut client, WsMessage::Binary(binary.clone())).await;
        let echoed = recv(&mut client).await;
        assert_eq!(payload_of(&echoed), binary, "binary of {len} bytes");
        assert!(matches!(echoed, WsMessage::Binary(_)));
    }
    let stats = server.stats();
    assert_eq!(stats.total.messages_in, 2 * SIZES.len() as u64);
    assert_eq!(stats.total.bytes_in, 2 * SIZES.iter().sum::<usize>() as u64);
    assert_eq!(stats.total.messages_out, stats.total.messages_in);
    // The client answers the shutdown's Close while the server waits.
    let shutdown = tokio::task::spawn_blocking(move || server.shutdown(WAIT));
    let close = recv(&mut client).await;
    let WsMessage::Close(Some(frame)) = close else {
        panic!("expected a Close, got {close:?}");
    };
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason, ringws::DEFAULT_SHUTDOWN_REASON);
    run_to_end(&mut client).await;
    drop(client);
    let report = shutdown.await.unwrap();
    assert_eq!((report.total, report.clean, report.forced), (1, 1, 0));
    drop(events);
}

#[tokio::test]
async fn a_small_socket_send_buffer_is_applied_and_large_echoes_still_arrive_whole() {
    let (server, events) = start(
        builder()
            .socket_send_buffer(20_000)
            .max_message_size(8 << 20),
    );
    let port = server.local_addr().port();
    let mut client = connect(server.local_addr()).await;
    // The server's end of the connection reports the buffer the kernel
    // set: twice the request (`ss`'s `tb`, in `skmem`).
    let output = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established", &format!("sport = :{port}")])
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("tb40000,"), "server socket's skmem: {text}");
    // A message 200 times the buffer leaves in many short writes, intact.
    let binary: Vec<u8> = (0..4 << 20).map(|i: usize| (i * 7 % 253) as u8).collect();
    send(&mut client, WsMessage::Binary(binary.clone())).await;
    let echoed = recv(&mut client).await;
    assert!(payload_of(&echoed) == binary, "4 MiB echo differs");
    drop(client);
    server.shutdown(WAIT);
    drop(events);
}

#[test]
fn fragmented_messages_are_assembled_with_control_frames_between() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    // Text split inside a multi-byte character, with a Ping in the middle.
    let text = "héllo wörld".as_bytes();
    client.write_frame(false, 0x1, &text[..2]);
    client.write_frame(false, 0x0, &text[2..5]);
    client.write_frame(true, 0x9, b"mid");
    client.write_frame(true, 0x0, &text[5..]);
    let (fin, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((fin, opcode, payload.as_slice()), (true, 0xA, &b"mid"[..]));
    let (fin, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((fin, opcode), (true, 0x1));
    assert_eq!(payload, text);

    // Binary in three fragments, each written byte by byte.
    let parts: [&[u8]; 3] = [&[1, 2, 3], &[], &[4, 5]];
    let frames = [
        masked_frame(false, 0x2, parts[0]),
        masked_frame(false, 0x0, parts[1]),
        masked_frame(true, 0x0, parts[2]),
    ];
    for frame in frames.iter() {
        for byte in frame {
            std::io::Write::write_all(&mut client.stream, &[*byte]).unwrap();
        }
    }
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, 0x2);
    assert_eq!(payload, [1, 2, 3, 4, 5]);
    assert!(events
        .rx
        .try_iter()
        .any(|event| matches!(event, Event::Binary { len: 5, .. })));
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn a_message_over_the_limit_fails_with_1009() {
    let (server, events) = start(builder().max_message_size(1000));
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    // 600 + 600 bytes in two fragments: each frame fits, the message does not.
    client.write_frame(false, 0x2, &[0; 600]);
    client.write_frame(true, 0x0, &[0; 600]);
    let close = client.read_close();
    assert_eq!(&close[..2], &1009u16.to_be_bytes());
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.sent.map(|c| c.0), Some(1009));
    assert_eq!(info.kind, ringws::CloseKind::Abnormal);
    assert_eq!(server.stats().total.protocol_errors, 1);

    // A single frame over the frame limit is refused from its header.
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let mut frame = masked_frame(true, 0x2, &[0; 10]);
    frame[1] = 0x80 | 126;
    frame.splice(2..2, 2000u16.to_be_bytes());
    std::io::Write::write_all(&mut client.stream, &frame[..8]).unwrap();
    let close = client.read_close();
    assert_eq!(&close[..2], &1009u16.to_be_bytes());
    drop(client);
    events.closed_blocking(id);
    server.shutdown(WAIT);
}

#[test]
fn frames_pipelined_after_the_upgrade_request_are_processed() {
    let (server, events) = start(builder());
    let mut request = upgrade_request("/", "").into_bytes();
    request.extend_from_slice(&masked_frame(true, 0x1, b"early"));
    request.extend_from_slice(&masked_frame(true, 0x1, b"bird"));
    let (stream, head, rest) = raw_request(server.local_addr(), &request);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut client = RawClient {
        stream,
        pending: rest,
    };
    assert_eq!(client.read_frame().unwrap().2, b"early");
    assert_eq!(client.read_frame().unwrap().2, b"bird");
    drop(client);
    drop(events);
    server.shutdown(WAIT);
}

#[test]
fn protocol_violations_close_with_the_right_code() {
    let (server, events) = start(builder());
    let cases: [(Vec<u8>, u16); 4] = [
        // Unmasked client frame.
        (vec![0x81, 0x02, b'h', b'i'], 1002),
        // Invalid UTF-8 text.
        (masked_frame(true, 0x1, &[0xC3, 0x28]), 1007),
        // Reserved opcode.
        (masked_frame(true, 0x3, b""), 1002),
        // Close with a code that may not appear on the wire.
        (masked_frame(true, 0x8, &close_payload(1005, "")), 1002),
    ];
    for (frame, code) in cases {
        let mut client = RawClient::connect(server.local_addr());
        let (id, _, _) = events.opened_blocking();
        std::io::Write::write_all(&mut client.stream, &frame).unwrap();
        let close = client.read_close();
        assert_eq!(&close[..2], &code.to_be_bytes(), "frame {frame:?}");
        assert!(client.wait_eof());
        drop(client);
        let info = events.closed_blocking(id);
        assert_eq!(info.sent.map(|c| c.0), Some(code));
    }
    assert_eq!(server.stats().total.protocol_errors, 4);
    server.shutdown(WAIT);
}
