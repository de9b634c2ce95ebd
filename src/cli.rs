//! The command line: parsing (clap) and the commands' output, human and `--json`.
//!
//! The contract is DESIGN.md's "command line" section: tests and operators depend on the names, flags and
//! JSON shapes here. `--json` always prints exactly one JSON document on stdout. Commands that only do
//! arithmetic (`calendar …`) work without a configuration; the others load and validate it first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::app::{self, with_store};
use crate::config::{self, Config};
use crate::core::calendar::{self, Calendar, Region};
use crate::core::case::CaseStatus;
use crate::core::nhs;
use crate::core::policy::{CountFrom, DayUnit, Policy};
use crate::core::timeline;
use crate::store::{CaseFilter, Store};

#[derive(Debug, Parser)]
#[command(
    name = "escalation-bot",
    version,
    about = "Runs Safeguarding Adults Boards' escalation procedures by email."
)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        default_value = "config/default.toml",
        env = "ESCALATION_BOT_CONFIG"
    )]
    pub config: PathBuf,
    /// How log lines are written (on standard error): `text` (coloured only on a terminal) or `json`
    /// (one object a line, for a log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ESCALATION_BOT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub board: String,
    /// The first day of the period (YYYY-MM-DD, the board's local date).
    #[arg(long)]
    pub from: String,
    /// The last day of the period, included.
    #[arg(long)]
    pub to: String,
    /// One JSON document.
    #[arg(long, conflicts_with_all = ["csv", "html"])]
    pub json: bool,
    /// CSV: one `section,item,value` row per figure (for a spreadsheet).
    #[arg(long, conflicts_with = "html")]
    pub csv: bool,
    /// An HTML page to paste into a document.
    #[arg(long)]
    pub html: bool,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    #[arg(long)]
    pub board: String,
    /// As it would be at this instant (RFC 3339) rather than now.
    #[arg(long)]
    pub now: Option<String>,
    /// Print one JSON document instead of the digest's text.
    #[arg(long)]
    pub json: bool,
    /// Queue it to the board's digest recipients (the running daemon sends it).
    #[arg(long)]
    pub send: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario: {"board": ID, "until": RFC3339, "steps": [{"at", "email"} or {"at", "from", "reply",
    /// "attach"?}]}.
    pub scenario: PathBuf,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write each email's HTML part and attached files (the board's forms) into this folder, to open
    /// in a browser and in Word, and a copy of the simulation's store (store.sqlite3).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until interrupted.
    Run(RunArgs),
    /// The deadlines and duties a case opened at a given moment would get, each stage running to its limit.
    Timeline(TimelineArgs),
    /// Bank holidays and working-day arithmetic.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// The boards' policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Cases in the store.
    #[command(subcommand)]
    Cases(CasesCommand),
    /// Load and validate the whole configuration, listing every problem; `--connect` also logs in to each
    /// board's mailbox, the SMTP server and the store.
    CheckConfig(CheckConfigArgs),
    /// Ask the running daemon's `/healthz` (`[http] listen`): exit 0 when healthy (for Docker's HEALTHCHECK).
    Health,
    /// Mail the bot could not use (refused, quarantined, ignored): list, show, process again.
    #[command(subcommand)]
    Inbound(InboundCommand),
    /// Remove personal data past each board's retention period (the daemon does this once a day).
    Retention(RetentionArgs),
    /// Process messages from files as if they had arrived.
    Ingest(IngestArgs),
    /// Outgoing email: what is queued, sent or failed, and sending failed email again.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// A case's whole life in virtual time: every email the bot would send, on a throwaway store.
    Simulate(SimulateArgs),
    /// The board's digest as it would be sent now; `--send` queues it to the board's digest recipients.
    Digest(DigestArgs),
    /// The board's monitoring report for a period, for its annual report.
    Report(ReportArgs),
    /// Deliver an email file into a board's local mailbox folder (the embedded default), as a mail
    /// delivery agent does: written to tmp/ and renamed into new/, so the daemon never reads half a file.
    Deliver(DeliverArgs),
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also log in to each board's mailbox (listing its folders, creating the processed, quarantine and
    /// notifications folders if missing), to the SMTP server (EHLO and AUTH, no mail sent) and to the store.
    #[arg(long)]
    pub connect: bool,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// As at this instant (RFC 3339) rather than now.
    #[arg(long)]
    pub now: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InboundCommand {
    /// Kept messages, newest first: by default those that could not be used (refused, quarantined, ignored).
    List {
        #[arg(long)]
        board: Option<String>,
        /// refused, quarantined, ignored, held, case_opened, command_applied; or all.
        #[arg(long)]
        outcome: Option<String>,
        /// Received on or after this day (YYYY-MM-DD) or instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One message: who sent it, when, why it was not used, and the reply they got.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
        /// Print the raw message as it arrived.
        #[arg(long)]
        raw: bool,
    },
    /// Process a message again (after a configuration fix): it is acted on as if it had just arrived.
    Retry {
        id: i64,
        /// As at this instant (RFC 3339) rather than now.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Outgoing emails, oldest first.
    List {
        /// Only those given up on (every recipient refused it, or the server failed for the whole retry
        /// period).
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send failed emails again: one by its id, or every failed one.
    Retry {
        /// The email's id, as `outbox list` shows it.
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// The board whose mailbox folder receives the files.
    #[arg(long)]
    pub board: String,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Read and decide, but write nothing (no case, no email, no record of the message).
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    /// The board the messages were sent to (otherwise found from their recipients).
    #[arg(long)]
    pub board: Option<String>,
    /// Process as if received at this instant (RFC 3339) rather than now.
    #[arg(long)]
    pub now: Option<String>,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start the daemon's clock at this instant (RFC 3339) instead of the real time; it then runs on.
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    #[arg(long)]
    pub board: String,
    /// When the case is opened, RFC 3339 (e.g. 2026-12-23T10:00:00Z).
    #[arg(long)]
    pub opened: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// The bank holidays of a year that fall Monday to Friday, substitute days included.
    Holidays {
        #[arg(long)]
        year: i32,
        #[arg(long, default_value = "england-and-wales")]
        region: String,
        #[arg(long)]
        json: bool,
    },
    /// The N-th working day after a date.
    AddWorkingDays {
        #[arg(long)]
        from: String,
        #[arg(long)]
        days: u32,
        #[arg(long, default_value = "england-and-wales")]
        region: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The configured boards and their policies.
    List(JsonArg),
    /// One policy in full.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CasesCommand {
    /// Cases, oldest first.
    List {
        #[arg(long)]
        board: Option<String>,
        /// open, resolved or withdrawn.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One case with its deadlines, timers and audit trail.
    Show {
        reference: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_region(s: &str) -> anyhow::Result<Region> {
    Region::from_str(s).map_err(anyhow::Error::msg)
}

fn parse_date(s: &str, what: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("{what} {s:?} is not a date: use YYYY-MM-DD"))
}

/// Parse an instant given on the command line (RFC 3339).
pub fn parse_instant(s: &str, what: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{what} {s:?} is not an RFC 3339 time: use e.g. 2026-12-23T10:00:00Z"))
}

/// The monitoring report as text.
fn report_text(r: &crate::core::report::Report) -> String {
    let mut s = format!(
        "{}: escalations from {} to {}\n\nCases opened: {}\nResolved: {}\nWithdrawn: {}\nOpened in the period and still open at its end: {}\nMissed a deadline: {}\n",
        r.board_name, r.from, r.to, r.opened, r.resolved, r.withdrawn, r.still_open, r.overdue
    );
    s.push_str("\nResolved at stage\n");
    for (stage, n) in &r.resolved_by_stage {
        s.push_str(&format!("  stage {stage}: {n}\n"));
    }
    s.push_str(&format!(
        "\nWorking days from opening to resolution: median {}, longest {}\n",
        r.median_working_days
            .map(|m| format!("{m}"))
            .unwrap_or_else(|| "-".into()),
        r.longest_working_days
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    s.push_str("\nThemes\n");
    for (t, n) in &r.themes {
        s.push_str(&format!("  {t}: {n}\n"));
    }
    s.push_str("\nAgencies\n");
    for (a, n) in &r.agencies {
        s.push_str(&format!("  {a}: {n}\n"));
    }
    s.push_str("\nAgencies that disagree most\n");
    for (a, b, n) in &r.pairs {
        s.push_str(&format!("  {a} / {b}: {n}\n"));
    }
    s
}

/// The monitoring report as an HTML page (values escaped).
fn report_html(r: &crate::core::report::Report) -> String {
    let e = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let row = |k: &str, v: String| format!("<tr><td>{}</td><td align=\"right\">{}</td></tr>\n", e(k), e(&v));
    let mut s = format!(
        "<html><body style=\"font-family: Arial, sans-serif;\">\n<h2>{}: escalations from {} to {}</h2>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse: collapse;\">\n",
        e(&r.board_name), r.from, r.to
    );
    s.push_str(&row("Cases opened", r.opened.to_string()));
    s.push_str(&row("Resolved", r.resolved.to_string()));
    for (stage, n) in &r.resolved_by_stage {
        s.push_str(&row(&format!("… at stage {stage}"), n.to_string()));
    }
    s.push_str(&row("Withdrawn", r.withdrawn.to_string()));
    s.push_str(&row("Opened and still open at the end", r.still_open.to_string()));
    s.push_str(&row("Missed a deadline", r.overdue.to_string()));
    s.push_str(&row(
        "Working days to resolution, median",
        r.median_working_days
            .map(|m| format!("{m}"))
            .unwrap_or_else(|| "-".into()),
    ));
    s.push_str(&row(
        "Working days to resolution, longest",
        r.longest_working_days
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into()),
    ));
    s.push_str(
        "</table>\n<h3>Themes</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse: collapse;\">\n",
    );
    for (t, n) in &r.themes {
        s.push_str(&row(t, n.to_string()));
    }
    s.push_str(
        "</table>\n<h3>Agencies</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse: collapse;\">\n",
    );
    for (a, n) in &r.agencies {
        s.push_str(&row(a, n.to_string()));
    }
    s.push_str("</table>\n<h3>Agencies that disagree most</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse: collapse;\">\n");
    for (a, b, n) in &r.pairs {
        s.push_str(&row(&format!("{a} / {b}"), n.to_string()));
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Text in aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < last {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn long_date(d: NaiveDate) -> String {
    d.format("%a %-d %b %Y").to_string()
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    config::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run the parsed command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Calendar(c) => calendar_cmd(c),
        Command::Timeline(a) => {
            let config = load_config(&cli)?;
            timeline_cmd(&config, a)
        }
        Command::Policy(p) => {
            let config = load_config(&cli)?;
            policy_cmd(&config, p)
        }
        Command::CheckConfig(a) => {
            // With --connect --json, one JSON document: the connection checks' (or the configuration's
            // problems, if it does not load).
            if !(a.connect && a.json && config::load(&cli.config).is_ok()) {
                check_config(&cli, a.json)?;
            }
            if a.connect {
                let config = load_config(&cli)?;
                connect_checks(&config, a.json).await
            } else {
                Ok(())
            }
        }
        Command::Health => {
            let config = load_config(&cli)?;
            let Some(h) = &config.settings.http else {
                anyhow::bail!(
                    "no [http] listen in {}: the daemon has no health endpoint",
                    cli.config.display()
                );
            };
            let (status, body) = crate::http::probe(&h.listen).await?;
            print!("{body}");
            if status == 200 {
                Ok(())
            } else {
                anyhow::bail!("unhealthy (HTTP {status})")
            }
        }
        Command::Inbound(c) => {
            let config = load_config(&cli)?;
            with_store!(&config.settings.database, store => inbound_cmd(&config, &store, c).await)
        }
        Command::Retention(a) => {
            let config = load_config(&cli)?;
            let now = match &a.now {
                Some(s) => parse_instant(s, "--now")?,
                None => app::Clock::system().now(),
            };
            with_store!(&config.settings.database, store => {
                app::prepare_store(&config, &store, now).await?;
                retention_cmd(&config, &store, a, now).await
            })
        }
        Command::Cases(c) => {
            let config = load_config(&cli)?;
            with_store!(&config.settings.database, store => cases_cmd(&store, c).await)
        }
        Command::Ingest(a) => {
            let config = load_config(&cli)?;
            if let Some(b) = &a.board {
                config.board_or_err(b)?;
            }
            let now = match &a.now {
                Some(s) => parse_instant(s, "--now")?,
                None => app::Clock::system().now(),
            };
            with_store!(&config.settings.database, store => {
                let key = app::load_secret(&config.settings, &store).await?;
                let pipeline = crate::mail::pipeline::Pipeline::new(&config, key).map_err(anyhow::Error::msg)?;
                ingest_cmd(&store, &pipeline, a, now).await
            })
        }
        Command::Outbox(c) => {
            let config = load_config(&cli)?;
            with_store!(&config.settings.database, store => outbox_cmd(&store, c).await)
        }
        Command::Deliver(a) => {
            let config = load_config(&cli)?;
            config.board_or_err(&a.board)?;
            let dir = config.settings.mailbox_dir.join(&a.board);
            for file in &a.files {
                let raw = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
                let name = crate::mail::source::deliver_to_maildir(&dir, &raw)
                    .with_context(|| format!("cannot deliver into {}", dir.display()))?;
                println!("{} -> {}", file.display(), name.display());
            }
            Ok(())
        }
        Command::Report(a) => {
            let config = load_config(&cli)?;
            let board = config.board_or_err(&a.board)?;
            let day = |s: &str, what: &str| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .with_context(|| format!("{what} {s:?} is not a date: use YYYY-MM-DD, e.g. 2027-04-01"))
            };
            let (from, to) = (day(&a.from, "--from")?, day(&a.to, "--to")?);
            if to < from {
                bail!("--to {to} is before --from {from}");
            }
            with_store!(&config.settings.database, store => {
                let r = crate::scheduler::board_report(&store, board, from, to).await?;
                if a.json {
                    print_json(&serde_json::to_value(&r)?)
                } else if a.csv {
                    print!("{}", crate::core::report::to_csv(&r));
                    Ok(())
                } else if a.html {
                    print!("{}", report_html(&r));
                    Ok(())
                } else {
                    print!("{}", report_text(&r));
                    Ok(())
                }
            })
        }
        Command::Digest(a) => {
            let config = load_config(&cli)?;
            let board = config.board_or_err(&a.board)?;
            let now = match &a.now {
                Some(s) => parse_instant(s, "--now")?,
                None => app::Clock::system().now(),
            };
            with_store!(&config.settings.database, store => {
                app::prepare_store(&config, &store, now).await?;
                let digest = crate::scheduler::board_digest(&store, board, now).await?;
                let key = app::load_secret(&config.settings, &store).await?;
                let pipeline = crate::mail::pipeline::Pipeline::new(&config, key).map_err(anyhow::Error::msg)?;
                let emails = crate::scheduler::digest_emails(&pipeline, board, &digest, &format!("on-demand:{}", now.to_rfc3339()))
                    .map_err(anyhow::Error::msg)?;
                if a.send {
                    store.record_digest(board.id(), now, true, &emails, now).await?;
                }
                if a.json {
                    let mut v = serde_json::to_value(&digest)?;
                    if let Some(o) = v.as_object_mut() {
                        o.insert("queued".into(), json!(if a.send { emails.len() } else { 0 }));
                    }
                    print_json(&v)
                } else {
                    match emails.first() {
                        Some(e) => print!("Subject: {}\n\n{}", e.subject, e.text),
                        None => println!("The board has no digest recipient: set [digest] to, or a business-manager role."),
                    }
                    if a.send {
                        println!("\nQueued to {} recipient(s); the running daemon sends it.", emails.len());
                    }
                    Ok(())
                }
            })
        }
        Command::Simulate(a) => {
            let config = load_config(&cli)?;
            let scenario = crate::simulate::load(&a.scenario)?;
            let keep = a.save.as_ref().map(|d| d.join("store.sqlite3"));
            if let Some(dir) = &a.save {
                std::fs::create_dir_all(dir)?;
            }
            let sim = crate::simulate::run_keeping(config.clone(), &scenario, &a.scenario, keep.as_deref()).await?;
            if let Some(dir) = &a.save {
                let written = crate::simulate::save(&sim, dir)?;
                eprintln!(
                    "{written} file(s) written to {}, and the store as store.sqlite3 (for report and digest: ESCALATION_BOT_DATABASE_URL=sqlite:{})",
                    dir.display(),
                    dir.join("store.sqlite3").display()
                );
            }
            if a.json {
                print_json(&crate::simulate::to_json(&sim))
            } else {
                print!("{}", crate::simulate::to_table(&sim, &config));
                Ok(())
            }
        }
        Command::Run(a) => {
            let config = load_config(&cli)?;
            let start = a.now.as_deref().map(|s| parse_instant(s, "--now")).transpose()?;
            app::run(config, start, app::shutdown_signal()).await
        }
    }
}

fn calendar_cmd(c: &CalendarCommand) -> anyhow::Result<()> {
    match c {
        CalendarCommand::Holidays { year, region, json } => {
            let region = parse_region(region)?;
            if !(calendar::FIRST_YEAR..=calendar::LAST_YEAR).contains(year) {
                bail!(
                    "the calendar knows the years {} to {}: {year} is outside them",
                    calendar::FIRST_YEAR,
                    calendar::LAST_YEAR
                );
            }
            let hols = calendar::bank_holidays(region, *year);
            if *json {
                print_json(&json!(hols.iter().map(|h| h.date.to_string()).collect::<Vec<_>>()))
            } else {
                let rows: Vec<Vec<String>> = hols
                    .iter()
                    .map(|h| vec![h.date.to_string(), h.date.format("%A").to_string(), h.name.clone()])
                    .collect();
                println!("Bank holidays in {year} ({region}):\n");
                print!("{}", table(&["Date", "Day", "Holiday"], &rows));
                Ok(())
            }
        }
        CalendarCommand::AddWorkingDays { from, days, region } => {
            let from = parse_date(from, "--from")?;
            let cal = Calendar::new(parse_region(region)?);
            println!("{}", cal.add_working_days(from, *days));
            Ok(())
        }
    }
}

fn timeline_cmd(config: &Config, a: &TimelineArgs) -> anyhow::Result<()> {
    let board = config.board_or_err(&a.board)?;
    let opened = parse_instant(&a.opened, "--opened")?;
    let t = timeline::timeline(&board.rules, opened);
    if a.json {
        return print_json(&serde_json::to_value(&t)?);
    }
    let policy = board.policy();
    println!(
        "{} ({}): a case opened {} ({} local date)\n",
        policy.board_name,
        board.id(),
        opened.to_rfc3339(),
        long_date(t.opened_on)
    );
    let rows: Vec<Vec<String>> = t
        .deadlines
        .iter()
        .map(|d| vec![d.label.clone(), long_date(d.due_date), d.description.clone()])
        .collect();
    print!("{}", table(&["Deadline", "Due by end of", "Rule"], &rows));
    if !t.duties.is_empty() {
        println!("\nNotification duties:\n");
        let rows: Vec<Vec<String>> = t
            .duties
            .iter()
            .map(|d| {
                vec![
                    d.when.clone(),
                    d.date.map(long_date).unwrap_or_else(|| "-".into()),
                    d.notify.iter().map(|r| r.key()).collect::<Vec<_>>().join(", "),
                ]
            })
            .collect();
        print!("{}", table(&["When", "Date", "Notify"], &rows));
    }
    Ok(())
}

fn deadline_rule(p: &Policy) -> String {
    let mut parts = Vec::new();
    if let Some(from) = p.deadlines.stage_limits_count_from {
        let limits: Vec<String> = p
            .stages
            .iter()
            .filter_map(|s| s.limit_working_days.map(|l| l.to_string()))
            .collect();
        parts.push(format!(
            "stages {} working days from {}",
            limits.join("/"),
            match from {
                CountFrom::Opening => "opening",
                CountFrom::StageEntry => "entering each stage",
            }
        ));
    }
    if let Some(o) = &p.deadlines.overall {
        parts.push(format!(
            "overall {} {} days",
            o.days,
            match o.unit {
                DayUnit::Calendar => "calendar",
                DayUnit::Working => "working",
            }
        ));
    }
    parts.join("; ")
}

fn policy_cmd(config: &Config, p: &PolicyCommand) -> anyhow::Result<()> {
    match p {
        PolicyCommand::List(a) => {
            if a.json {
                let list: Vec<_> = config
                    .boards
                    .iter()
                    .map(|b| {
                        json!({
                            "id": b.id(), "board_name": b.policy().board_name, "short_name": b.policy().short_name,
                            "policy": b.policy().id, "mailbox": b.settings.mailbox, "stages": b.policy().stages.len(),
                            "deadlines": deadline_rule(b.policy()),
                        })
                    })
                    .collect();
                return print_json(&json!(list));
            }
            let rows: Vec<Vec<String>> = config
                .boards
                .iter()
                .map(|b| {
                    vec![
                        b.id().to_string(),
                        b.policy().short_name.clone(),
                        b.policy().stages.len().to_string(),
                        deadline_rule(b.policy()),
                        b.settings.mailbox.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["Board", "Name", "Stages", "Deadlines", "Mailbox"], &rows));
            Ok(())
        }
        PolicyCommand::Show { id, json } => {
            let board = config.board_or_err(id)?;
            let policy = board.policy();
            if *json {
                return print_json(&serde_json::to_value(policy)?);
            }
            println!("{} ({})", policy.board_name, policy.short_name);
            println!("Source: {} [{}]", policy.source.document, policy.source.seed);
            println!("Deadlines: {}\n", deadline_rule(policy));
            if !policy.pre_escalation.is_empty() {
                println!("Before escalating: {}\n", policy.pre_escalation);
            }
            for s in &policy.stages {
                let limit = s
                    .limit_working_days
                    .map(|l| format!(" — within {l} working day(s)"))
                    .unwrap_or_default();
                println!("Stage {}: {}{limit}", s.number, s.name);
                println!("  Who: {}", s.who);
                println!("  {}", s.guidance);
                for (kind, who) in &s.involved {
                    println!("  {kind}: {who}");
                }
                for f in &s.forms {
                    println!("  Form: {f}");
                }
                for a in &s.after_resolution {
                    println!("  After resolution: {a}");
                }
            }
            println!("\nDuties:");
            for d in &policy.duties {
                println!(
                    "  {:?} → {}: {}",
                    d.when,
                    d.notify.iter().map(|r| r.key()).collect::<Vec<_>>().join(", "),
                    d.why
                );
            }
            println!("\nSame organisation: {:?}", policy.scope.same_organisation);
            println!("Immediate risk: {}", policy.immediate_risk.guidance);
            println!(
                "Extensions: {}",
                if policy.extensions.allowed {
                    format!("up to {} working days", policy.extensions.max_total_working_days)
                } else {
                    "not provided for".into()
                }
            );
            println!("\nRecord form: {}", policy.form.name);
            for f in &policy.form.fields {
                println!(
                    "  {:<20} {}{}",
                    f.key,
                    f.label,
                    if f.required { " (required)" } else { "" }
                );
            }
            if !policy.readings.is_empty() {
                println!("\nReadings taken where the policy is silent or ambiguous:");
                for r in &policy.readings {
                    println!("  - {r}");
                }
            }
            Ok(())
        }
    }
}

fn check_config(cli: &Cli, as_json: bool) -> anyhow::Result<()> {
    match config::load(&cli.config) {
        Ok(c) => {
            if as_json {
                print_json(&json!({
                    "ok": true,
                    "config": c.path,
                    "database": c.settings.database.describe(),
                    "boards": c.boards.iter().map(|b| b.id()).collect::<Vec<_>>(),
                    "problems": [],
                    "warnings": c.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                }))?;
            } else {
                println!("{}: OK", c.path.display());
                println!("Database: {}", c.settings.database.describe());
                for b in &c.boards {
                    println!(
                        "Board {:<24} policy {:<24} mailbox {}",
                        b.id(),
                        b.policy().id,
                        b.settings.mailbox
                    );
                }
                if !c.warnings.is_empty() {
                    println!("\n{} warning(s):", c.warnings.len());
                    for w in &c.warnings {
                        println!("  - {w}");
                    }
                }
            }
            Ok(())
        }
        Err(e) => {
            if as_json {
                print_json(&json!({
                    "ok": false,
                    "config": cli.config,
                    "problems": e.0.iter().map(|i| json!({"file": i.file, "key": i.key, "message": i.message})).collect::<Vec<_>>(),
                }))?;
            }
            Err(anyhow::anyhow!("{e}"))
        }
    }
}

/// `check-config --connect`: each board's mailbox, the SMTP server and the store, each said OK or what is
/// wrong in plain words. Fails when anything does.
async fn connect_checks(config: &Config, as_json: bool) -> anyhow::Result<()> {
    let mut results: Vec<(String, Result<String, String>)> = Vec::new();
    for b in &config.boards {
        let what = format!("board {} mailbox", b.id());
        match &b.settings.imap {
            None => {
                // Nothing is created: the daemon makes what is missing when it starts.
                let dir = config.settings.mailbox_dir.join(b.id());
                results.push((what, writable_folder(&dir, "local folder")));
            }
            Some(imap) => {
                let r = crate::mail::imap::check(imap).await.map(|c| {
                    let mut s = format!(
                        "IMAP {}:{} as {} ({}); folders: {}",
                        imap.host,
                        imap.port,
                        imap.username,
                        if imap.auth == "oauth2" { "OAuth2" } else { "password" },
                        c.folders.join(", ")
                    );
                    if !c.created.is_empty() {
                        s.push_str(&format!("; created: {}", c.created.join(", ")));
                    }
                    s
                });
                results.push((what, r));
            }
        }
    }
    results.push((
        "SMTP".into(),
        match &config.settings.smtp {
            None => Ok(format!(
                "none: mail is written to {}",
                config.settings.outbox_dir.display()
            )),
            Some(s) => crate::mail::send::check(s).await,
        },
    ));
    let store = match &config.settings.database {
        crate::config::Database::Sqlite(path) if !path.exists() => path
            .parent()
            .map(|p| writable_folder(p, "folder"))
            .unwrap_or_else(|| Ok(String::new()))
            .map(|_| {
                format!(
                    "not created yet: the daemon creates {} when it first starts",
                    path.display()
                )
            }),
        crate::config::Database::Sqlite(path) => match crate::store::sqlite::SqliteStore::open(path).await {
            Ok(store) => {
                let r = store_reachable(&store).await;
                store.close().await;
                r
            }
            Err(e) => Err(format!("cannot open {}: {e}", path.display())),
        },
        crate::config::Database::Postgres(url) => match crate::store::postgres::PgStore::connect(&url.0).await {
            Ok(store) => {
                let r = store_reachable(&store).await;
                store.close().await;
                r
            }
            Err(e) => Err(format!("cannot connect to PostgreSQL: {e}")),
        },
    };
    results.push((format!("store ({})", config.settings.database.describe()), store));
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if as_json {
        print_json(&json!({
            "ok": failed == 0,
            "checks": results.iter().map(|(what, r)| match r {
                Ok(m) => json!({"check": what, "ok": true, "message": m}),
                Err(m) => json!({"check": what, "ok": false, "message": m}),
            }).collect::<Vec<_>>(),
        }))?;
    } else {
        println!();
        for (what, r) in &results {
            match r {
                Ok(m) => println!("OK    {what}: {m}"),
                Err(m) => println!("FAIL  {what}: {m}"),
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} connection checks failed", results.len());
    }
    Ok(())
}

/// Whether `dir` is there and this user may write in it, or, if it is not there yet, whether its nearest
/// existing parent is (the daemon makes the rest when it starts). Nothing is created.
fn writable_folder(dir: &Path, what: &str) -> Result<String, String> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => break,
        }
    }
    let meta = std::fs::metadata(&probe).map_err(|e| format!("{what} {}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.permissions().readonly() {
        return Err(format!(
            "{what} {}: {} cannot be written",
            dir.display(),
            probe.display()
        ));
    }
    Ok(if probe == dir {
        format!("{what} {}", dir.display())
    } else {
        format!("{what} {} (made when the daemon starts)", dir.display())
    })
}

/// Whether the store answers, and whether its tables exist yet.
async fn store_reachable<S: Store>(store: &S) -> Result<String, String> {
    match store.pending_figures(Utc::now()).await {
        Ok(f) => Ok(format!("reachable; {} emails waiting in the outbox", f.queued)),
        Err(e) => {
            let text = e.to_string();
            if text.contains("no such table") || text.contains("does not exist") {
                Ok("reachable; not set up yet (the daemon creates its tables on first start)".into())
            } else {
                Err(text)
            }
        }
    }
}

/// Who sent a kept message and its subject, read from its headers.
fn sender_and_subject(raw: &[u8]) -> (String, String) {
    if raw.is_empty() {
        return ("(removed under retention)".into(), String::new());
    }
    match crate::mail::mime::decode(raw, &crate::mail::mime::Limits::default()) {
        Ok(m) => (m.from.map(|p| p.email).unwrap_or_else(|| "(no From)".into()), m.subject),
        Err(e) => ("(unreadable)".into(), e.0),
    }
}

async fn inbound_cmd<S: Store>(config: &Config, store: &S, c: &InboundCommand) -> anyhow::Result<()> {
    match c {
        InboundCommand::List {
            board,
            outcome,
            since,
            limit,
            json: as_json,
        } => {
            if let Some(b) = board {
                config.board_or_err(b)?;
            }
            let outcomes: Vec<String> = match outcome.as_deref() {
                None => ["refused", "quarantined", "ignored"].map(String::from).to_vec(),
                Some("all") => Vec::new(),
                Some(o) => {
                    let known = [
                        "refused",
                        "quarantined",
                        "ignored",
                        "held",
                        "case_opened",
                        "command_applied",
                    ];
                    if !known.contains(&o) {
                        anyhow::bail!("--outcome {o:?}: use one of {}, or all", known.join(", "));
                    }
                    vec![o.to_string()]
                }
            };
            let since = match since {
                None => None,
                Some(s) => Some(match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Ok(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default(),
                    Err(_) => parse_instant(s, "--since")?,
                }),
            };
            let rows = store
                .inbound_list(&crate::store::InboundQuery {
                    board: board.clone(),
                    outcomes,
                    since,
                    limit: *limit,
                })
                .await?;
            if *as_json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        let (from, subject) = sender_and_subject(&r.raw);
                        let mut v = serde_json::to_value(r).unwrap_or_default();
                        v["from"] = json!(from);
                        v["subject"] = json!(subject);
                        v
                    })
                    .collect();
                return print_json(&json!(v));
            }
            if rows.is_empty() {
                println!("No message matches.");
                return Ok(());
            }
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let (from, subject) = sender_and_subject(&r.raw);
                    vec![
                        r.id.to_string(),
                        r.received_at.format("%Y-%m-%d %H:%M").to_string(),
                        r.board.clone().unwrap_or_else(|| "-".into()),
                        r.outcome.clone().unwrap_or_else(|| "unfinished".into()),
                        from,
                        subject.chars().take(50).collect(),
                        r.problems
                            .first()
                            .map(|p| p.chars().take(80).collect())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "RECEIVED", "BOARD", "OUTCOME", "FROM", "SUBJECT", "WHY"],
                    &table_rows
                )
            );
            println!(
                "
`inbound show ID` for one message in full; `inbound retry ID` processes it again."
            );
            Ok(())
        }
        InboundCommand::Show { id, json: as_json, raw } => {
            let Some(r) = store.inbound_row(*id).await? else {
                anyhow::bail!("no inbound message {id}: `inbound list --outcome all` lists them");
            };
            if *raw {
                use std::io::Write;
                std::io::stdout().write_all(&r.raw)?;
                return Ok(());
            }
            let (from, subject) = sender_and_subject(&r.raw);
            let replies = store.replies_to(&r.message_id).await?;
            if *as_json {
                let mut v = serde_json::to_value(&r)?;
                v["from"] = json!(from);
                v["subject"] = json!(subject);
                v["replies"] = json!(replies
                    .iter()
                    .map(
                        |o| json!({"to": o.email.to, "subject": o.email.subject, "kind": o.email.kind,
                        "sent_at": o.sent_at, "text": o.email.text})
                    )
                    .collect::<Vec<_>>());
                return print_json(&v);
            }
            println!("Message {}", r.id);
            println!("From:        {from}");
            println!("Subject:     {subject}");
            println!(
                "Received:    {} ({})",
                r.received_at.format("%Y-%m-%d %H:%M UTC"),
                r.mailbox
            );
            println!("Board:       {}", r.board.as_deref().unwrap_or("none"));
            println!("Message-ID:  <{}>", r.message_id.trim_matches(['<', '>']));
            println!(
                "Outcome:     {}{}",
                r.outcome.as_deref().unwrap_or("unfinished"),
                r.case_reference
                    .as_deref()
                    .map(|c| format!(" (case {c})"))
                    .unwrap_or_default()
            );
            if !r.problems.is_empty() {
                println!("Why it was not used:");
                for p in &r.problems {
                    println!("  - {p}");
                }
            }
            if replies.is_empty() {
                println!("Reply: none was sent.");
            }
            for o in &replies {
                let state = match (o.sent_at, o.failed_at) {
                    (Some(t), _) => format!("sent {}", t.format("%Y-%m-%d %H:%M UTC")),
                    (None, Some(_)) => "FAILED".into(),
                    (None, None) => "queued".into(),
                };
                println!("\nReply to {} ({state}): {}\n", o.email.to.join(", "), o.email.subject);
                for line in o.email.text.lines() {
                    println!("  | {line}");
                }
            }
            Ok(())
        }
        InboundCommand::Retry { id, now } => {
            let now = match now {
                Some(s) => parse_instant(s, "--now")?,
                None => app::Clock::system().now(),
            };
            let Some(r) = store.inbound_row(*id).await? else {
                anyhow::bail!("no inbound message {id}: `inbound list --outcome all` lists them");
            };
            if r.raw.is_empty() {
                anyhow::bail!("message {id} was removed under the board's retention period: nothing to process");
            }
            if let Some(o) = r
                .outcome
                .as_deref()
                .filter(|o| ["case_opened", "command_applied", "held"].contains(o))
            {
                anyhow::bail!(
                    "message {id} was used ({o}{}): it has had its effect, and is not processed twice",
                    r.case_reference
                        .as_deref()
                        .map(|c| format!(", case {c}"))
                        .unwrap_or_default()
                );
            }
            let source = crate::mail::pipeline::Source {
                mailbox: r.mailbox.clone(),
                uidvalidity: r.uidvalidity,
                uid: r.uid,
            };
            app::prepare_store(config, store, now).await?;
            let key = app::load_secret(&config.settings, store).await?;
            let pipeline = crate::mail::pipeline::Pipeline::new(config, key)
                .map_err(anyhow::Error::msg)?
                .retrying(&format!("retry-{}", now.timestamp_millis()));
            let attempt_key = crate::mail::pipeline::attempt_key(&source, &r.raw);
            if !store.reopen_inbound(*id, &attempt_key).await? {
                anyhow::bail!(
                    "message {id} could not be taken up again: only a message that was refused, quarantined or \
                     ignored can be, once at a time (is it being processed now?)"
                );
            }
            let before = r.outcome.clone().unwrap_or_else(|| "unfinished".into());
            let processed = pipeline
                .process_isolated(store, &source, &r.raw, r.board.as_deref(), now, false)
                .await;
            let report = match processed {
                Ok(report) if !report.retry => report,
                failed => {
                    // It failed this time: what became of it before is put back, so it stays in view.
                    store
                        .set_inbound_outcome(*id, &before, r.case_reference.as_deref(), &r.problems, now)
                        .await?;
                    let why = match failed {
                        Ok(report) => report.problems.join(" "),
                        Err(e) => e.to_string(),
                    };
                    anyhow::bail!("message {id} could not be processed this time ({why}); it is {before} as before");
                }
            };
            store
                .record_event(
                    r.board.as_deref().unwrap_or("-"),
                    report.case.as_deref(),
                    &crate::core::lifecycle::Event {
                        kind: "inbound_retried".into(),
                        at: now,
                        actor: "operator".into(),
                        summary: format!(
                            "Inbound message {id} processed again (was {before}, now {})",
                            report.outcome
                        ),
                        detail: json!({"inbound_id": id, "before": before, "after": report.outcome}),
                    },
                )
                .await?;
            println!(
                "Message {id}: was {before}, now {}{}",
                report.outcome,
                report
                    .case
                    .as_deref()
                    .map(|c| format!(" (case {c})"))
                    .unwrap_or_default()
            );
            for p in &report.problems {
                println!("  - {p}");
            }
            if report.replies > 0 {
                println!(
                    "{} email(s) queued in answer; the running daemon sends them.",
                    report.replies
                );
            }
            Ok(())
        }
    }
}

async fn retention_cmd<S: Store>(
    config: &Config,
    store: &S,
    a: &RetentionArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let done = crate::retention::run(config, store, now, a.dry_run).await?;
    if a.json {
        return print_json(&json!({"dry_run": a.dry_run, "now": now, "boards": done}));
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for r in &done {
        println!(
            "{:<24} retention {} days (closed before {}): {verb} the personal data of {} case(s){}; {} raw message(s) tied to no case; {} filed copies",
            r.board,
            r.retention_days,
            r.cutoff.format("%Y-%m-%d"),
            r.cases.len(),
            if r.cases.is_empty() { String::new() } else { format!(" ({})", r.cases.join(", ")) },
            r.unlinked_raw_messages,
            r.filed_messages
        );
        if !r.failed.is_empty() {
            println!(
                "{:<24} could not purge (tried again at the next run): {}",
                "",
                r.failed.join(", ")
            );
        }
    }
    if a.dry_run {
        println!("\nNothing was removed (--dry-run).");
    }
    Ok(())
}

async fn ingest_cmd<S: Store>(
    store: &S,
    pipeline: &crate::mail::pipeline::Pipeline<'_>,
    a: &IngestArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if !a.dry_run {
        app::prepare_store(pipeline.config, store, now).await?;
    }
    let mut reports = Vec::new();
    for file in &a.files {
        let raw = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let source = crate::mail::pipeline::Source {
            mailbox: format!("file:{}", file.display()),
            ..Default::default()
        };
        let report = pipeline
            .process_isolated(store, &source, &raw, a.board.as_deref(), now, a.dry_run)
            .await?;
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("file".into(), json!(file.display().to_string()));
            o.entry("command").or_insert(serde_json::Value::Null);
            o.entry("reply_text").or_insert(serde_json::Value::Null);
        }
        reports.push(v);
    }
    if a.json {
        return print_json(&json!(reports));
    }
    for r in &reports {
        println!(
            "{}: {}{}",
            r["file"].as_str().unwrap_or("?"),
            r["outcome"].as_str().unwrap_or("?"),
            r["case"].as_str().map(|c| format!(" {c}")).unwrap_or_default()
        );
        for p in r["problems"].as_array().into_iter().flatten() {
            println!("  - {}", p.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

async fn outbox_cmd<S: Store>(store: &S, c: &OutboxCommand) -> anyhow::Result<()> {
    match c {
        OutboxCommand::List { failed, json } => {
            let rows: Vec<_> = store
                .outbox(None)
                .await?
                .into_iter()
                .filter(|o| !*failed || o.failed_at.is_some())
                .collect();
            if *json {
                return print_json(&serde_json::to_value(&rows)?);
            }
            if rows.is_empty() {
                println!(
                    "{}",
                    if *failed {
                        "No failed email."
                    } else {
                        "The outbox is empty."
                    }
                );
            }
            for o in rows {
                let state = match (o.sent_at, o.failed_at, &o.email.hold) {
                    (Some(t), _, _) => format!("sent {}", t.format("%Y-%m-%d %H:%M")),
                    (None, Some(t), _) => format!("FAILED {}", t.format("%Y-%m-%d %H:%M")),
                    (None, None, Some(_)) => "HELD".to_string(),
                    (None, None, None) => format!("queued ({} attempts)", o.attempts),
                };
                println!(
                    "{:>6}  {:<16}  {:<15}  {:<16}  {}",
                    o.id,
                    o.email.kind,
                    o.email.case_reference.as_deref().unwrap_or("-"),
                    state,
                    o.email.to.join(", ")
                );
                if let Some(e) = o.last_error.as_deref().filter(|_| o.sent_at.is_none()) {
                    println!("        last error: {e}");
                }
                if let Some(h) = o.email.hold.as_ref().filter(|_| o.sent_at.is_none()) {
                    println!("        held: {}", h.reason);
                }
                for r in &o.refused {
                    println!("        refused by {}: {}", r.address, r.error);
                }
            }
            Ok(())
        }
        OutboxCommand::Retry { id, all } => {
            if id.is_none() && !*all {
                anyhow::bail!("say which email to send again (its id from `outbox list --failed`), or --all");
            }
            let n = store.outbox_retry(*id, app::Clock::system().now()).await?;
            println!("{n} email(s) will be sent again by the running daemon.");
            Ok(())
        }
    }
}

async fn cases_cmd<S: Store>(store: &S, c: &CasesCommand) -> anyhow::Result<()> {
    match c {
        CasesCommand::List { board, status, json } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    CaseStatus::parse(s).with_context(|| format!("status {s:?}: use open, resolved or withdrawn"))?,
                ),
            };
            let cases = store
                .list_cases(&CaseFilter {
                    board: board.clone(),
                    status,
                })
                .await?;
            if *json {
                return print_json(&serde_json::to_value(&cases)?);
            }
            if cases.is_empty() {
                println!("No cases.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = cases
                .iter()
                .map(|c| {
                    vec![
                        c.reference.clone(),
                        c.board.clone(),
                        c.status.to_string(),
                        c.stage.to_string(),
                        c.opened_at.format("%Y-%m-%d %H:%M").to_string(),
                        c.next_due.map(long_date).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["Reference", "Board", "Status", "Stage", "Opened (UTC)", "Next due"],
                    &rows
                )
            );
            Ok(())
        }
        CasesCommand::Show { reference, json } => {
            let Some(stored) = store.load_case(reference).await? else {
                bail!("no case {reference}: `escalation-bot cases list` shows the references");
            };
            let deadlines = store.deadlines(reference).await?;
            let timers = store.timers(reference).await?;
            let events = store.events(Some(reference)).await?;
            if *json {
                return print_json(&json!({
                    "case": stored.case, "version": stored.version, "deadlines": deadlines,
                    "timers": timers, "events": events,
                }));
            }
            let case = &stored.case;
            println!("{}  ({}, {})", case.reference, case.board, case.status);
            println!("Stage:   {}", case.stage);
            println!(
                "Opened:  {} ({})",
                case.opened_at.to_rfc3339(),
                long_date(case.opened_on)
            );
            if let Some(n) = &case.record.adult_name {
                println!("Adult:   {n}");
            }
            if let Some(n) = &case.record.nhs_number {
                println!("NHS no.: {}", nhs::spaced(n));
            }
            if case.immediate_risk {
                println!("Immediate risk flagged.");
            }
            println!("\nParticipants:");
            for p in &case.participants {
                println!(
                    "  {:<10} {} <{}>{}",
                    format!("{:?}", p.role),
                    p.name.clone().unwrap_or_default(),
                    p.email,
                    p.agency.as_ref().map(|a| format!(", {a}")).unwrap_or_default()
                );
            }
            if let Some(r) = &case.resolution {
                println!(
                    "\nResolved at stage {} on {} after {} working day(s): {}",
                    r.at_stage,
                    long_date(r.resolved_on),
                    r.working_days_taken,
                    r.outcome
                );
            }
            if !deadlines.is_empty() {
                println!("\nDeadlines:");
                let rows: Vec<Vec<String>> = deadlines
                    .iter()
                    .map(|d| {
                        vec![
                            d.label.clone(),
                            long_date(d.due_date),
                            format!("{:?}", d.kind).to_lowercase(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["Label", "Due", "Kind"], &rows));
            }
            if !timers.is_empty() {
                println!("\nTimers:");
                let rows: Vec<Vec<String>> = timers
                    .iter()
                    .map(|t| {
                        vec![
                            t.timer.kind.as_str().to_string(),
                            t.timer.label.clone(),
                            t.timer.fire_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                            t.fired_at
                                .map(|f| f.format("fired %Y-%m-%d %H:%M").to_string())
                                .unwrap_or_else(|| "pending".into()),
                        ]
                    })
                    .collect();
                print!("{}", table(&["Kind", "Deadline", "Fires at", "State"], &rows));
            }
            println!("\nAudit trail:");
            for e in &events {
                println!(
                    "  {}  {:<20} {}",
                    e.event.at.format("%Y-%m-%d %H:%M"),
                    e.event.kind,
                    e.event.summary
                );
            }
            Ok(())
        }
    }
}
