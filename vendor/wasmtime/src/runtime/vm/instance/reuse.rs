//! edge patch: putting a core instance back, in place, into the state its instantiation
//! left it in, so the next request can run on it instead of on a new instance (see
//! `vendor/README.md`).
//!
//! What a request can change in a core instance, and how each is put back:
//!
//! - its `VMContext` (defined globals, the memory and table definitions with their
//!   sizes, `data.drop`'s segment lengths, ...): copied back from a copy taken right
//!   after instantiation, all of it but the function references (`func_refs`). Those are
//!   written on first use, always with the same value for a given function of a given
//!   instance, and read only through a pointer that first use returned: one made during
//!   a request is one a fresh instance would make the same, so it can stay;
//! - each linear memory's contents and size: reset as the pool resets a slot it gets
//!   back (the image's contents and zeros, `initial` bytes accessible);
//! - each table's elements and size: copied back from the copy taken with the
//!   `VMContext`.
//!
//! Instances with state this cannot put back are refused when the copy is taken: those
//! whose instantiation ran code (a `start` function, data segments not mapped from an
//! image: memory may differ from the image then), passive element segments (`elem.drop`
//! changes Rust-side state), GC heaps, and tables or memories the pooling allocator did
//! not make.

use super::Instance;
use crate::prelude::*;
use crate::runtime::vm::InstanceAllocator;
use crate::runtime::vm::table::TableSnapshot;
use core::pin::Pin;

/// A core instance's state right after instantiation, to put back with
/// [`Instance::reuse`].
pub struct ReuseImage {
    vmctx: Vec<u8>,
    /// The `func_refs` array within it: not copied back.
    func_refs: core::ops::Range<usize>,
    memories: Vec<usize>,
    tables: Vec<TableSnapshot>,
}

impl Instance {
    fn vmctx_bytes(&self) -> (*mut u8, usize) {
        let len = usize::try_from(self.offsets().size_of_vmctx()).unwrap();
        (self.vmctx().as_ptr().cast::<u8>(), len)
    }

    fn func_refs_range(&self) -> core::ops::Range<usize> {
        let offsets = self.offsets();
        let start = offsets.vmctx_func_refs_begin();
        let len = offsets.num_escaped_funcs
            * u32::from(wasmtime_environ::PtrSize::vm_func_ref(&offsets.ptr).size());
        usize::try_from(start).unwrap()..usize::try_from(start + len).unwrap()
    }

    /// The `VMContext` without its `func_refs`, as two slices.
    ///
    /// # Safety
    ///
    /// No wasm may run in this instance while the slices live.
    unsafe fn vmctx_state(&self) -> [&[u8]; 2] {
        let (ptr, len) = self.vmctx_bytes();
        let func_refs = self.func_refs_range();
        // SAFETY: the `VMContext` is `len` bytes of this instance's own allocation.
        let all = unsafe { core::slice::from_raw_parts(ptr, len) };
        [&all[..func_refs.start], &all[func_refs.end..]]
    }

    /// Takes the copy [`Instance::reuse`] puts back. Call it right after instantiation,
    /// before any of the instance's code has run.
    pub(crate) fn reuse_image(&self) -> Result<ReuseImage> {
        // (Whether instantiation wrote memory is checked across the whole component by
        // `memories_unwritten`.)
        let module = self.env_module();
        if module.needs_gc_heap {
            bail!("an instance with a GC heap cannot be reset in place");
        }
        if !module.passive_elements.is_empty() {
            bail!("an instance with passive element segments cannot be reset in place");
        }
        let mut memories = Vec::with_capacity(self.memories.len());
        for (_, (_, memory)) in self.memories.iter() {
            match memory {
                crate::runtime::vm::Memory::Local(local) if local.is_pooled_slot() => {
                    memories.push(local.byte_size());
                }
                _ => bail!("only pooled, unshared memories can be reset in place"),
            }
        }
        let mut tables = Vec::with_capacity(self.tables.len());
        for (_, (_, table)) in self.tables.iter() {
            match table.snapshot_elements() {
                Some(snapshot) => tables.push(snapshot),
                None => bail!("only pooled funcref tables can be reset in place"),
            }
        }
        let (ptr, len) = self.vmctx_bytes();
        // SAFETY: the `VMContext` is `len` bytes of this instance's own allocation, and no
        // wasm runs while the store is borrowed here.
        let vmctx = unsafe { core::slice::from_raw_parts(ptr, len) }.to_vec();
        Ok(ReuseImage {
            vmctx,
            func_refs: self.func_refs_range(),
            memories,
            tables,
        })
    }

    /// Whether this instance's memories are sure to hold what a reset puts back: their
    /// image and zeros. So they do if instantiation ran no code here; if it did (a
    /// `start` function, data segments not mapped as an image, table initializers),
    /// `allocator` must tell that no page was written. Code run by another instance's
    /// startup can write this one's memory too, so a component checks every instance's
    /// memories if any of its instances ran code.
    pub(crate) fn needs_startup_code(&self) -> bool {
        self.needs_startup()
    }

    /// Fails unless every byte of this instance's memories is what a reset puts back:
    /// its module's data where the data is, zeros elsewhere. Only private pages can differ
    /// (the image's are shared, untouched ones are the zero page), so only those are
    /// compared; `allocator` finds them.
    pub(crate) fn memories_unwritten(&self, allocator: &dyn InstanceAllocator) -> Result<()> {
        use wasmtime_environ::MemoryInitialization;
        let module = self.env_module();
        for (index, (_, memory)) in self.memories.iter() {
            let data = match &module.memory_initialization {
                MemoryInitialization::Static { map } => map[module.memory_index(index)]
                    .as_ref()
                    .map(|(offset, data)| (usize::try_from(*offset).unwrap(), self.runtime_data(*data))),
                MemoryInitialization::Segmented => bail!(
                    "instantiation ran code and wrote memory by data segments: a reset cannot \
                     put that back"
                ),
            };
            let base = memory.vmmemory().base.as_ptr().cast_const();
            let mut differs = false;
            let told = allocator.private_pages(memory, &mut |start, len| {
                let from = start.addr() - base.addr();
                // SAFETY: the range is inside this memory's accessible bytes, and no wasm
                // runs while the store is borrowed here.
                let now = unsafe { core::slice::from_raw_parts(start, len) };
                // The part of `now` the data covers, and the zeros around it.
                let (lo, hi, expected) = match data {
                    Some((offset, data)) => {
                        let lo = offset.clamp(from, from + len) - from;
                        let hi = (offset + data.len()).clamp(from, from + len) - from;
                        let at = (from + lo).saturating_sub(offset);
                        match hi > lo {
                            true => (lo, hi, &data[at..at + (hi - lo)]),
                            // No overlap: all of `now` should be zeros.
                            false => (0, 0, &[][..]),
                        }
                    }
                    None => (0, 0, &[][..]),
                };
                let zero = |bytes: &[u8]| bytes.iter().all(|b| *b == 0);
                differs |= now[lo..hi] != *expected || !zero(&now[..lo]) || !zero(&now[hi..]);
            });
            match told {
                Some(()) if !differs => {}
                Some(()) => bail!(
                    "instantiation ran code that wrote memory: a reset cannot put that back"
                ),
                None => bail!(
                    "instantiation ran code, and whether it wrote memory cannot be told here"
                ),
            }
        }
        Ok(())
    }

    /// Puts this instance back into the state `image` (its own, from
    /// [`Instance::reuse_image`]) recorded. On error the instance is in an unknown state
    /// and must be dropped with its store.
    pub(crate) fn reuse(
        self: Pin<&mut Self>,
        image: &ReuseImage,
        allocator: &dyn InstanceAllocator,
        tunables: &wasmtime_environ::Tunables,
    ) -> Result<()> {
        // SAFETY: nothing here moves the instance; it only writes its memories, tables and
        // `VMContext` in place.
        let me = unsafe { self.get_unchecked_mut() };
        assert_eq!(me.memories.len(), image.memories.len());
        assert_eq!(me.tables.len(), image.tables.len());
        for ((_, (_, memory)), initial) in me.memories.iter_mut().zip(&image.memories) {
            allocator.reset_memory_in_place(memory, *initial, tunables)?;
        }
        for ((_, (_, table)), snapshot) in me.tables.iter_mut().zip(&image.tables) {
            table.restore_elements(snapshot);
        }
        let (ptr, len) = me.vmctx_bytes();
        assert_eq!(len, image.vmctx.len());
        assert_eq!(me.func_refs_range(), image.func_refs);
        let skip = &image.func_refs;
        // SAFETY: as in `reuse_image`; the copy has this `VMContext`'s length and layout,
        // and every pointer in it is still valid: the instance, its memories, tables and
        // the store it points into are the ones it was taken from.
        unsafe {
            core::ptr::copy_nonoverlapping(image.vmctx.as_ptr(), ptr, skip.start);
            core::ptr::copy_nonoverlapping(
                image.vmctx.as_ptr().add(skip.end),
                ptr.add(skip.end),
                len - skip.end,
            );
        }
        Ok(())
    }

    /// A digest of this instance's state for tests: the `VMContext` (but its
    /// `func_refs`), the bytes of every memory (up to its size) and every table's size
    /// and elements.
    pub(crate) fn reuse_fingerprint(&self, out: &mut Vec<u8>) {
        // SAFETY: the store is borrowed by the caller: no wasm runs.
        for part in unsafe { self.vmctx_state() } {
            out.extend_from_slice(part);
        }
        for (_, (_, memory)) in self.memories.iter() {
            let def = memory.vmmemory();
            let size = def.current_length();
            out.extend_from_slice(&size.to_le_bytes());
            // SAFETY: the memory is `size` bytes long and nothing runs in it now.
            out.extend_from_slice(unsafe { core::slice::from_raw_parts(def.base.as_ptr(), size) });
        }
        for (_, (_, table)) in self.tables.iter() {
            out.extend_from_slice(&table.size().to_le_bytes());
            if let Some(snapshot) = table.snapshot_elements() {
                snapshot.extend_bytes(out);
            }
        }
    }
}
