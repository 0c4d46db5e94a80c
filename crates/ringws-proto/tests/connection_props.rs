//! Properties of the receive path over generated input: no input panics,
//! every error carries 1002/1007/1009, and how the bytes are split into
//! receive buffers never changes what comes out.

mod wire;

use proptest::collection::vec;
use proptest::prelude::*;
use ringws_proto::connection::{Config, Connection};
use ringws_proto::frame::{Opcode, Role};
use ringws_proto::MaskSeed;
use wire::*;

fn role_strategy() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(small_limits, auto_close_reply, auto_pong, mask_seed)| Config {
                max_frame_size: if small_limits { 64 } else { 1 << 20 },
                max_message_size: if small_limits { 100 } else { 1 << 20 },
                mask_seed: MaskSeed::from_bytes(mask_seed),
                auto_close_reply,
                auto_pong,
            },
        )
}

/// Runs `wire` through a fresh connection split at `splits`; returns the
/// events and everything the connection queued to send.
fn run(role: Role, config: &Config, wire: &[u8], splits: &[usize]) -> (Vec<Got>, Vec<u8>) {
    let mut conn = Connection::new(role, config.clone());
    let events = feed_split(&mut conn, wire, splits);
    let mut output = Vec::new();
    conn.take_output(&mut output);
    (events, output)
}

/// What must hold of any run, whatever the input.
fn check_run(role: Role, events: &[Got], output: &[u8]) -> Result<(), TestCaseError> {
    let errors: Vec<usize> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| matches!(e, Got::Error(_)).then_some(i))
        .collect();
    prop_assert!(errors.len() <= 1, "at most one error: {events:?}");
    if let Some(&at) = errors.first() {
        prop_assert_eq!(at, events.len() - 1, "nothing after an error: {:?}", events);
    }
    // Our output is always a valid frame stream, with nothing after a Close.
    let sent = decode_output(output, role);
    if let Some(close_at) = sent.iter().position(|f| f.opcode == Opcode::Close) {
        prop_assert_eq!(
            close_at,
            sent.len() - 1,
            "frames after our Close: {:?}",
            sent
        );
    }
    if let Some(Got::Error(err)) = events.last() {
        let code = err.close_code();
        prop_assert!([1002, 1007, 1009].contains(&code), "{err:?} -> {code}");
        if let Some(last) = sent.last() {
            // The failure's Close, unless ours had already gone out.
            prop_assert_eq!(last.opcode, Opcode::Close);
        }
    }
    Ok(())
}

/// One unit of a generated, valid stream.
#[derive(Debug, Clone)]
enum Item {
    Text {
        text: String,
        cuts: Vec<usize>,
        ping_inside: Option<Vec<u8>>,
    },
    Binary {
        bytes: Vec<u8>,
        cuts: Vec<usize>,
        ping_inside: Option<Vec<u8>>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn item_strategy() -> impl Strategy<Value = Item> {
    let control = vec(any::<u8>(), 0..=125);
    prop_oneof![
        (
            ".{0,40}",
            vec(any::<usize>(), 0..4),
            proptest::option::of(control.clone())
        )
            .prop_map(|(text, cuts, ping_inside)| Item::Text {
                text,
                cuts,
                ping_inside
            }),
        (
            vec(any::<u8>(), 0..300),
            vec(any::<usize>(), 0..4),
            proptest::option::of(control.clone())
        )
            .prop_map(|(bytes, cuts, ping_inside)| Item::Binary {
                bytes,
                cuts,
                ping_inside
            }),
        control.clone().prop_map(Item::Ping),
        control.prop_map(Item::Pong),
    ]
}

/// Frames a message at `cuts` (fragment boundaries, any byte position, so
/// code points get split), with an optional Ping after the first fragment
/// when there is more than one.
fn fragments(
    receiver: Role,
    opcode: Opcode,
    payload: &[u8],
    cuts: &[usize],
    ping_inside: &Option<Vec<u8>>,
    expected: &mut Vec<Got>,
) -> Vec<u8> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    bounds.push(0);
    bounds.push(payload.len());
    bounds.sort_unstable();
    bounds.dedup();
    if bounds.len() == 1 {
        bounds.push(payload.len()); // an empty message is one empty frame
    }
    let mut wire = Vec::new();
    let pieces = bounds.len() - 1;
    for (i, window) in bounds.windows(2).enumerate() {
        let op = if i == 0 { opcode } else { Opcode::Continuation };
        wire.extend(frame_to(
            receiver,
            i + 1 == pieces,
            op,
            &payload[window[0]..window[1]],
        ));
        if i == 0 && pieces > 1 {
            if let Some(ping) = ping_inside {
                wire.extend(frame_to(receiver, true, Opcode::Ping, ping));
                expected.push(Got::Ping(ping.clone()));
            }
        }
    }
    wire
}

fn build_stream(receiver: Role, items: &[Item]) -> (Vec<u8>, Vec<Got>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Item::Text {
                text,
                cuts,
                ping_inside,
            } => {
                let bytes = fragments(
                    receiver,
                    Opcode::Text,
                    text.as_bytes(),
                    cuts,
                    ping_inside,
                    &mut expected,
                );
                wire.extend(bytes);
                expected.push(Got::Text(text.clone()));
            }
            Item::Binary {
                bytes,
                cuts,
                ping_inside,
            } => {
                wire.extend(fragments(
                    receiver,
                    Opcode::Binary,
                    bytes,
                    cuts,
                    ping_inside,
                    &mut expected,
                ));
                expected.push(Got::Binary(bytes.clone()));
            }
            Item::Ping(payload) => {
                wire.extend(frame_to(receiver, true, Opcode::Ping, payload));
                expected.push(Got::Ping(payload.clone()));
            }
            Item::Pong(payload) => {
                wire.extend(frame_to(receiver, true, Opcode::Pong, payload));
                expected.push(Got::Pong(payload.clone()));
            }
        }
    }
    (wire, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_carry_the_right_code(
        role in role_strategy(),
        config in config_strategy(),
        wire in vec(any::<u8>(), 0..512),
        splits in vec(0usize..512, 0..6),
    ) {
        let (events, output) = run(role, &config, &wire, &splits);
        check_run(role, &events, &output)?;
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        role in role_strategy(),
        config in config_strategy(),
        items in vec(item_strategy(), 1..6),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
        splits in vec(0usize..4096, 0..6),
    ) {
        let (mut wire, _) = build_stream(role, &items);
        for (at, xor) in flips {
            let len = wire.len();
            wire[at % len] ^= xor;
        }
        let (events, output) = run(role, &config, &wire, &splits);
        check_run(role, &events, &output)?;
    }

    #[test]
    fn splitting_never_changes_events_or_output(
        role in role_strategy(),
        config in config_strategy(),
        wire in vec(any::<u8>(), 0..256),
        splits in vec(0usize..256, 1..8),
    ) {
        let whole = run(role, &config, &wire, &[]);
        prop_assert_eq!(&run(role, &config, &wire, &splits), &whole);
    }

    #[test]
    fn valid_streams_arrive_intact_however_split(
        role in role_strategy(),
        items in vec(item_strategy(), 0..8),
        splits in vec(0usize..4096, 0..8),
    ) {
        let (wire, expected) = build_stream(role, &items);
        let config = Config::default();
        let (events, output) = run(role, &config, &wire, &splits);
        prop_assert_eq!(&events, &expected);
        // One Pong per Ping, echoing it.
        let pings: Vec<Vec<u8>> = expected.iter().filter_map(|e| match e {
            Got::Ping(p) => Some(p.clone()),
            _ => None,
        }).collect();
        let pongs: Vec<Vec<u8>> = decode_output(&output, role).into_iter().map(|f| {
            assert_eq!(f.opcode, Opcode::Pong);
            f.payload
        }).collect();
        prop_assert_eq!(pongs, pings);
    }

    #[test]
    fn messages_sent_by_one_role_are_received_by_the_other(
        sender_role in role_strategy(),
        seed in any::<[u8; 32]>(),
        messages in vec(prop_oneof![
            ".{0,200}".prop_map(Got::Text),
            // Long enough for every length form; patterned, as generating
            // 70 000 arbitrary bytes per case would dominate the run time.
            (0usize..70_000, any::<u8>())
                .prop_map(|(len, salt)| Got::Binary((0..len).map(|i| (i as u8) ^ salt).collect())),
        ], 0..4),
        splits in vec(0usize..200_000, 0..6),
    ) {
        let receiver_role = match sender_role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let mut sender = Connection::new(sender_role, Config { mask_seed: MaskSeed::from_bytes(seed), ..Config::default() });
        for message in &messages {
            match message {
                Got::Text(text) => sender.send_text(text).unwrap(),
                Got::Binary(bytes) => sender.send_binary(bytes).unwrap(),
                _ => unreachable!(),
            }
        }
        let mut wire = Vec::new();
        sender.take_output(&mut wire);
        let mut receiver = Connection::new(receiver_role, Config::default());
        prop_assert_eq!(feed_split(&mut receiver, &wire, &splits), messages);
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_events() {
    for role in [Role::Server, Role::Client] {
        let items = vec![
            Item::Text {
                text: "héllo wörld €😀".to_owned(),
                cuts: vec![2, 9, 15],
                ping_inside: Some(b"ping".to_vec()),
            },
            Item::Binary {
                bytes: (0..=255).collect(),
                cuts: vec![100],
                ping_inside: None,
            },
            Item::Pong(vec![1; 125]),
            Item::Binary {
                bytes: vec![7; 70_000],
                cuts: vec![],
                ping_inside: None,
            },
        ];
        let (mut wire, mut expected) = build_stream(role, &items);
        wire.extend(frame_to(
            role,
            true,
            Opcode::Close,
            &close_payload(1000, "bye"),
        ));
        expected.push(Got::Close(Some(1000), "bye".to_owned()));
        let config = Config::default();
        let (whole_events, whole_output) = run(role, &config, &wire, &[]);
        assert_eq!(whole_events, expected);
        let every_byte: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(
            run(role, &config, &wire, &every_byte),
            (whole_events, whole_output)
        );
    }
}

#[test]
fn every_two_way_split_gives_the_same_events() {
    for role in [Role::Server, Role::Client] {
        let items = vec![
            Item::Text {
                text: "a€b😀c".to_owned(),
                cuts: vec![2, 6],
                ping_inside: Some(vec![]),
            },
            Item::Ping(b"p".to_vec()),
            Item::Binary {
                bytes: vec![3; 200],
                cuts: vec![50],
                ping_inside: None,
            },
        ];
        let (wire, expected) = build_stream(role, &items);
        let config = Config::default();
        let whole = run(role, &config, &wire, &[]);
        assert_eq!(whole.0, expected);
        for cut in 0..=wire.len() {
            assert_eq!(
                run(role, &config, &wire, &[cut]),
                whole,
                "{role:?} cut at {cut}"
            );
        }
    }
}
