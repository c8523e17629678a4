//! edge patch: the component half of resetting an instance in place (the core half, and
//! what is reset how, is in `vm/instance/reuse.rs`; see `vendor/README.md`).
//!
//! A component instance adds its own `VMComponentContext` (the may-leave and
//! needs-post-return flags of each sub-instance among the rest: copied back whole) and
//! its handle tables (emptied; see `StoreOpaque::reuse_component_state`).

use super::ComponentInstance;
use crate::prelude::*;
use crate::runtime::vm::instance::ReuseImage;
use crate::store::InstanceId;
use alloc::boxed::Box;
use core::pin::Pin;

/// A component instance's state right after instantiation: its `VMComponentContext` and
/// each of its core instances' [`ReuseImage`].
pub struct ComponentReuseImage {
    vmctx: Vec<u8>,
    core: Vec<(InstanceId, ReuseImage)>,
}

impl ComponentReuseImage {
    /// The core instances and their images.
    pub(crate) fn core(&self) -> &[(InstanceId, ReuseImage)] {
        &self.core
    }
}

impl ComponentInstance {
    fn vmctx_bytes(&self) -> (*mut u8, usize) {
        let len = usize::try_from(self.offsets.size_of_vmctx()).unwrap();
        (self.vmctx().as_ptr().cast::<u8>(), len)
    }

    /// The store's ids of this component's core instances.
    pub(crate) fn core_instance_ids(&self) -> Vec<InstanceId> {
        self.instances.values().copied().collect()
    }

    /// Records this instance's state (with `core`, its core instances') to put back by
    /// [`ComponentInstance::finish_reuse`].
    pub(crate) fn set_reuse_image(self: Pin<&mut Self>, core: Vec<(InstanceId, ReuseImage)>) {
        let (ptr, len) = self.vmctx_bytes();
        // SAFETY: the `VMComponentContext` is `len` bytes of this instance's allocation.
        let vmctx = unsafe { core::slice::from_raw_parts(ptr, len) }.to_vec();
        // SAFETY: `reuse` is not pinned state.
        unsafe { self.get_unchecked_mut() }.reuse = Some(Box::new(ComponentReuseImage { vmctx, core }));
    }

    /// Takes the image out for a reset; `finish_reuse` puts it back. An instance whose
    /// reset failed half-way has none, so it can never be reset again.
    pub(crate) fn take_reuse_image(self: Pin<&mut Self>) -> Option<Box<ComponentReuseImage>> {
        // SAFETY: `reuse` is not pinned state.
        unsafe { self.get_unchecked_mut() }.reuse.take()
    }

    /// Copies the `VMComponentContext` back and keeps `image` for the next reset.
    pub(crate) fn finish_reuse(self: Pin<&mut Self>, image: Box<ComponentReuseImage>) {
        let (ptr, len) = self.vmctx_bytes();
        assert_eq!(len, image.vmctx.len());
        // SAFETY: the copy is of this same `VMComponentContext`, whose pointers (to the
        // store, this instance's core instances and the host's functions) are unchanged.
        unsafe { core::ptr::copy_nonoverlapping(image.vmctx.as_ptr(), ptr, len) };
        // SAFETY: `reuse` is not pinned state.
        unsafe { self.get_unchecked_mut() }.reuse = Some(image);
    }

    /// The `VMComponentContext` and each handle table's length, for tests.
    pub(crate) fn reuse_fingerprint(&self, out: &mut Vec<u8>) {
        let (ptr, len) = self.vmctx_bytes();
        // SAFETY: as in `set_reuse_image`.
        out.extend_from_slice(unsafe { core::slice::from_raw_parts(ptr, len) });
        for (_, state) in self.instance_states.iter() {
            out.push(u8::from(state.handle_table.is_empty()));
        }
    }
}
