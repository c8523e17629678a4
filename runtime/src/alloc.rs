//! The memory allocator: mimalloc, set up to give freed memory back within milliseconds.
//!
//! The `edge` binary allocates through mimalloc (`#[global_allocator]` in `main.rs`):
//! glibc's malloc was ~11 % of a served hello request's CPU (`_int_malloc`, `_int_free`,
//! `malloc_consolidate`), and mimalloc serves the same requests faster (the Rust hello
//! ~9 %, the JS hello 0–4 %: `benches/ab-serve.sh`, `benches/js-vs-rust.sh`; figures in
//! `docs/benchmarks.md`, "The allocator"). Its defaults hold arenas committed and keep
//! freed memory for a second, which nearly doubled the server's resident memory with
//! 10 000 idle connections (`benches/keepalive.sh`: 185 MiB against glibc's 94);
//! [`configure`] commits arenas on demand and purges freed memory after 10 ms, which
//! brings it below glibc's (75 MiB). Purging at once (0 ms) was as small but cost the JS
//! hello 10 %: its requests free and reallocate the same large blocks.

use libmimalloc_sys as mi;

/// `mi_option_arena_eager_commit` in mimalloc 3.3's `mi_option_e` (the crate's bindings
/// do not name it; `libmimalloc-sys` is pinned in the workspace for that reason).
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;
/// `mi_option_purge_delay`, likewise.
const PURGE_DELAY: mi::mi_option_t = 15;

/// Sets mimalloc's options: arenas committed on demand, freed memory purged after 10 ms.
/// It must run before anything is allocated: an arena reserved before the options are set
/// stays eagerly committed and is never purged (measured: 85 instead of 48 MiB resident at
/// rest, `benches/keepalive.sh`). `main.rs` has the loader run it, before mimalloc's own
/// constructor. If either option does not have the default expected of the bundled
/// mimalloc, it changes nothing: the environment (`MIMALLOC_ARENA_EAGER_COMMIT`,
/// `MIMALLOC_PURGE_DELAY`) set it, or the bundled version is not the one expected.
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: mimalloc's option calls take plain integers and are thread-safe; an unknown
    // index is ignored by mimalloc, and the defaults are checked first anyway.
    unsafe {
        let defaults = (
            mi::mi_option_get(ARENA_EAGER_COMMIT),
            mi::mi_option_get(PURGE_DELAY),
        );
        if defaults != (2, 1000) {
            // Set from the environment, or another mimalloc: leave it.
            return;
        }
        mi::mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi::mi_option_set(PURGE_DELAY, 10);
    }
}

/// Returns freed memory to the system: mimalloc's (the binary's allocator) and glibc's
/// (what C code and a library user of this crate allocate).
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` and `malloc_trim` only return memory their allocator holds as
    // free, under their own locks.
    unsafe {
        mi::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}
