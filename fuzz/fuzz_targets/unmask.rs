//! Every unmask implementation, one-shot and in two pieces, equals the byte
//! loop for arbitrary data, mask, payload offset, alignment and split point.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws_proto::mask::{unmask, unmask_bytewise, unmask_with, UnmaskImpl};

#[derive(Arbitrary, Debug)]
struct Input {
    mask: [u8; 4],
    offset: usize,
    align: u8,
    split: u16,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Input {
        mask,
        offset,
        align,
        split,
        data,
    } = input;
    let align = usize::from(align % 64);
    let split = usize::from(split) % (data.len() + 1);

    let mut expected = data.clone();
    unmask_bytewise(&mut expected, mask, offset);

    let mut storage = vec![0u8; align + data.len()];
    for imp in UnmaskImpl::available() {
        let buf = &mut storage[align..];
        buf.copy_from_slice(&data);
        unmask_with(imp, buf, mask, offset);
        assert_eq!(buf, &expected[..], "{imp:?} one-shot");

        buf.copy_from_slice(&data);
        let (first, second) = buf.split_at_mut(split);
        unmask_with(imp, first, mask, offset);
        unmask_with(imp, second, mask, offset.wrapping_add(split));
        assert_eq!(buf, &expected[..], "{imp:?} split at {split}");
    }

    let buf = &mut storage[align..];
    buf.copy_from_slice(&data);
    let (first, second) = buf.split_at_mut(split);
    unmask(first, mask, offset);
    unmask(second, mask, offset.wrapping_add(split));
    assert_eq!(buf, &expected[..], "dispatch split at {split}");
});
