//! Reports what it finds in every part of its instance a request can change, then leaves
//! something behind in each: a static counter, a heap allocation, the memory's size, a
//! string in its data segment and a resource handle it never drops. With `?trap` it then
//! panics. On a fresh instance, or one reset exactly, every answer is the same.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use wstd::http::{Body, Error, Request, Response};

static COUNT: AtomicU64 = AtomicU64::new(0);
static LEAK: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static mut NOTE: [u8; 8] = *b"pristine";

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let count = COUNT.fetch_add(1, Ordering::SeqCst);
    let leak = LEAK.load(Ordering::SeqCst);
    let leaked = if leak.is_null() { 0 } else { unsafe { *leak } };
    let pages = core::arch::wasm32::memory_size(0);
    // SAFETY: one request at a time runs in an instance.
    let note = unsafe { String::from_utf8_lossy(&*std::ptr::addr_of!(NOTE)).into_owned() };
    // A new resource's handle tells how many the instance's handle table holds.
    let fields = wasip2::http::types::Fields::new();
    let handle = fields.handle();

    // Now leave something everywhere.
    let block = Box::leak(vec![0xAB_u8; 256 * 1024].into_boxed_slice());
    LEAK.store(block.as_mut_ptr(), Ordering::SeqCst);
    core::arch::wasm32::memory_grow(0, 16);
    // SAFETY: as above.
    unsafe { *std::ptr::addr_of_mut!(NOTE) = *b"changed!" };
    fields.take_handle();

    if request.uri().query() == Some("trap") {
        panic!("trapping after leaving residue, as asked");
    }
    Ok(Response::new(
        format!("count={count} leaked={leaked} pages={pages} note={note} handle={handle}").into(),
    ))
}
