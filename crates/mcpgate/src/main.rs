//! The `mcpgate` binary: parses the command line, initialises logging and
//! hands over to [`cli`]. Exit status: 0 success, 1 runtime failure, 2 usage
//! error (clap), 64 invalid configuration.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

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
