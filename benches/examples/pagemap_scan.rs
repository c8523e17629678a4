//! What the kernel's `PAGEMAP_SCAN` ioctl costs for the memory reset of pooled slots, laid
//! out the way wasmtime's pool lays them out: a reserved, inaccessible range per slot, its
//! accessible start made read-write, and the memory image mapped over it from a memfd
//! (copy-on-write). Each slot gets PRESENT written pages, as a request leaves behind.
//!
//! It times, interleaved, the same scan as wasmtime's reset (written, present pages that
//! are neither the zero page nor file pages) done two ways: one call per slot, as each
//! store's teardown does, and one call over every slot at once, as a batched reset would.
//! Then one slot with a single written page, for the per-page share.
//!
//!   cargo run --release -p edge-benches --example pagemap_scan -- [SLOTS] [PRESENT]
//!
//! Defaults: 16 slots, 8 pages (what a Rust hello request writes). Linux 6.7 or later.
#![allow(missing_docs)]
#![allow(unsafe_code)]

use std::time::Instant;

const PAGE: usize = 4096;
/// Distance between slots (wasmtime's slots are larger; the gap is never touched).
const SLOT: usize = 64 << 20;
/// The accessible part of each slot: the hello's 17 wasm pages.
const ACCESSIBLE: usize = 1088 << 10;
/// The memory image mapped at each slot's start.
const IMAGE: usize = 256 * PAGE;
const ROUNDS: usize = 5;
const CALLS: usize = 20_000;

/// The kernel's `struct pm_scan_arg` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// The kernel's `struct page_region`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16) | (0x66 << 8) | 16;

fn check(ok: bool, what: &str) {
    if !ok {
        panic!("{what}: {}", std::io::Error::last_os_error());
    }
}

/// `slots` slots with `present` written pages each; returns the first slot's address.
fn lay_out(slots: usize, present: usize) -> *mut u8 {
    // SAFETY: plain system calls on memory this function reserves and never frees (the
    // program ends after measuring); every address passed is inside that reservation.
    unsafe {
        let image = libc::memfd_create(c"image".as_ptr(), 0);
        check(image >= 0, "memfd_create");
        check(libc::ftruncate(image, IMAGE as i64) == 0, "ftruncate");
        let reserved = libc::mmap(
            std::ptr::null_mut(),
            SLOT * (slots + 1),
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        check(reserved != libc::MAP_FAILED, "mmap");
        let base = (reserved as usize).next_multiple_of(2 << 20) as *mut u8;
        for slot in 0..slots {
            let start = base.add(slot * SLOT);
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            check(
                libc::mprotect(start.cast(), ACCESSIBLE, rw) == 0,
                "mprotect",
            );
            let mapped = libc::mmap(
                start.cast(),
                IMAGE,
                rw,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                image,
                0,
            );
            check(mapped != libc::MAP_FAILED, "mmap image");
            let stride = (ACCESSIBLE / PAGE) / present.max(1);
            for page in 0..present {
                start.add(page * stride * PAGE).write_volatile(1);
            }
        }
        base
    }
}

/// One scan of `[start, end)`, as wasmtime's reset asks it; returns the regions found.
fn scan(pagemap: i32, start: usize, end: usize, regions: &mut [PageRegion]) -> usize {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start: start as u64,
        end: end as u64,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        max_pages: ((end - start) / PAGE) as u64,
        category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_mask: PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_PFNZERO | PAGE_IS_FILE,
        ..PmScanArg::default()
    };
    // SAFETY: `arg` is a valid `pm_scan_arg` whose `vec` points at `regions`, as long as
    // `vec_len` says; the kernel writes nothing else.
    let found = unsafe { libc::ioctl(pagemap, PAGEMAP_SCAN, &mut arg) };
    check(found >= 0, "PAGEMAP_SCAN (Linux 6.7 or later)");
    found as usize
}

/// Mean microseconds per slot of `CALLS` repetitions of `pass`.
fn time(slots: usize, mut pass: impl FnMut() -> usize) -> (f64, usize) {
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..CALLS {
        found = pass();
    }
    let micros = started.elapsed().as_secs_f64() * 1e6;
    (micros / (CALLS * slots) as f64, found)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let slots: usize = args.next().map_or(16, |a| a.parse().expect("SLOTS"));
    let present: usize = args.next().map_or(8, |a| a.parse().expect("PRESENT"));
    let base = lay_out(slots, present) as usize;
    let single = lay_out(1, 1) as usize;
    // SAFETY: a NUL-terminated path and plain flags.
    let pagemap = unsafe { libc::open(c"/proc/self/pagemap".as_ptr(), libc::O_RDONLY) };
    check(pagemap >= 0, "open /proc/self/pagemap");
    let mut regions = vec![PageRegion::default(); slots * present + 32];

    println!("{slots} slots, {present} written pages each; µs per slot, {CALLS} calls a run");
    println!(
        "{:>6} {:>14} {:>14} {:>14}",
        "round", "call per slot", "one call", "1 page, 1 slot"
    );
    for round in 1..=ROUNDS {
        let (each, found_each) = time(slots, || {
            (0..slots)
                .map(|s| {
                    let start = base + s * SLOT;
                    scan(pagemap, start, start + ACCESSIBLE, &mut regions)
                })
                .sum()
        });
        let end = base + (slots - 1) * SLOT + ACCESSIBLE;
        let (batched, found_batched) = time(slots, || scan(pagemap, base, end, &mut regions));
        let (one, _) = time(1, || {
            scan(pagemap, single, single + ACCESSIBLE, &mut regions)
        });
        assert_eq!(found_each, found_batched, "both ways find the same regions");
        println!("{round:>6} {each:>14.3} {batched:>14.3} {one:>14.3}");
    }
}
