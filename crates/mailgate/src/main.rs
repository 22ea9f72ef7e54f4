//! `mailgate`: the server binary. See `mailgate --help`.

use clap::Parser as _;

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
