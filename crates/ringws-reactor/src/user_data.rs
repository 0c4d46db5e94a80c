//! The 64-bit `user_data` every submission carries, and its decoding.
//!
//! ```text
//!  63        56 55                       32 31                                0
//! +------------+---------------------------+-----------------------------------+
//! |  op kind   |      slot (24 bits)       |        generation (32 bits)       |
//! +------------+---------------------------+-----------------------------------+
//! ```
//!
//! * **op kind** ([`OpKind`]) tells the completion handler which operation
//!   finished. Kind 0 is never used, so `user_data == 0` is never ours.
//! * **slot** is the index of the connection in the worker's slab (for
//!   worker-level operations such as accept or the inbox wakeup it is 0).
//! * **generation** is the slot's generation when the operation was
//!   submitted. A slot's generation changes when the slot is released, and a
//!   slot is only released after every operation of its current generation
//!   has completed, so a completion always finds the connection it was
//!   submitted for. The generation check in the completion handler is the
//!   second line of defence: a completion whose generation does not match is
//!   dropped without touching the slot's next owner.

/// Number of bits for the slot index.
pub(crate) const SLOT_BITS: u32 = 24;
/// Largest number of connection slots one worker can address.
pub(crate) const MAX_SLOTS: u32 = 1 << SLOT_BITS;
const SLOT_SHIFT: u32 = 32;
const KIND_SHIFT: u32 = 56;
const SLOT_MASK: u64 = (MAX_SLOTS as u64) - 1;

/// Which operation a completion belongs to. Names follow the kernel opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum OpKind {
    /// `IORING_OP_ACCEPT` (multishot) on the worker's listener.
    Accept = 1,
    /// `IORING_OP_RECV` (multishot, provided buffers) on a connection.
    Recv = 2,
    /// `IORING_OP_SENDMSG` on a connection.
    Send = 3,
    /// `IORING_OP_CONNECT` on an outbound connection.
    Connect = 4,
    /// `IORING_OP_ASYNC_CANCEL`; its completion carries no information we need.
    Cancel = 5,
    /// `IORING_OP_READ` of the inbox eventfd.
    Wake = 6,
}

impl OpKind {
    const fn from_u8(kind: u8) -> Option<OpKind> {
        Some(match kind {
            1 => OpKind::Accept,
            2 => OpKind::Recv,
            3 => OpKind::Send,
            4 => OpKind::Connect,
            5 => OpKind::Cancel,
            6 => OpKind::Wake,
            _ => return None,
        })
    }
}

/// A decoded `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserData {
    pub kind: OpKind,
    pub slot: u32,
    pub generation: u32,
}

/// Packs an operation into a `user_data`. `slot` must be below [`MAX_SLOTS`];
/// higher bits are masked off (the slab never hands out such a slot).
pub(crate) const fn encode(kind: OpKind, slot: u32, generation: u32) -> u64 {
    ((kind as u64) << KIND_SHIFT) | (((slot as u64) & SLOT_MASK) << SLOT_SHIFT) | generation as u64
}

/// Unpacks a `user_data`; `None` when the kind is not one of ours.
pub(crate) const fn decode(user_data: u64) -> Option<UserData> {
    let kind = match OpKind::from_u8((user_data >> KIND_SHIFT) as u8) {
        Some(kind) => kind,
        None => return None,
    };
    Some(UserData {
        kind,
        slot: ((user_data >> SLOT_SHIFT) & SLOT_MASK) as u32,
        generation: user_data as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_table() {
        let table: &[(OpKind, u32, u32, u64)] = &[
            (OpKind::Accept, 0, 0, 0x0100_0000_0000_0000),
            (OpKind::Recv, 1, 0, 0x0200_0001_0000_0000),
            (OpKind::Send, 0, 1, 0x0300_0000_0000_0001),
            (
                OpKind::Connect,
                0x00AB_CDEF,
                0x1234_5678,
                0x04AB_CDEF_1234_5678,
            ),
            (
                OpKind::Cancel,
                MAX_SLOTS - 1,
                u32::MAX,
                0x05FF_FFFF_FFFF_FFFF,
            ),
            (OpKind::Wake, 7, 9, 0x0600_0007_0000_0009),
        ];
        for &(kind, slot, generation, packed) in table {
            assert_eq!(
                encode(kind, slot, generation),
                packed,
                "{kind:?} {slot} {generation}"
            );
            assert_eq!(
                decode(packed),
                Some(UserData {
                    kind,
                    slot,
                    generation
                }),
                "{packed:#x}"
            );
        }
    }

    #[test]
    fn foreign_user_data_is_rejected() {
        for packed in [
            0u64,
            0x0000_0001_0000_0001,
            0x0700_0000_0000_0000,
            0x0800_0000_0000_0000,
            u64::MAX,
        ] {
            assert_eq!(decode(packed), None, "{packed:#x}");
        }
    }

    #[test]
    fn slot_bits_never_leak_into_the_kind() {
        // A slot above the 24-bit range is masked, never turning a Recv into
        // another kind.
        let packed = encode(OpKind::Recv, MAX_SLOTS | 5, 3);
        assert_eq!(
            decode(packed),
            Some(UserData {
                kind: OpKind::Recv,
                slot: 5,
                generation: 3
            })
        );
    }

    #[test]
    fn generations_distinguish_reuses_of_a_slot() {
        let old = encode(OpKind::Recv, 42, 7);
        let new = encode(OpKind::Recv, 42, 8);
        assert_ne!(old, new);
        assert_eq!(decode(old).map(|d| d.generation), Some(7));
        assert_eq!(decode(new).map(|d| d.generation), Some(8));
    }
}
