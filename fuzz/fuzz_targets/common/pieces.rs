//! What the two handshake targets share: the limits a flag byte picks, and
//! feeding a growing prefix of the input to a parser in arbitrary read sizes.

use ringws_proto::handshake::HeadLimits;

/// The head limits picked by bits 0-1 of `flags`.
pub fn limits(flags: u8) -> HeadLimits {
    match flags & 3 {
        0 => HeadLimits::DEFAULT,
        1 => HeadLimits {
            max_head_bytes: 256,
            max_headers: 8,
        },
        2 => HeadLimits {
            max_head_bytes: 64,
            max_headers: 2,
        },
        _ => HeadLimits {
            max_head_bytes: 8 * 1024,
            max_headers: 0,
        },
    }
}

/// Read sizes from 0 (ask again with nothing new) to 16, from a xorshift seed.
fn next_read_size(state: &mut u8) -> usize {
    *state ^= *state << 3;
    *state ^= *state >> 5;
    *state ^= *state << 1;
    usize::from(*state % 17)
}

/// Feeds `bytes` to `answer` as a growing prefix, in read sizes drawn from
/// `seed` (all at once when it is 0). `answer` returns `None` while the
/// parser needs more bytes and the description of its answer otherwise.
/// Returns the first answer, or `"Ok(None)"` if all the bytes were not
/// enough, so it compares with the `Debug` form of a one-shot parse.
pub fn answer_in_pieces(
    bytes: &[u8],
    seed: u8,
    mut answer: impl FnMut(&[u8]) -> Option<String>,
) -> String {
    let mut state = seed | 1;
    let mut received = 0;
    loop {
        let size = if seed == 0 {
            bytes.len()
        } else {
            next_read_size(&mut state)
        };
        if size == 0 {
            // Asking again about the same bytes must not change the answer.
            if let Some(again) = answer(&bytes[..received]) {
                return again;
            }
        }
        // At least one byte per step, so the loop always ends.
        received = (received + size.max(1)).min(bytes.len());
        if let Some(result) = answer(&bytes[..received]) {
            return result;
        }
        if received == bytes.len() {
            return "Ok(None)".to_owned();
        }
    }
}
