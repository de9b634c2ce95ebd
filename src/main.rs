//! The `escalation-bot` binary: parse the command line, set up logging, hand over to the library.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Everything the bot writes holds personal data of adults at risk: the SQLite database and its WAL,
    // the local mailbox and outbox folders, the signing secret. Created for the owner only.
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file-creation mask; it cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
    // A long-running daemon with a small working set: glibc gives each thread that allocates an arena of
    // its own (up to 8 per core) and keeps what they freed, which took the daemon with 100,000 open cases
    // from 24 MB to 37 MB for no gain. Two arenas are plenty for its few busy threads. Set before any
    // thread starts (the runtime is built below, not by an attribute).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => {
            let code = runtime.block_on(run());
            // Done: whatever still runs on the runtime's blocking threads is not waited for beyond a moment
            // (dropping the runtime would wait for it without end). Reading runs on threads of its own,
            // which never hold the exit back.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            code
        }
        Err(e) => {
            eprintln!("escalation-bot: the async runtime could not start: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = escalation_bot::cli::Cli::parse();
    // A command's reader that stops reading (`| head`) ends it quietly, as it does any Unix tool: println!
    // would panic on the broken pipe. Not for the daemon, whose sockets and log must never end it.
    #[cfg(unix)]
    if !matches!(cli.command, escalation_bot::cli::Command::Run(_)) {
        // SAFETY: restores the default disposition of one signal; no handler, no memory touched.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = EnvFilter::try_from_env("ESCALATION_BOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One JSON object a line, for journald, Loki, Elasticsearch and the like.
        escalation_bot::cli::LogFormat::Json => logs.json().init(),
        // Colour only for a person at a terminal: a log file or journal gets plain text.
        escalation_bot::cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
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
