//! Streaming UTF-8 validation for text messages that arrive in pieces.

/// Invalid UTF-8 was found; the connection must be failed with 1007.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8 in text message or close reason")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a byte stream chunk by chunk, carrying an incomplete code point
/// over chunk boundaries and failing as soon as a sequence is certainly invalid.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any carried bytes; ready for a new message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Validates the next chunk of the message.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let mut joined = Vec::with_capacity(self.pending_len as usize + chunk.len());
        joined.extend_from_slice(&self.pending[..self.pending_len as usize]);
        joined.extend_from_slice(chunk);
        match std::str::from_utf8(&joined) {
            Ok(_) => {
                self.pending_len = 0;
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                let tail = &joined[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the message: a code point still incomplete is an error.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.pending_len != 0;
        self.reset();
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}
