//! `mailgate`: the server binary. See `mailgate --help`.

use clap::Parser as _;

/// mimalloc: allocation is a large share of a GraphQL request's cost (a fifth of the CPU
/// under load with the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = mailgate::cli::Cli::parse();
    match mailgate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
