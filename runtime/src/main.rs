//! The `edge` binary: parse the command line, run it, map the result to an exit code.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: see [`edge::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// [`edge::alloc::configure`], run by the dynamic loader before mimalloc initializes itself
/// (its constructor has priority 101) and before Rust's runtime allocates anything.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn run() {
        edge::alloc::configure();
    }
    run
};

fn main() -> ExitCode {
    // Elsewhere there is no loader hook: as early as it gets.
    #[cfg(not(target_os = "linux"))]
    edge::alloc::configure();
    let cli = edge::commands::Cli::parse();
    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
