//! Reaching connections from any thread: [`ConnHandle`], the commands that
//! travel through a worker's inbox, and the liveness table behind
//! [`ConnHandle::is_open`].
//!
//! ## Liveness without a per-connection allocation
//!
//! Each worker shares a table of `AtomicU32`, one per connection slot,
//! allocated in pages of [`PAGE_SLOTS`] the first time a slot of the page is
//! used. Each slot holds a generation shifted left by one, with the low bit
//! set while that generation's connection is open: a fresh page (all zero),
//! a connection that has not opened yet or never will (a client attempt that
//! failed), and one that is gone all read as closed, whatever generation a
//! handle names. A handle compares the slot's value with its id's
//! generation and the open bit: one acquire load, no lock, no reference
//! count per connection. Generations compare modulo 2^31: a stale handle
//! could read as open only after its slot was reused 2^31 times. The check is advisory: a connection can
//! end between the check and the moment the worker runs the command; the
//! worker then drops the command and counts it
//! ([`WorkerStats::commands_for_gone`](crate::WorkerStats::commands_for_gone)).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use ringws_proto::close::validate_close;
use ringws_proto::frame::{
    encode_header, FrameHeader, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use ringws_reactor::{Chunk, InboxSender, PublishedStats, RingMode};

use crate::error::{CloseError, Gone, SendError};
use crate::stats::WorkerCounters;
use crate::{ConnId, IoStats};

/// Slots per page of the liveness table.
pub(crate) const PAGE_SLOTS: usize = 1024;

/// Per-slot generations of a worker's open connections (see the module docs).
pub(crate) struct LiveTable {
    pages: Box<[OnceLock<Box<[AtomicU32]>>]>,
}

impl LiveTable {
    pub(crate) fn new(max_slots: u32) -> LiveTable {
        let pages = (max_slots as usize).div_ceil(PAGE_SLOTS);
        LiveTable {
            pages: (0..pages).map(|_| OnceLock::new()).collect(),
        }
    }

    fn cell(&self, slot: u32) -> Option<&AtomicU32> {
        let slot = slot as usize;
        self.pages
            .get(slot / PAGE_SLOTS)?
            .get()
            .and_then(|page| page.get(slot % PAGE_SLOTS))
    }

    fn set(&self, slot: u32, value: u32) {
        let index = slot as usize;
        let Some(page) = self.pages.get(index / PAGE_SLOTS) else {
            return;
        };
        let page = page.get_or_init(|| (0..PAGE_SLOTS).map(|_| AtomicU32::new(0)).collect());
        if let Some(cell) = page.get(index % PAGE_SLOTS) {
            cell.store(value, Ordering::Release);
        }
    }

    /// The worker opened `conn`.
    pub(crate) fn mark_open(&self, conn: ConnId) {
        self.set(conn.slot(), open_value(conn.generation()));
    }

    /// The worker finished `conn`.
    pub(crate) fn mark_gone(&self, conn: ConnId) {
        self.set(conn.slot(), gone_value(conn.generation()));
    }

    pub(crate) fn is_open(&self, conn: ConnId) -> bool {
        self.is_open_at(conn.slot(), conn.generation())
    }

    fn is_open_at(&self, slot: u32, generation: u32) -> bool {
        self.cell(slot)
            .is_some_and(|cell| cell.load(Ordering::Acquire) == open_value(generation))
    }

    /// Bytes of the table's pages allocated so far.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.pages
            .iter()
            .filter(|page| page.get().is_some())
            .count()
            * PAGE_SLOTS
            * std::mem::size_of::<AtomicU32>()
    }
}

/// A slot's value while the connection of `generation` is open.
fn open_value(generation: u32) -> u32 {
    (generation << 1) | 1
}

/// A slot's value once the connection of `generation` is gone.
fn gone_value(generation: u32) -> u32 {
    generation << 1
}

impl fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTable")
            .field("pages", &self.pages.len())
            .field("allocated_bytes", &self.allocated_bytes())
            .finish()
    }
}

/// What every thread knows about one worker.
pub(crate) struct WorkerLink {
    /// The worker's index.
    pub index: usize,
    /// Set by the worker's first callback or by `start`, whichever is first.
    pub sender: OnceLock<InboxSender<Command>>,
    pub live: LiveTable,
    pub counters: WorkerCounters,
    /// The reactor's figures for this worker, set by `start`.
    pub io: OnceLock<Arc<PublishedStats>>,
    /// The io_uring mode the worker's ring got, set by `start`.
    pub ring_mode: OnceLock<RingMode>,
}

impl WorkerLink {
    pub(crate) fn new(index: usize, max_slots: u32) -> WorkerLink {
        WorkerLink {
            index,
            sender: OnceLock::new(),
            live: LiveTable::new(max_slots),
            counters: WorkerCounters::default(),
            io: OnceLock::new(),
            ring_mode: OnceLock::new(),
        }
    }

    /// The io figures the worker last published (zeros before `start` has
    /// attached them).
    pub(crate) fn io_stats(&self) -> IoStats {
        self.io
            .get()
            .map_or_else(IoStats::default, |published| published.snapshot())
    }

    /// Whether `conn` names a connection of this worker (and not one of
    /// another server's worker with the same index).
    pub(crate) fn owns(&self, conn: ConnId) -> bool {
        self.sender
            .get()
            .is_some_and(|sender| sender.worker() == conn.worker())
    }

    /// Queues a command for the worker; `false` when it has stopped.
    pub(crate) fn send(&self, command: Command) -> bool {
        match self.sender.get() {
            Some(sender) => sender.send(command).is_ok(),
            None => false,
        }
    }
}

impl fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerLink")
            .field("index", &self.index)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// A data frame ready for the wire, built off the worker.
pub(crate) enum OutFrame {
    /// Header and payload in one buffer.
    Whole { bytes: Vec<u8>, payload_len: usize },
    /// A header and an owned payload: two chunks, one vectored send, no copy.
    Split { head: Chunk, payload: Vec<u8> },
    /// A prepared frame shared with other connections.
    Prepared(PreparedMessage),
}

impl OutFrame {
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            OutFrame::Whole { payload_len, .. } => *payload_len,
            OutFrame::Split { payload, .. } => payload.len(),
            OutFrame::Prepared(message) => message.len(),
        }
    }
}

/// Commands a worker receives through its inbox.
pub(crate) enum Command {
    Send {
        conn: ConnId,
        frame: OutFrame,
    },
    Ping {
        conn: ConnId,
        payload: Vec<u8>,
    },
    /// Code and reason are validated by the sender.
    Close {
        conn: ConnId,
        code: u16,
        reason: Box<str>,
    },
    Terminate {
        conn: ConnId,
    },
    PauseReading {
        conn: ConnId,
    },
    ResumeReading {
        conn: ConnId,
    },
    /// `None`: every open connection of the worker.
    Broadcast {
        message: PreparedMessage,
        targets: Option<Vec<ConnId>>,
    },
    /// Shutdown phase 1: stop accepting, send Close 1001 to everyone.
    Shutdown,
    /// Shutdown phase 2: terminate whatever is left.
    TerminateAll,
    /// Client role: open a connection (a boxed
    /// `client::ConnectRequest<H::ConnData>`).
    Connect(Box<dyn std::any::Any + Send>),
    /// Stop the worker.
    Stop,
}

/// Encodes the header of an unmasked (server) frame with FIN set.
pub(crate) fn frame_head(opcode: Opcode, payload_len: usize) -> ([u8; MAX_HEADER_LEN], usize) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload_len as u64,
    };
    let mut bytes = [0u8; MAX_HEADER_LEN];
    let len = encode_header(&header, &mut bytes);
    (bytes, len)
}

/// One whole server frame: header then payload.
pub(crate) fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let (head, head_len) = frame_head(opcode, payload.len());
    let mut bytes = Vec::with_capacity(head_len + payload.len());
    bytes.extend_from_slice(&head[..head_len]);
    bytes.extend_from_slice(payload);
    bytes
}

/// A header chunk (inline, no allocation) for an owned payload.
pub(crate) fn head_chunk(opcode: Opcode, payload_len: usize) -> Chunk {
    let (head, head_len) = frame_head(opcode, payload_len);
    // MAX_HEADER_LEN (14) fits INLINE_CAPACITY (22).
    Chunk::copied(&head[..head_len])
}

/// A message encoded once as a complete frame and shared by every
/// connection it is sent to (server frames are not masked, so the bytes are
/// the same for all). Cloning is a reference-count increment.
#[derive(Clone)]
pub struct PreparedMessage {
    frame: Arc<[u8]>,
    payload_len: usize,
}

impl PreparedMessage {
    /// A text message.
    pub fn text(text: &str) -> PreparedMessage {
        PreparedMessage::encode(Opcode::Text, text.as_bytes())
    }

    /// A binary message.
    pub fn binary(bytes: &[u8]) -> PreparedMessage {
        PreparedMessage::encode(Opcode::Binary, bytes)
    }

    fn encode(opcode: Opcode, payload: &[u8]) -> PreparedMessage {
        PreparedMessage {
            frame: Arc::from(encode_frame(opcode, payload)),
            payload_len: payload.len(),
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload_len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload_len == 0
    }

    /// The encoded frame (header and payload) as it goes on the wire.
    pub fn frame_bytes(&self) -> &[u8] {
        &self.frame
    }

    pub(crate) fn into_chunk(self) -> Chunk {
        Chunk::Shared(self.frame)
    }
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

/// Reaches one connection from any thread: `Clone + Send + Sync`, 24 bytes,
/// no allocation per connection. Operations are queued on the owning
/// worker's inbox and run there in order; they fail with `Gone` once the
/// connection has closed (see the module docs for the race this leaves).
///
/// Sends through a handle are subject to the backpressure policy on the
/// worker; a message dropped there is counted in
/// [`WorkerStats::dropped_messages`](crate::WorkerStats::dropped_messages)
/// (the caller has already returned).
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    link: Arc<WorkerLink>,
}

impl ConnHandle {
    pub(crate) fn new(id: ConnId, link: Arc<WorkerLink>) -> ConnHandle {
        ConnHandle { id, link }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether the connection still exists (it may be closing).
    pub fn is_open(&self) -> bool {
        self.link.live.is_open(self.id)
    }

    fn command(&self, command: Command) -> Result<(), Gone> {
        if !self.is_open() || !self.link.send(command) {
            return Err(Gone);
        }
        Ok(())
    }

    fn send_frame(&self, frame: OutFrame) -> Result<(), SendError> {
        self.command(Command::Send {
            conn: self.id,
            frame,
        })
        .map_err(|Gone| SendError::Gone)
    }

    /// Sends a text message (copied once, into the frame).
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send_frame(OutFrame::Whole {
            bytes: encode_frame(Opcode::Text, text.as_bytes()),
            payload_len: text.len(),
        })
    }

    /// Sends a binary message (copied once, into the frame).
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(OutFrame::Whole {
            bytes: encode_frame(Opcode::Binary, bytes),
            payload_len: bytes.len(),
        })
    }

    /// Sends a text message without copying it.
    pub fn send_text_owned(&self, text: String) -> Result<(), SendError> {
        self.send_frame(OutFrame::Split {
            head: head_chunk(Opcode::Text, text.len()),
            payload: text.into_bytes(),
        })
    }

    /// Sends a binary message without copying it.
    pub fn send_binary_owned(&self, bytes: Vec<u8>) -> Result<(), SendError> {
        self.send_frame(OutFrame::Split {
            head: head_chunk(Opcode::Binary, bytes.len()),
            payload: bytes,
        })
    }

    /// Sends a prepared message (shared, not copied).
    pub fn send_prepared(&self, message: &PreparedMessage) -> Result<(), SendError> {
        self.send_frame(OutFrame::Prepared(message.clone()))
    }

    /// Sends a Ping (at most 125 bytes of payload). On the worker it meets
    /// the backpressure limit like a message: at the limit it is dropped
    /// and counted (see [`Conn::ping`](crate::Conn::ping)). The keepalive,
    /// [`ServerBuilder::ping_interval`](crate::ServerBuilder::ping_interval),
    /// already pings every connection and ends a dead one.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.command(Command::Ping {
            conn: self.id,
            payload: payload.to_vec(),
        })
        .map_err(|Gone| SendError::Gone)
    }

    /// Starts the closing handshake with `code` and `reason` (validated
    /// here; on error nothing is sent). A connection already closing is
    /// left as it is.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.close_bytes(code, reason.as_bytes())
    }

    /// [`close`](Self::close) with a reason given as bytes, refused with
    /// [`CloseError::ReasonNotUtf8`] unless it is UTF-8.
    pub fn close_bytes(&self, code: u16, reason: &[u8]) -> Result<(), CloseError> {
        validate_close(code, reason)?;
        let reason = std::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
        self.command(Command::Close {
            conn: self.id,
            code,
            reason: reason.into(),
        })
        .map_err(|Gone| CloseError::Gone)
    }

    /// Closes the socket at once, without a Close frame (`on_closed`
    /// reports 1006, local, forced when the connection was open; one
    /// already closing keeps its initiator and the peer's code, if any).
    pub fn terminate(&self) -> Result<(), Gone> {
        self.command(Command::Terminate { conn: self.id })
    }

    /// [`Conn::pause_reading`](crate::Conn::pause_reading) from any thread:
    /// takes effect when the connection's worker runs the command, so
    /// messages already being delivered may still arrive.
    pub fn pause_reading(&self) -> Result<(), Gone> {
        self.command(Command::PauseReading { conn: self.id })
    }

    /// [`Conn::resume_reading`](crate::Conn::resume_reading) from any
    /// thread: the usual way to resume once work handed elsewhere is done.
    pub fn resume_reading(&self) -> Result<(), Gone> {
        self.command(Command::ResumeReading { conn: self.id })
    }
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.id)
            .field("open", &self.is_open())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn handles_are_small_and_shareable() {
        assert_send_sync_clone::<ConnHandle>();
        assert_send_sync_clone::<PreparedMessage>();
        assert!(std::mem::size_of::<ConnHandle>() <= 24);
    }

    #[test]
    fn the_liveness_table_follows_generations_per_slot() {
        let table = LiveTable::new(3000);
        for generation in [0, 1, 7] {
            assert!(
                !table.is_open_at(1500, generation),
                "unallocated pages read as gone"
            );
        }
        assert_eq!(table.allocated_bytes(), 0);
        table.set(1500, open_value(7));
        assert!(table.is_open_at(1500, 7));
        assert_eq!(table.allocated_bytes(), PAGE_SLOTS * 4);
        // A fresh page reads as gone for every generation, 0 included.
        assert!(!table.is_open_at(1501, 0) && !table.is_open_at(1501, 1));
        // The slot's next connection has a later generation; until it
        // opens, neither the old nor the new one reads as open.
        table.set(1500, gone_value(7));
        for generation in [6, 7, 8, 9] {
            assert!(!table.is_open_at(1500, generation), "{generation}");
        }
        table.set(1500, open_value(8));
        assert!(table.is_open_at(1500, 8) && !table.is_open_at(1500, 7));
        // An attempt that never opened (generation 9) after 8 is gone.
        table.set(1500, gone_value(8));
        assert!(!table.is_open_at(1500, 9) && !table.is_open_at(1500, 8));
        // Generations wrap without panicking.
        table.set(1500, open_value(u32::MAX));
        assert!(table.is_open_at(1500, u32::MAX));
        // Slots beyond the table are ignored, not a panic.
        table.set(5000, open_value(0));
        assert!(!table.is_open_at(5000, 0));
        assert_eq!(table.allocated_bytes(), PAGE_SLOTS * 4);
    }

    #[test]
    fn frames_are_unmasked_with_minimal_lengths() {
        assert_eq!(encode_frame(Opcode::Text, b"hi"), b"\x81\x02hi");
        let medium = encode_frame(Opcode::Binary, &[7; 126]);
        assert_eq!(&medium[..4], &[0x82, 126, 0, 126]);
        assert_eq!(medium.len(), 4 + 126);
        let large = encode_frame(Opcode::Binary, &vec![0; 65536]);
        assert_eq!(&large[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(head_chunk(Opcode::Text, 5).as_bytes(), b"\x81\x05");
        let prepared = PreparedMessage::text("hello");
        assert_eq!(prepared.frame_bytes(), b"\x81\x05hello");
        assert_eq!(prepared.len(), 5);
    }
}
