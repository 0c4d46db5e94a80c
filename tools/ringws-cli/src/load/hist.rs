//! Saving latency histograms and merging saved ones exactly.
//!
//! The file format is the HdrHistogram interval log (as written by Java's
//! `HistogramLogWriter` and read by `HistogramLogProcessor`): one line per
//! histogram, `Tag=<name>,<start>,<duration>,<max>,<histogram>`, where the
//! histogram is V2 compressed (deflate) and base64-encoded. Values are
//! nanoseconds. Every run writes one interval per non-empty histogram, tagged
//! `message`, `connect`, `handshake`, `close` or `ping`; merging sums the
//! counts of equal tags, so the merged percentiles are exactly those of one
//! run that recorded everything.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::load::output::replace_whole;
use crate::load::report::{write_latency_table, LatencyHistograms, LatencySummary};

/// Why saved histograms could not be read or written.
#[derive(Debug)]
pub enum HistError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A line is not a valid interval-log entry.
    Format {
        /// Where.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Histograms of the same tag cannot be added (incompatible ranges).
    Incompatible {
        /// The tag.
        tag: String,
    },
}

impl fmt::Display for HistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            HistError::Format { origin, reason } => {
                write!(f, "{origin}: not an HdrHistogram interval log: {reason}")
            }
            HistError::Incompatible { tag } => {
                write!(f, "histograms tagged {tag:?} cannot be added")
            }
        }
    }
}

impl std::error::Error for HistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes every non-empty histogram of `histograms` as one tagged interval
/// of length `window`.
pub fn write_histograms(
    out: &mut impl Write,
    histograms: &LatencyHistograms,
    window: Duration,
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("ringws load latency histograms, values in nanoseconds")
        .with_start_time(SystemTime::now())
        .begin_log_with(out, &mut serializer)?;
    for (tag, histogram) in histograms.tagged() {
        if histogram.is_empty() {
            continue;
        }
        writer
            .write_histogram(histogram, Duration::ZERO, window, Tag::new(tag))
            .map_err(|error| io::Error::other(error.to_string()))?;
    }
    Ok(())
}

/// Saves `histograms` to `path` (see [`write_histograms`]), replacing the
/// file whole once the log is complete ([`replace_whole`]).
pub fn save_histograms(
    path: &Path,
    histograms: &LatencyHistograms,
    window: Duration,
) -> Result<(), HistError> {
    let io_error = |source| HistError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    write_histograms(&mut bytes, histograms, window).map_err(io_error)?;
    replace_whole(path, &bytes).map_err(io_error)
}

/// Histograms summed by tag (any tag; untagged intervals count as
/// `message`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedHistograms {
    /// Histogram per tag.
    pub by_tag: BTreeMap<String, Histogram<u64>>,
}

impl MergedHistograms {
    /// Adds every interval of the log in `bytes`; `origin` names it in errors.
    pub fn add_log(&mut self, bytes: &[u8], origin: &str) -> Result<(), HistError> {
        let format_error = |reason: String| HistError::Format {
            origin: origin.to_owned(),
            reason,
        };
        for entry in IntervalLogIterator::new(bytes) {
            let interval = match entry {
                Ok(LogEntry::Interval(interval)) => interval,
                Ok(_) => continue,
                Err(LogIteratorError::ParseError { offset }) => {
                    return Err(format_error(format!("cannot parse it at byte {offset}")));
                }
            };
            let tag = interval
                .tag()
                .map_or("message", |tag| tag.as_str())
                .to_owned();
            let encoded = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .map_err(|error| format_error(format!("bad base64: {error}")))?;
            let histogram: Histogram<u64> = Deserializer::new()
                .deserialize(&mut &encoded[..])
                .map_err(|error| {
                    format_error(format!(
                        "an interval's histogram cannot be decoded: {error}"
                    ))
                })?;
            self.add(tag, &histogram)?;
        }
        Ok(())
    }

    /// Adds one histogram under `tag`.
    pub fn add(&mut self, tag: String, histogram: &Histogram<u64>) -> Result<(), HistError> {
        match self.by_tag.get_mut(&tag) {
            Some(merged) => merged
                .add(histogram)
                .map_err(|_| HistError::Incompatible { tag }),
            None => {
                let mut merged = histogram.clone();
                // Files from elsewhere may use other ranges: grow to fit.
                merged.auto(true);
                self.by_tag.insert(tag, merged);
                Ok(())
            }
        }
    }

    /// Reads and adds every file.
    pub fn from_files(paths: &[PathBuf]) -> Result<MergedHistograms, HistError> {
        let mut merged = MergedHistograms::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| HistError::Io {
                path: path.clone(),
                source,
            })?;
            merged.add_log(&bytes, &path.display().to_string())?;
        }
        Ok(merged)
    }

    /// Summary of each tag, in [`LatencyHistograms::TAGS`] order, then other
    /// tags alphabetically.
    pub fn summaries(&self) -> Vec<(String, LatencySummary)> {
        let known = LatencyHistograms::TAGS.iter().map(|tag| tag.to_string());
        let others = self
            .by_tag
            .keys()
            .filter(|tag| !LatencyHistograms::TAGS.contains(&tag.as_str()))
            .cloned();
        known
            .chain(others)
            .filter_map(|tag| {
                let summary = LatencySummary::of(self.by_tag.get(&tag)?)?;
                Some((tag, summary))
            })
            .collect()
    }

    /// The percentile table of every tag.
    pub fn table(&self) -> String {
        let summaries = self.summaries();
        let rows: Vec<(&str, LatencySummary)> = summaries
            .iter()
            .map(|(tag, summary)| (tag.as_str(), *summary))
            .collect();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write_latency_table(&mut out, &rows);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::record;

    #[test]
    fn written_log_reads_back_equal() {
        let mut histograms = LatencyHistograms::default();
        for value in [1u64, 999, 25_000, 25_001, 7_000_000, 3_000_000_000_000] {
            record(&mut histograms.message, value);
        }
        record(&mut histograms.close, 42_000);
        let mut bytes = Vec::new();
        write_histograms(&mut bytes, &histograms, Duration::from_secs(2)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("Tag=message,"), "{text}");
        assert!(text.contains("Tag=close,"), "{text}");
        assert!(!text.contains("Tag=ping,"), "empty histograms are left out");
        let mut merged = MergedHistograms::default();
        merged.add_log(&bytes, "memory").unwrap();
        assert_eq!(merged.by_tag.len(), 2);
        assert_eq!(merged.by_tag["message"], histograms.message);
        assert_eq!(merged.by_tag["close"], histograms.close);
        let table = merged.table();
        assert!(
            table.contains("message") && table.contains("close"),
            "{table}"
        );
    }

    /// A file that is not a log at all is named with the byte where it
    /// stops parsing, in words rather than a debug dump.
    #[test]
    fn an_unparsable_file_says_where_in_words() {
        let mut merged = MergedHistograms::default();
        let error = merged
            .add_log(b"{\"mode\": \"echo\"}\n", "report.json")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "report.json: not an HdrHistogram interval log: cannot parse it at byte 0"
        );
    }

    #[test]
    fn a_corrupt_histogram_is_described_in_words() {
        let mut merged = MergedHistograms::default();
        // Valid base64 of bytes that are no encoded histogram.
        let error = merged
            .add_log(b"Tag=message,0.0,1.0,2.0,AAAAAAAAAAA=\n", "corrupt.hlog")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "corrupt.hlog: not an HdrHistogram interval log: an interval's histogram \
                 cannot be decoded: "
            ),
            "{error}"
        );
        assert!(!error.contains('{') && !error.contains("Error"), "{error}");
    }

    #[test]
    fn garbage_is_a_format_error() {
        let mut merged = MergedHistograms::default();
        let error = merged
            .add_log(b"Tag=message,0.0,1.0,2.0,!!!notbase64\n", "junk")
            .unwrap_err();
        assert!(matches!(error, HistError::Format { .. }), "{error}");
        assert!(error.to_string().contains("junk"));
    }
}
