//! Lengths claimed by a peer are not trusted with memory: a counting allocator measures what
//! decoding hostile frames allocates.
//!
//! This file is its own test binary, so its global allocator counts only its own tests; counts
//! are per thread, so the test harness's other threads do not disturb them.

// A `GlobalAlloc` implementation is unsafe by definition. It only forwards to `System` and
// counts; no pointer is touched.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_proto::*;

struct Counting;

thread_local! {
    // Const-initialized, so reading it never allocates (no recursion into the allocator).
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    let _ = TOTAL.try_with(|total| total.set(total.get() + size));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns (largest single allocation, total bytes allocated) on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|largest| largest.set(0));
    TOTAL.with(|total| total.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

fn hard_limits() -> FrameLimits {
    FrameLimits::new(FRAME_BYTES_HARD_MAX).unwrap()
}

#[test]
fn an_oversized_length_allocates_nothing() {
    let header = [0x57, 0x50, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
    let (result, largest, total) =
        measure(|| decode_frame::<Request>(&header, &FrameLimits::default()));
    assert!(
        matches!(result, Err(FrameError::TooLarge { .. })),
        "{result:?}"
    );
    assert_eq!((largest, total), (0, 0));
}

#[test]
fn a_length_within_the_limit_allocates_nothing_until_the_body_is_there() {
    // 100 MiB claimed, under the hard limit: the decoder just waits for more bytes.
    let mut header = vec![0x57, 0x50, 0x01, 0x00];
    header.extend_from_slice(&(100u32 << 20).to_le_bytes());
    header.extend_from_slice(&[0; 12]);
    let (result, largest, total) = measure(|| decode_frame::<Request>(&header, &hard_limits()));
    assert_eq!(result, Ok(None));
    assert_eq!((largest, total), (0, 0));
}

/// Intact frames (their CRC holds) whose bodies claim huge lengths inside: each must fail
/// having allocated little — never the claimed size.
#[test]
fn lengths_inside_a_body_are_not_trusted() {
    let varint_u64 = |n: u64| {
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&n.to_le_bytes());
        bytes
    };
    let huge = 120 << 20; // under FRAME_BYTES_HARD_MAX, so no other limit steps in first
    let mut bodies: Vec<(&str, Vec<u8>)> = Vec::new();

    // DescribeTopic { topic } claiming a 120 MiB name.
    let mut body = vec![4];
    body.extend(varint_u64(huge));
    body.extend_from_slice(b"abc");
    bodies.push(("topic name", body));

    // Produce with one event whose value claims 120 MiB.
    let mut body = vec![6, 1, b't', 1, 0, 1, 0, 0, 0];
    body.extend(varint_u64(huge));
    bodies.push(("event value", body));

    // Produce claiming 2^40 events.
    let mut body = vec![6, 1, b't', 1, 0];
    body.extend(varint_u64(1 << 40));
    body.extend_from_slice(&[0, 0, 0, 0]);
    bodies.push(("event count", body));

    // Produce with one event claiming 2^40 headers.
    let mut body = vec![6, 1, b't', 1, 0, 1, 0, 0];
    body.extend(varint_u64(1 << 40));
    bodies.push(("header count", body));

    for (what, body) in bodies {
        let mut frame = Vec::new();
        encode_raw_frame(&mut frame, 1, &body);
        let (result, largest, _) = measure(|| decode_frame::<Request>(&frame, &hard_limits()));
        assert!(
            matches!(result, Err(FrameError::Malformed { .. })),
            "{what}: {result:?}"
        );
        // serde preallocates at most 1 MiB for a sequence; byte strings and text allocate
        // nothing they have not seen.
        assert!(
            largest <= (1 << 20) + 4096,
            "{what}: allocated {largest} bytes"
        );
    }

    // A read response whose log frames claim 120 MiB.
    let mut body = vec![8, 0, 0, 0, 0, 0];
    body.extend(varint_u64(huge));
    let mut frame = Vec::new();
    encode_raw_frame(&mut frame, 1, &body);
    let (result, largest, _) = measure(|| decode_frame::<Response>(&frame, &hard_limits()));
    assert!(
        matches!(result, Err(FrameError::Malformed { .. })),
        "{result:?}"
    );
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn valid_bodies_allocate_about_their_size() {
    let value = vec![0xAB; 4 << 20];
    let request = Request::Produce(Produce {
        topic: "t".into(),
        partitioning: Partitioning::RoundRobin,
        expected_offset: None,
        events: vec![WireEvent {
            value: value.clone().into(),
            ..WireEvent::default()
        }],
    });
    let mut frame = Vec::new();
    encode_frame(&mut frame, 1, &request, &FrameLimits::default()).unwrap();
    let (result, largest, total) =
        measure(|| decode_frame::<Request>(&frame, &FrameLimits::default()));
    let (decoded, _) = result.unwrap().unwrap();
    assert_eq!(decoded.message, request);
    // The value is copied once, at its exact size: no per-byte growth, no doubling.
    assert_eq!(largest, value.len());
    assert!(total < value.len() + 4096, "allocated {total} bytes in all");
}
