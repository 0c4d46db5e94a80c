//! The streaming validator, fed arbitrary bytes split at arbitrary points,
//! agrees with `std::str::from_utf8` and fails exactly in the chunk where the
//! input becomes certainly invalid (or at `finish` for a truncated end).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws_proto::utf8::{validate_utf8, Utf8Validator};

#[derive(Arbitrary, Debug)]
struct Input {
    splits: Vec<u16>,
    data: Vec<u8>,
}

/// The length of the shortest prefix std reports as certainly invalid.
fn certain_error_end(bytes: &[u8]) -> Option<usize> {
    let valid_up_to = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_some() => e.valid_up_to(),
        _ => return None,
    };
    (valid_up_to + 1..=bytes.len()).find(
        |&end| matches!(std::str::from_utf8(&bytes[..end]), Err(e) if e.error_len().is_some()),
    )
}

fuzz_target!(|input: Input| {
    let data = &input.data[..];
    let mut cuts: Vec<usize> = input
        .splits
        .iter()
        .take(16)
        .map(|&s| usize::from(s) % (data.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        chunks.push(&data[start..cut]);
        start = cut;
    }
    chunks.push(&data[start..]);

    let mut validator = Utf8Validator::new();
    let mut failed_at = None;
    for (i, chunk) in chunks.iter().enumerate() {
        if validator.feed(chunk).is_err() {
            failed_at = Some(i);
            break;
        }
    }
    let finished = validator.finish();

    let std_result = std::str::from_utf8(data);
    assert_eq!(validate_utf8(data).is_ok(), std_result.is_ok());
    match std_result {
        Ok(_) => {
            assert_eq!(failed_at, None);
            assert!(finished.is_ok());
        }
        Err(e) if e.error_len().is_none() => {
            assert_eq!(failed_at, None, "truncated input failed before finish");
            assert!(finished.is_err());
        }
        Err(_) => {
            let certain_end = certain_error_end(data).unwrap();
            let mut consumed = 0;
            let expected = chunks.iter().position(|chunk| {
                consumed += chunk.len();
                consumed >= certain_end
            });
            assert_eq!(
                failed_at, expected,
                "error certain after {certain_end} bytes"
            );
            assert!(finished.is_err());
        }
    }
});
