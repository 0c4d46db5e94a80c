//! Opcodes (RFC 6455 §5.2; Autobahn section 4): "If an unknown opcode is
//! received, the receiving endpoint MUST _Fail the WebSocket Connection_."
//! Every reserved data opcode (0x3–0x7) and control opcode (0xB–0xF) fails
//! with 1002, with or without a payload, and nothing after it is acted on.

use crate::support::*;

fn reserved_opcode_case(opcode: u8, payload: &[u8], bytewise: bool) {
    let server = standard();
    let path = format!("/opcodes/{opcode:#x}/{}/{bytewise}", payload.len());
    let mut peer = server.connect(&path);
    let frames = [
        Frame::text("valid before"),
        Frame::new(opcode, payload),
        Frame::ping("ignored"),
        Frame::binary(vec![1, 2, 3]),
    ];
    let bytes = peer.encode_all(&frames);
    if bytewise {
        peer.write_bytewise(&bytes);
    } else {
        peer.write_raw(&bytes);
    }
    peer.expect_text("valid before");
    let reason = peer.expect_failure(1002);
    assert!(!reason.is_empty(), "ringws names the problem");
    assert_eq!(server.messages(&path), [(true, b"valid before".to_vec())]);
    server.assert_failed(&path, 1002);
}

#[test]
fn reserved_data_opcodes_fail_with_1002() {
    for opcode in 0x3..=0x7 {
        reserved_opcode_case(opcode, b"", false);
        reserved_opcode_case(opcode, b"reserved payload", false);
    }
}

#[test]
fn reserved_control_opcodes_fail_with_1002() {
    for opcode in 0xB..=0xF {
        reserved_opcode_case(opcode, b"", false);
        reserved_opcode_case(opcode, b"reserved payload", false);
    }
}

#[test]
fn reserved_opcodes_written_byte_by_byte_fail_with_1002() {
    reserved_opcode_case(0x6, b"chopped", true);
    reserved_opcode_case(0xE, b"chopped", true);
}

#[test]
fn a_reserved_opcode_mid_message_fails_with_1002() {
    let server = standard();
    for opcode in [0x3, 0xB] {
        let path = format!("/opcodes/mid-message/{opcode:#x}");
        let mut peer = server.connect(&path);
        peer.send_together(&[
            Frame::text("frag").fin(false),
            Frame::new(opcode, "x"),
            Frame::continuation("ment"),
        ]);
        peer.expect_failure(1002);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1002);
    }
}
