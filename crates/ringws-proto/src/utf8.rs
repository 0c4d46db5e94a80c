//! Streaming UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split over frames and each frame over receive
//! buffers, so a code point can straddle two pieces. [`Utf8Validator`] checks
//! each piece as it arrives without copying or allocating:
//!
//! - the bulk of a piece goes through `simdutf8` (SIMD, chosen at run time);
//! - a code point cut off at the end of a piece (at most 3 bytes) is kept in a
//!   4-byte stack buffer and completed from the first bytes of the next piece;
//! - it fails fast: a sequence is reported as soon as it is certainly invalid,
//!   even if only its first bytes have arrived (`C0`, `F5`, `E0 80` overlong,
//!   `ED A0` surrogate, `F4 90` above U+10FFFF are all rejected at once).
//!
//! For a payload that is complete in one buffer (an unfragmented text message,
//! a Close reason), [`validate_utf8`] checks it in one call.

/// Invalid UTF-8 was found; the connection must be failed with 1007.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8 in text message or close reason")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a complete payload in one call (a Close reason, or a text
/// message that arrived in one piece) and returns it as `&str`.
pub fn validate_utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| Utf8Error)
}

/// Validates a byte stream chunk by chunk, carrying an incomplete code point
/// over chunk boundaries and failing as soon as a sequence is certainly invalid.
///
/// Feed every piece of a message with [`feed`](Self::feed), then call
/// [`finish`](Self::finish), which also readies the validator for the next
/// message. Once a piece has failed, every further `feed` fails too until
/// [`reset`](Self::reset) or `finish`.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point cut off at the end of the last piece; its
    /// bytes so far are a valid prefix.
    pending: [u8; 4],
    pending_len: u8,
    failed: bool,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any carried bytes and any failure; ready for a new message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
        self.failed = false;
    }

    /// Whether the bytes fed so far end in the middle of a code point.
    pub fn is_mid_code_point(&self) -> bool {
        self.pending_len != 0
    }

    /// Validates the next chunk of the message. Fails as soon as the bytes
    /// fed so far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.failed {
            return Err(Utf8Error);
        }
        let result = self.feed_inner(chunk);
        self.failed = result.is_err();
        result
    }

    /// Validates the last chunk of the message and finishes it: equivalent to
    /// [`feed`](Self::feed) followed by [`finish`](Self::finish).
    pub fn feed_last(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let fed = self.feed(chunk);
        let finished = self.finish();
        fed.and(finished)
    }

    /// Ends the message: a code point still incomplete is an error. Either
    /// way the validator is reset for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = !self.failed && self.pending_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let rest = self.complete_pending(chunk)?;
        if rest.is_empty() {
            return Ok(());
        }
        let cut_len = incomplete_tail_len(rest);
        let (body, tail) = rest.split_at(rest.len() - cut_len);
        // `body` ends where a code point starts (or at the end of `rest`), so
        // if it is invalid on its own the stream is invalid whatever follows.
        simdutf8::basic::from_utf8(body).map_err(|_| Utf8Error)?;
        if !tail.is_empty() {
            check_prefix(tail)?;
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Completes a carried code point from the front of `chunk`; returns the
    /// rest of `chunk`.
    fn complete_pending<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8], Utf8Error> {
        let have = usize::from(self.pending_len);
        if have == 0 {
            return Ok(chunk);
        }
        // The pending lead byte passed `check_prefix`, so its width is 2..=4
        // and larger than `have`.
        let need = sequence_width(self.pending[0]).saturating_sub(have);
        let take = need.min(chunk.len());
        let (front, rest) = chunk.split_at(take);
        let mut joined = self.pending;
        joined[have..have + take].copy_from_slice(front);
        let joined = &joined[..have + take];
        if take == need {
            std::str::from_utf8(joined).map_err(|_| Utf8Error)?;
            self.pending_len = 0;
        } else {
            check_prefix(joined)?;
            self.pending[..joined.len()].copy_from_slice(joined);
            self.pending_len = joined.len() as u8;
        }
        Ok(rest)
    }
}

/// The number of bytes in a UTF-8 sequence starting with `lead`, or 0 if
/// `lead` can never start one (a continuation byte, `C0`, `C1`, `F5..=FF`).
#[inline]
fn sequence_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// The length of a code point cut off at the end of `bytes`: the bytes from
/// the last lead byte among the final three, if that lead needs more bytes
/// than follow it. 0 otherwise (complete, or invalid, which the bulk check
/// then reports).
#[inline]
fn incomplete_tail_len(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        let is_continuation = byte & 0xC0 == 0x80;
        if !is_continuation {
            return if sequence_width(byte) > back { back } else { 0 };
        }
    }
    0
}

/// Checks that `prefix`, the first bytes of one code point still missing its
/// last bytes, can be completed into valid UTF-8.
#[inline]
fn check_prefix(prefix: &[u8]) -> Result<(), Utf8Error> {
    match std::str::from_utf8(prefix) {
        // Only the end of input is missing: still a valid prefix.
        Err(e) if e.error_len().is_none() => Ok(()),
        _ => Err(Utf8Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` in order; returns the index of the first failing chunk,
    /// `Some(chunks.len())` if only `finish` fails, `None` if all is valid.
    fn first_failure(chunks: &[&[u8]]) -> Option<usize> {
        let mut validator = Utf8Validator::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if validator.feed(chunk).is_err() {
                return Some(i);
            }
        }
        validator.finish().err().map(|_| chunks.len())
    }

    /// The length of the shortest prefix of `bytes` that std reports as
    /// certainly invalid, if any.
    fn certain_error_end(bytes: &[u8]) -> Option<usize> {
        let valid_up_to = match std::str::from_utf8(bytes) {
            Ok(_) => return None,
            Err(e) if e.error_len().is_none() => return None,
            Err(e) => e.valid_up_to(),
        };
        (valid_up_to + 1..=bytes.len()).find(
            |&end| matches!(std::str::from_utf8(&bytes[..end]), Err(e) if e.error_len().is_some()),
        )
    }

    fn split_at_points<'b>(bytes: &'b [u8], points: &[usize]) -> Vec<&'b [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    /// Asserts the validator agrees with std on `bytes` split into `chunks`,
    /// and fails exactly in the chunk where std becomes certain.
    fn assert_agrees_with_std(bytes: &[u8], chunks: &[&[u8]]) {
        let failure = first_failure(chunks);
        match std::str::from_utf8(bytes) {
            Ok(_) => assert_eq!(failure, None, "valid input rejected: {bytes:02x?}"),
            Err(e) if e.error_len().is_none() => assert_eq!(
                failure,
                Some(chunks.len()),
                "truncated input must fail at finish only: {bytes:02x?} in {chunks:02x?}"
            ),
            Err(_) => {
                let certain_end = certain_error_end(bytes).unwrap();
                // The chunk holding byte `certain_end - 1`; empty chunks
                // before it at the same position come first.
                let mut consumed = 0;
                let expected = chunks
                    .iter()
                    .position(|chunk| {
                        consumed += chunk.len();
                        consumed >= certain_end
                    })
                    .unwrap();
                assert_eq!(
                    failure,
                    Some(expected),
                    "error certain after {certain_end} bytes: {bytes:02x?} in {chunks:02x?}"
                );
            }
        }
    }

    #[test]
    fn fail_fast_on_partial_sequences() {
        let cases: &[&[u8]] = &[
            &[0xC0],
            &[0xC1],
            &[0xF5],
            &[0xFF],
            &[0x80],
            &[0xE0, 0x80],
            &[0xE0, 0x9F],
            &[0xED, 0xA0],
            &[0xED, 0xBF],
            &[0xF0, 0x80],
            &[0xF0, 0x8F],
            &[0xF4, 0x90],
            &[0xF4, 0xBF],
            &[0xE2, 0x28],
            &[0xF0, 0x9F, 0x41],
            &[b'a', b'b', 0xC2, b'c'],
        ];
        for case in cases {
            let mut validator = Utf8Validator::new();
            assert_eq!(
                validator.feed(case),
                Err(Utf8Error),
                "{case:02x?} in one chunk"
            );
            // Byte by byte, the error must show on the byte that decides it.
            let mut validator = Utf8Validator::new();
            let (last, before) = case.split_last().unwrap();
            for byte in before {
                assert_eq!(validator.feed(&[*byte]), Ok(()), "{case:02x?} too early");
            }
            assert_eq!(
                validator.feed(&[*last]),
                Err(Utf8Error),
                "{case:02x?} too late"
            );
        }
    }

    #[test]
    fn valid_prefixes_wait_for_more_bytes() {
        let cases: &[&[u8]] = &[
            &[0xC2],
            &[0xDF],
            &[0xE0, 0xA0],
            &[0xED, 0x9F],
            &[0xEF, 0xBF],
            &[0xF0, 0x90],
            &[0xF0, 0x90, 0x80],
            &[0xF4, 0x8F, 0xBF],
        ];
        for case in cases {
            let mut validator = Utf8Validator::new();
            assert_eq!(validator.feed(case), Ok(()), "{case:02x?}");
            assert!(validator.is_mid_code_point());
            assert_eq!(validator.finish(), Err(Utf8Error), "{case:02x?} at finish");
            assert!(!validator.is_mid_code_point());
        }
    }

    #[test]
    fn code_point_completed_across_chunks() {
        let text = "a\u{7FF}\u{FFFD}\u{10FFFF}\u{1F980}z".as_bytes();
        for cut in 0..=text.len() {
            let mut validator = Utf8Validator::new();
            assert_eq!(validator.feed(&text[..cut]), Ok(()), "cut {cut}");
            assert_eq!(validator.feed(&text[cut..]), Ok(()), "cut {cut}");
            assert_eq!(validator.finish(), Ok(()), "cut {cut}");
        }
        // One byte per chunk, including empty chunks in between.
        let mut validator = Utf8Validator::new();
        for byte in text {
            assert_eq!(validator.feed(&[]), Ok(()));
            assert_eq!(validator.feed(&[*byte]), Ok(()));
        }
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn carried_prefix_rejected_by_next_chunk() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[b'x', 0xF4]), Ok(()));
        assert_eq!(validator.feed(&[0x90, 0x80, 0x80]), Err(Utf8Error));

        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[0xED]), Ok(()));
        assert_eq!(validator.feed(&[0xA0]), Err(Utf8Error));

        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[0xE2, 0x82]), Ok(()));
        assert_eq!(validator.feed(b"ab"), Err(Utf8Error));
    }

    #[test]
    fn errors_are_sticky_until_reset() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[0xFF]), Err(Utf8Error));
        assert_eq!(validator.feed(b"fine"), Err(Utf8Error));
        validator.reset();
        assert_eq!(validator.feed(b"fine"), Ok(()));
        assert_eq!(validator.finish(), Ok(()));

        assert_eq!(validator.feed(&[0xC0]), Err(Utf8Error));
        assert_eq!(validator.finish(), Err(Utf8Error));
        // `finish` reset it.
        assert_eq!(validator.feed("é".as_bytes()), Ok(()));
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn feed_last_combines_feed_and_finish() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[0xE2]), Ok(()));
        assert_eq!(validator.feed_last(&[0x82, 0xAC]), Ok(()));
        assert_eq!(validator.feed_last(&[0xE2, 0x82]), Err(Utf8Error));
        assert_eq!(validator.feed_last(b"next message"), Ok(()));
    }

    #[test]
    fn one_shot_validation() {
        assert_eq!(
            validate_utf8("Grüße, 世界 🦀".as_bytes()),
            Ok("Grüße, 世界 🦀")
        );
        assert_eq!(validate_utf8(b""), Ok(""));
        assert_eq!(validate_utf8(&[0xE2, 0x82]), Err(Utf8Error));
        assert_eq!(validate_utf8(&[0xED, 0xA0, 0x80]), Err(Utf8Error));
    }

    #[test]
    fn large_chunks_with_errors_anywhere() {
        let text = "ascii, ñ, 中文, 🦀 ".repeat(200).into_bytes();
        for bad_at in [0, 1, 63, 64, 65, 1000, text.len() - 1] {
            let mut bytes = text.clone();
            bytes[bad_at] = 0xFF;
            for chunk_len in [1, 7, 64, 1024, bytes.len()] {
                let chunks: Vec<&[u8]> = bytes.chunks(chunk_len).collect();
                assert_agrees_with_std(&bytes, &chunks);
            }
        }
        let chunks: Vec<&[u8]> = text.chunks(13).collect();
        assert_eq!(first_failure(&chunks), None);
    }

    /// Byte strings that often contain multi-byte sequences, valid or nearly.
    fn utf8ish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<char>().prop_map(|c| c.to_string().into_bytes()),
            any::<u8>().prop_map(|b| vec![b]),
            (0xC0u8..=0xFF, 0x80u8..=0xBF).prop_map(|(a, b)| vec![a, b]),
            (0xE0u8..=0xF4, 0x80u8..=0xBF, 0x80u8..=0xBF).prop_map(|(a, b, c)| vec![a, b, c]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn chunked_feed_agrees_with_std(
            bytes in utf8ish_bytes(),
            points in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let chunks = split_at_points(&bytes, &points);
            assert_agrees_with_std(&bytes, &chunks);
        }

        #[test]
        fn chunked_feed_of_valid_text_is_ok(
            text in any::<String>(),
            points in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let chunks = split_at_points(text.as_bytes(), &points);
            prop_assert_eq!(first_failure(&chunks), None);
        }

        #[test]
        fn every_split_of_short_input_agrees_with_std(bytes in utf8ish_bytes()) {
            let bytes = &bytes[..bytes.len().min(12)];
            for cut in 0..=bytes.len() {
                assert_agrees_with_std(bytes, &[&bytes[..cut], &bytes[cut..]]);
            }
            let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_agrees_with_std(bytes, &single_bytes);
        }
    }
}
