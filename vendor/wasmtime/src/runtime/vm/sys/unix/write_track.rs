//! edge patch: the pages a pooled memory slot's instance writes, told by the MMU instead
//! of a `PAGEMAP_SCAN` walk (see `vendor/README.md`, "Written pages without a scan").
//!
//! A slot is *armed* after an in-place reset: its accessible pages are made read-only,
//! and the first write to each page faults. Wasmtime's signal handler hands the fault to
//! [`on_write_fault`] before anything else: the page becomes writable again and its bit
//! is set in the slot's bitmap, and the write is retried. The next reset then copies back
//! exactly the pages whose bits are set (they stay writable: a request writes the same
//! pages as the last one, so after the first requests nothing faults), with no walk of
//! the slot's page tables.
//!
//! The invariant an armed slot keeps: since it was armed, every page of
//! `0..armed_len` whose bit is clear is read-only, and so unwritten. Anything else that
//! changes the slot's protection or mappings disarms it first
//! (`MemoryImageSlot::disarm_write_tracking`):
//! the pages become writable again and the next reset is a scan, as before.
//!
//! Everything the signal handler reads lives for the rest of the process (pools are
//! registered in a fixed table, their slot records are never freed), so the handler
//! allocates nothing, takes no lock and cannot read freed memory.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::boxed::Box;

/// `si_code` of a SIGSEGV for an access the page's protection forbids (Linux's
/// `<asm-generic/siginfo.h>`; the `libc` crate does not export it).
pub const SEGV_ACCERR: libc::c_int = 2;

/// How many pools a process can register; later pools simply are not tracked.
const MAX_POOLS: usize = 64;

/// Pages one armed slot may make writable one by one. Each written run of pages splits
/// the slot's mapping in the kernel (a VMA per run and per gap), and a process has a
/// bounded number of them (`vm.max_map_count`, 65 530 by default): a guest that writes
/// every other page must not be able to use them up. Past the budget the slot
/// *overflows*: all of it becomes writable at once and its next reset is a scan.
const SLOT_FAULT_BUDGET: usize = 256;

/// The same bound for all armed slots of the process together.
const PROCESS_FAULT_BUDGET: usize = 8192;

/// Pages made writable one by one in all armed slots, now.
static PROCESS_FAULTS: AtomicUsize = AtomicUsize::new(0);

static POOLS: [AtomicPtr<PoolTrack>; MAX_POOLS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_POOLS];

/// One pool's memory slots, as the signal handler finds them.
#[derive(Debug)]
pub struct PoolTrack {
    /// Address of slot 0's first byte.
    start: usize,
    slot_bytes: usize,
    slots: Box<[SlotTrack]>,
    alive: AtomicBool,
}

/// One memory slot's record.
#[derive(Debug)]
pub struct SlotTrack {
    /// Bytes from the slot's base that are armed; 0 when the slot is not armed.
    armed_len: AtomicUsize,
    /// One bit per host page, set when the page was written (and made writable) since
    /// the slot was armed. Owned by the slot's current user; replaced only while the
    /// slot is not armed.
    bits: AtomicPtr<AtomicU64>,
    /// Number of `u64` words at `bits`.
    words: AtomicUsize,
    /// Pages made writable one by one since the slot was armed.
    faults: AtomicUsize,
    /// Set by the signal handler when the slot overflowed its fault budget (it is then
    /// disarmed and all writable); taken by `take_overflow`.
    overflowed: AtomicBool,
}

fn page_size() -> usize {
    crate::runtime::vm::host_page_size()
}

impl PoolTrack {
    /// Registers a pool of `num_slots` slots of `slot_bytes` from `start`. `None` when the
    /// process already registered `MAX_POOLS` pools. The record is leaked: a signal
    /// handler may read it at any time (a few dozen bytes per slot).
    pub fn register(start: usize, slot_bytes: usize, num_slots: usize) -> Option<&'static PoolTrack> {
        let slots = (0..num_slots)
            .map(|_| SlotTrack {
                armed_len: AtomicUsize::new(0),
                bits: AtomicPtr::new(core::ptr::null_mut()),
                words: AtomicUsize::new(0),
                faults: AtomicUsize::new(0),
                overflowed: AtomicBool::new(false),
            })
            .collect();
        let pool: &'static mut PoolTrack = Box::leak(Box::new(PoolTrack {
            start,
            slot_bytes,
            slots,
            alive: AtomicBool::new(true),
        }));
        for entry in POOLS.iter() {
            if entry
                .compare_exchange(
                    core::ptr::null_mut(),
                    pool,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                return Some(pool);
            }
        }
        None
    }

    /// The slot record of slot `index`.
    pub fn slot(&'static self, index: usize) -> &'static SlotTrack {
        &self.slots[index]
    }

    /// The pool's memory is going away: its range may be reused by another mapping, so
    /// the handler must not take faults there for this pool's.
    pub fn retire(&self) {
        for slot in self.slots.iter() {
            slot.armed_len.store(0, Ordering::SeqCst);
            slot.forget_faults();
        }
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl SlotTrack {
    /// Whether the slot is armed, and for how many bytes.
    pub fn armed_len(&self) -> usize {
        self.armed_len.load(Ordering::Acquire)
    }

    /// Whether the slot overflowed its fault budget since it was armed (it is disarmed
    /// then); clears the flag.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Gives the slot's faults back to the process budget.
    fn forget_faults(&self) {
        let faults = self.faults.swap(0, Ordering::AcqRel);
        PROCESS_FAULTS.fetch_sub(faults, Ordering::AcqRel);
    }

    /// Takes one fault from the slot's and the process's budgets; `false` when either
    /// is spent.
    fn take_fault(&self) -> bool {
        if self.faults.load(Ordering::Relaxed) >= SLOT_FAULT_BUDGET {
            return false;
        }
        if PROCESS_FAULTS.fetch_add(1, Ordering::AcqRel) >= PROCESS_FAULT_BUDGET {
            PROCESS_FAULTS.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.faults.fetch_add(1, Ordering::AcqRel);
        true
    }

    fn bitmap(&self) -> &[AtomicU64] {
        let ptr = self.bits.load(Ordering::Acquire);
        if ptr.is_null() {
            return &[];
        }
        // SAFETY: `bits` points at `words` words allocated by `arm` and freed only by a
        // later `arm` of this slot, which its user calls while nothing runs in the slot.
        unsafe { core::slice::from_raw_parts(ptr, self.words.load(Ordering::Acquire)) }
    }

    /// Arms the slot for `len` bytes from `base`: every bit clear, every page read-only.
    /// `Ok(false)` when the pages could not be made read-only (the slot stays unarmed).
    ///
    /// # Safety
    ///
    /// `base..base + len` is this slot's accessible memory, readable and writable now,
    /// and nothing runs in it while this is called.
    pub unsafe fn arm(&self, base: *mut u8, len: usize) -> crate::Result<bool> {
        debug_assert_eq!(self.armed_len(), 0);
        self.forget_faults();
        self.overflowed.store(false, Ordering::Release);
        let pages = len / page_size();
        let words = pages.div_ceil(64);
        if words > self.words.load(Ordering::Acquire) {
            let fresh: Box<[AtomicU64]> = (0..words).map(|_| AtomicU64::new(0)).collect();
            let old = self.bits.swap(Box::into_raw(fresh).cast(), Ordering::AcqRel);
            let old_words = self.words.swap(words, Ordering::AcqRel);
            if !old.is_null() {
                // SAFETY: allocated below as a boxed slice of `old_words` words; the slot
                // was not armed, so no handler reads it.
                drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(old, old_words)) });
            }
        } else {
            for word in self.bitmap() {
                word.store(0, Ordering::Relaxed);
            }
        }
        // SAFETY: the caller's contract.
        if unsafe { libc::mprotect(base.cast(), len, libc::PROT_READ) } != 0 {
            // Part of the range may be read-only now; nothing tracks it, so all of it
            // becomes writable again (as `disarm` leaves it). If even that fails the
            // slot cannot be used: the caller's reset fails and the store is dropped.
            // SAFETY: the caller's contract.
            return unsafe { crate::runtime::vm::sys::vm::expose_existing_mapping(base, len) }
                .map(|()| false)
                .map_err(Into::into);
        }
        self.armed_len.store(len, Ordering::Release);
        Ok(true)
    }

    /// Disarms the slot: `base..base + armed_len` writable again, the bits forgotten.
    ///
    /// # Safety
    ///
    /// `base` is this slot's base and nothing runs in the slot.
    pub unsafe fn disarm(&self, base: *mut u8) -> crate::Result<()> {
        let len = self.armed_len.swap(0, Ordering::AcqRel);
        self.forget_faults();
        if len > 0 {
            // SAFETY: the range was this slot's accessible memory when it was armed, and
            // every change of it since disarmed the slot first.
            unsafe { crate::runtime::vm::sys::vm::expose_existing_mapping(base, len)? };
        }
        Ok(())
    }

    /// Calls `each` with every run of written pages (offset from the slot's base and
    /// length in bytes), and returns how many bytes they are.
    pub fn written(&self, mut each: impl FnMut(usize, usize)) -> usize {
        let page = page_size();
        let pages = self.armed_len() / page;
        let bits = self.bitmap();
        let set = |index: usize| bits[index / 64].load(Ordering::Relaxed) & (1 << (index % 64)) != 0;
        let mut total = 0;
        let mut index = 0;
        while index < pages {
            if index % 64 == 0 && bits[index / 64].load(Ordering::Relaxed) == 0 {
                index += 64;
                continue;
            }
            if !set(index) {
                index += 1;
                continue;
            }
            let start = index;
            while index < pages && set(index) {
                index += 1;
            }
            each(start * page, (index - start) * page);
            total += (index - start) * page;
        }
        total
    }
}

/// Called first by wasmtime's SIGSEGV handler, for an access fault at `addr`. Returns
/// `true` when the fault was the first write to a page of an armed slot: the page is
/// writable now and the write can be retried. Async-signal-safe: atomics and one
/// `mprotect`.
pub fn on_write_fault(addr: usize) -> bool {
    for entry in POOLS.iter() {
        let pool = entry.load(Ordering::Acquire);
        if pool.is_null() {
            return false;
        }
        // SAFETY: registered pools are leaked, never freed.
        let pool = unsafe { &*pool };
        if addr < pool.start || !pool.alive.load(Ordering::Acquire) {
            continue;
        }
        let index = (addr - pool.start) / pool.slot_bytes;
        let Some(slot) = pool.slots.get(index) else {
            continue;
        };
        let offset = addr - pool.start - index * pool.slot_bytes;
        if offset >= slot.armed_len() {
            // Outside the armed bytes: a guard page or memory beyond the heap's size, a
            // real out-of-bounds access for wasmtime to report.
            return false;
        }
        let page = offset / page_size();
        let Some(word) = slot.bitmap().get(page / 64) else {
            return false;
        };
        let mask = 1u64 << (page % 64);
        if word.load(Ordering::Relaxed) & mask != 0 {
            // Already writable: not a fault this module caused.
            return false;
        }
        let slot_base = pool.start + index * pool.slot_bytes;
        let page_addr = slot_base + page * page_size();
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY (both calls): the range is in an armed slot's accessible memory, made
        // read-only by this module; making it writable again is what disarming does.
        if slot.take_fault()
            && unsafe { libc::mprotect(page_addr as *mut libc::c_void, page_size(), rw) } == 0
        {
            // Set after the page is writable: a reset that sees the bit copies it back.
            word.fetch_or(mask, Ordering::Release);
            return true;
        }
        // Over budget (or the kernel refused the split): the whole slot writable, in one
        // mapping again, and disarmed; its next reset scans.
        let len = slot.armed_len();
        if unsafe { libc::mprotect(slot_base as *mut libc::c_void, len, rw) } != 0 {
            return false;
        }
        slot.armed_len.store(0, Ordering::Release);
        slot.overflowed.store(true, Ordering::Release);
        return true;
    }
    false
}
