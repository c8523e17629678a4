//! Fiber stacks for VUs, reused instead of mapped and unmapped for every call.
//!
//! Every async call into a VU (each iteration) runs on a fiber stack. With wasmtime's
//! on-demand allocator each one is a fresh `mmap` and, when the call ends, a `munmap`,
//! which on a multi-threaded process is a TLB shoot-down IPI to every CPU it runs on: with
//! 3 000 VUs sleeping between requests, `perf` put ~40 % of the CPU in
//! `native_write_msr`/`smp_call_function_many_cond` under those unmaps. Here a finished
//! call's stack goes back to a free list and the next call takes it.

#![allow(unsafe_code)]

use std::num::NonZeroUsize;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, mprotect, munmap};
use wasmtime::{StackCreator, StackMemory};

/// The guard page below each stack.
const GUARD: usize = 4096;
/// Free stacks kept at most; beyond it a finished stack is unmapped.
const MAX_FREE: usize = 65_536;

/// One mapping: `GUARD` bytes of `PROT_NONE`, then the stack.
struct Mapping {
    /// The mapping's start (the guard page), as an address.
    base: usize,
    /// The whole mapping's length.
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is a mapping this type made and nothing else refers to
        // (a stack is dropped only once wasmtime is done with it).
        if let Some(p) = NonNull::new(self.base as *mut std::ffi::c_void) {
            let _ = unsafe { munmap(p, self.len) };
        }
    }
}

/// Stacks of one size, kept for reuse.
pub(super) struct StackPool {
    free: Mutex<Vec<Mapping>>,
}

impl StackPool {
    /// An empty pool.
    pub(super) fn new() -> Arc<StackPool> {
        Arc::new(StackPool {
            free: Mutex::new(Vec::new()),
        })
    }

    fn map(size: usize) -> anyhow::Result<Mapping> {
        let len = size + GUARD;
        let nz = NonZeroUsize::new(len).expect("a stack has a size");
        // SAFETY: a fresh anonymous private mapping, owned by the returned `Mapping`.
        let p = unsafe {
            mmap_anonymous(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }?;
        let mapping = Mapping {
            base: p.as_ptr() as usize,
            len,
        };
        // SAFETY: the first page of the mapping just made becomes the guard.
        unsafe { mprotect(p, GUARD, ProtFlags::PROT_NONE) }?;
        Ok(mapping)
    }
}

/// A stack lent to wasmtime for one call; back to the pool when dropped.
struct Lent {
    mapping: Option<Mapping>,
    pool: Arc<StackPool>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(m) = self.mapping.take() {
            let mut free = self.pool.free.lock().expect("stack pool lock");
            if free.len() < MAX_FREE {
                free.push(m);
            }
        }
    }
}

// SAFETY: the stack is `size` bytes of read-write memory above a guard page, page aligned
// (mmap), and used by one fiber at a time: it returns to the pool only when dropped.
unsafe impl StackMemory for Lent {
    fn top(&self) -> *mut u8 {
        let m = self.mapping.as_ref().expect("lent");
        (m.base + m.len) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        let m = self.mapping.as_ref().expect("lent");
        m.base + GUARD..m.base + m.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let m = self.mapping.as_ref().expect("lent");
        m.base as *mut u8..(m.base + GUARD) as *mut u8
    }
}

/// The pool as wasmtime's stack creator.
pub(super) struct Creator(pub(super) Arc<StackPool>);

// SAFETY: every stack handed out has a guard page below it and is page aligned; a reused
// stack is zeroed when wasmtime asks for zeroed stacks.
unsafe impl StackCreator for Creator {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let reused = {
            let mut free = self.0.free.lock().expect("stack pool lock");
            let i = free.iter().rposition(|m| m.len == size + GUARD);
            i.map(|i| free.swap_remove(i))
        };
        let mapping = match reused {
            Some(m) => {
                if zeroed {
                    // SAFETY: the stack part of a mapping of ours that no fiber uses.
                    unsafe { std::ptr::write_bytes((m.base + GUARD) as *mut u8, 0, size) };
                }
                m
            }
            None => StackPool::map(size).map_err(|e| wasmtime::Error::msg(e.to_string()))?,
        };
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            pool: self.0.clone(),
        }))
    }
}
