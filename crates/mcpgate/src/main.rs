//! The `mcpgate` binary: parses the command line, initialises logging and
//! hands over to [`cli`]. Exit status: 0 success, 1 runtime failure, 2 usage
//! error (clap), 64 invalid configuration.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

/// jemalloc rather than glibc's malloc. The request path allocates a few
/// dozen small blocks per request, many freed on another thread or after
/// a large block; with glibc that was ~6 % of the gateway's CPU per request
/// (`_int_malloc`, `_int_free`, `malloc_consolidate`). Alternating the two
/// on the proxy benchmark (audit off, 32 connections): 30.2 -> 28.7 µs of
/// CPU per request, and the RSS with ~10,000 idle SSE streams unchanged
/// (149.5 -> 151.8 MB). mimalloc was also tried: faster still with the
/// audit on, but 239 MB with those streams (see crates/bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(args))
}
