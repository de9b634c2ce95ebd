//! The `escalation-bot` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Everything the bot writes holds personal data of adults at risk: the SQLite database and its WAL,
    // the local mailbox and outbox folders, the signing secret. Created for the owner only.
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file-creation mask; it cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ESCALATION_BOT_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = escalation_bot::cli::Cli::parse();
    match escalation_bot::cli::dispatch(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that stopped reading (`| head`) is not an error worth reporting.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("escalation-bot: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
