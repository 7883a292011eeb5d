//! The `mandate` command: run the service, apply migrations, manage root keys, and work with
//! mandates offline. The commands live in `cli/`.

mod cli;

/// mimalloc: the service allocates many small, short-lived buffers per request (JSON, SQL rows,
/// Datalog); glibc's allocator spent about a sixth of a loaded server's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, naming the problem; causes are already part of each message.
            eprintln!("mandate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
