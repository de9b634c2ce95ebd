//! `simulate`: a case's whole life in virtual time, for a board manager or a trainer to see what the bot
//! would send, and the harness of the case clock's tests.
//!
//! The scenario (DESIGN.md) names a board, an end, and steps: an email file arriving at a moment, or a reply
//! from an address at a moment. The simulation runs on the shipped (or `--config`) configuration with a
//! throwaway SQLite store and folders in a temporary directory, deleted afterwards: the real database and
//! mailboxes are never touched. Messages go through the same [`Pipeline`] as the daemon's, and between
//! steps the [`scheduler`] acts on each timer at its own moment, exactly as a daemon that never stopped
//! would. What comes out is every email the bot would send, as written to the outbox, in order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app;
use crate::config::{Config, Database};
use crate::mail::compose::{nonce_of, public_kind};
use crate::mail::pipeline::{Pipeline, Source};
use crate::scheduler;
use crate::store::{OutboxRecord, SqliteStore, Store};

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub board: String,
    pub until: DateTime<Utc>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One thing that happens: an email file arrives, or someone replies.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Step {
    Email {
        at: DateTime<Utc>,
        /// Relative to the scenario file.
        email: PathBuf,
    },
    Reply {
        at: DateTime<Utc>,
        from: String,
        reply: String,
        /// A file to attach (the board's form filled in, as a Word document), relative to the scenario
        /// file.
        #[serde(default)]
        attach: Option<PathBuf>,
    },
}

impl Step {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Step::Email { at, .. } | Step::Reply { at, .. } => *at,
        }
    }
}

/// One email the bot would send (DESIGN.md's `simulate --json` shape).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimEmail {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub case: Option<String>,
    pub deadline: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub attachments: Vec<String>,
    pub late: bool,
    /// Why it would wait in the outbox instead of going (a placeholder role address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Its Message-ID (for tests that reply to a particular email).
    #[serde(skip)]
    pub message_id: String,
    /// Its HTML part and the files themselves (for tests that open them).
    #[serde(skip)]
    pub html: Option<String>,
    #[serde(skip)]
    pub files: Vec<crate::store::Attachment>,
}

/// What happened to each step, for the reader.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub case: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    pub board: String,
    pub emails: Vec<SimEmail>,
    pub steps: Vec<StepReport>,
}

/// A temporary directory removed when dropped, whatever happens.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Read a scenario file.
pub fn load(path: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the scenario {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a scenario: write {{\"board\": ID, \"until\": RFC3339, \"steps\": [{{\"at\": RFC3339, \"email\": \"FILE.eml\"}} \
             or {{\"at\": RFC3339, \"from\": ADDRESS, \"reply\": TEXT}}, …]}}",
            path.display()
        )
    })
}

/// Run `scenario` (read from `path`, whose folder email paths are relative to) on `config`.
pub async fn run(config: Config, scenario: &Scenario, path: &Path) -> anyhow::Result<Simulation> {
    run_keeping(config, scenario, path, None).await
}

/// [`run`], keeping a copy of the simulation's store at `keep` (an SQLite file the `report` and `digest`
/// commands can read with `ESCALATION_BOT_DATABASE_URL=sqlite:FILE`).
pub async fn run_keeping(
    mut config: Config,
    scenario: &Scenario,
    path: &Path,
    keep: Option<&Path>,
) -> anyhow::Result<Simulation> {
    config.board_or_err(&scenario.board)?;
    // The scenario's board alone: the other boards' digests are not part of this case's life.
    config.boards.retain(|b| b.id() == scenario.board);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("escalation-bot-simulate-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let scratch = Scratch(dir.clone());
    // Nothing real is touched: the store, the folders and the secret are the simulation's own.
    config.settings.database = Database::Sqlite(dir.join("simulate.sqlite3"));
    config.settings.mailbox_dir = dir.join("mailbox");
    config.settings.outbox_dir = dir.join("outbox");
    config.settings.secret_file = dir.join("secret");
    config.settings.smtp = None;
    let mut steps = scenario.steps.clone();
    steps.sort_by_key(Step::at);
    let start = steps.first().map(Step::at).unwrap_or(scenario.until);
    let store = SqliteStore::open(&dir.join("simulate.sqlite3")).await?;
    let result = async {
        app::prepare_store(&config, &store, start).await?;
        let key = app::load_secret(&config.settings, &store).await?;
        let pipeline = Pipeline::new(&config, key).map_err(anyhow::Error::msg)?;
        let mut reports = Vec::new();
        let mut clock = start;
        for (i, step) in steps.iter().enumerate() {
            let at = step.at().max(clock);
            scheduler::run_until(&pipeline, &store, clock, at).await?;
            clock = at;
            let (raw, name) = match step {
                Step::Email { email, .. } => {
                    let file = base.join(email);
                    let raw = std::fs::read(&file)
                        .with_context(|| format!("step {}: cannot read {}", i + 1, file.display()))?;
                    (raw, file.display().to_string())
                }
                Step::Reply {
                    from, reply, attach, ..
                } => {
                    let file = match attach {
                        Some(path) => {
                            let path = base.join(path);
                            let bytes = std::fs::read(&path)
                                .with_context(|| format!("step {}: cannot read {}", i + 1, path.display()))?;
                            let name = path
                                .file_name()
                                .map(|n| n.to_string_lossy().to_string())
                                .unwrap_or_default();
                            Some((name, bytes))
                        }
                        None => None,
                    };
                    (
                        reply_message(&store, &config, scenario, i, from, reply, file, at).await?,
                        format!("reply from {from}"),
                    )
                }
            };
            let source = Source {
                mailbox: format!("simulate:{name}"),
                ..Default::default()
            };
            let report = pipeline
                .process_isolated(&store, &source, &raw, Some(&scenario.board), at, false)
                .await?;
            reports.push(StepReport {
                at,
                outcome: report.outcome.clone(),
                case: report.case.clone(),
                problems: report.problems.clone(),
            });
        }
        scheduler::run_until(&pipeline, &store, clock, scenario.until).await?;
        let emails = merge_copies(store.outbox(None).await?);
        Ok::<_, anyhow::Error>(Simulation {
            board: scenario.board.clone(),
            emails,
            steps: reports,
        })
    }
    .await;
    store.close().await;
    if let (Some(keep), Ok(_)) = (keep, &result) {
        std::fs::copy(dir.join("simulate.sqlite3"), keep)
            .with_context(|| format!("cannot keep the store at {}", keep.display()))?;
    }
    drop(scratch);
    result
}

/// The raw email of a reply step: from `from` to the board's mailbox, in reply to the latest email the bot
/// had sent to that address about a case (so that it carries the proof a real reply carries).
#[allow(clippy::too_many_arguments)]
async fn reply_message<S: Store>(
    store: &S,
    config: &Config,
    scenario: &Scenario,
    i: usize,
    from: &str,
    text: &str,
    attach: Option<(String, Vec<u8>)>,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    let board = config.board_or_err(&scenario.board)?;
    let from = from.trim();
    if from.is_empty() || from.contains(['\r', '\n']) || !from.contains('@') {
        bail!("step {}: {from:?} is not an email address", i + 1);
    }
    let latest = store
        .outbox(None)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.email.case_reference.is_some() && r.email.to.iter().any(|t| t.eq_ignore_ascii_case(from)));
    let boundary = format!("sim-{}", nonce_of(&format!("{from}{at}")));
    let content_type = match &attach {
        Some(_) => format!("multipart/mixed; boundary=\"{boundary}\""),
        None => "text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit".to_string(),
    };
    let mut head = format!(
        "From: {from}\r\nTo: {}\r\nDate: {}\r\nMessage-ID: <sim-{}-{}@simulate.invalid>\r\nMIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n",
        board.settings.mailbox,
        at.to_rfc2822(),
        i + 1,
        nonce_of(&format!("{from}{text}{at}")),
    );
    match &latest {
        Some(r) => head.push_str(&format!(
            "Subject: Re: {}\r\nIn-Reply-To: <{id}>\r\nReferences: <{id}>\r\n",
            r.email.subject,
            id = r.email.message_id
        )),
        None => head.push_str("Subject: Re: escalation\r\n"),
    }
    let body = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let Some((name, bytes)) = attach else {
        return Ok(format!("{head}\r\n{body}\r\n").into_bytes());
    };
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let name = name.replace(['"', '\r', '\n'], "");
    Ok(format!(
        "{head}\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n\
         --{boundary}\r\nContent-Type: {}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--{boundary}--\r\n",
        crate::mail::docx::DOCX_TYPE,
        lines.join("\r\n")
    )
    .into_bytes())
}

/// The outbox as emails: one copy per recipient of an email to several is shown once, with the To and Cc
/// its recipients see.
pub fn merge_copies(rows: Vec<OutboxRecord>) -> Vec<SimEmail> {
    let mut out: Vec<SimEmail> = Vec::new();
    let mut last_key: Option<(String, String, String, DateTime<Utc>, String)> = None;
    for r in rows {
        let e = &r.email;
        let shown_to = e.headers.get("To");
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        };
        let key = (
            e.kind.clone(),
            e.subject.clone(),
            e.text.clone(),
            r.created_at,
            format!("{:?}{:?}", shown_to, e.headers.get("Cc")),
        );
        if shown_to.is_some() && last_key.as_ref() == Some(&key) {
            continue;
        }
        last_key = Some(key);
        let (to, cc) = match shown_to {
            Some(to) => (split(to), e.headers.get("Cc").map(|c| split(c)).unwrap_or_default()),
            None => (e.to.clone(), e.cc.clone()),
        };
        out.push(SimEmail {
            at: r.created_at,
            kind: e
                .headers
                .get("X-Escalation-Kind")
                .cloned()
                .unwrap_or_else(|| public_kind(&e.kind).to_string()),
            case: e.case_reference.clone(),
            deadline: e.headers.get("X-Escalation-Deadline").cloned(),
            to,
            cc,
            subject: e.subject.clone(),
            text: e.text.clone(),
            attachments: e.attachments.iter().map(|a| a.filename.clone()).collect(),
            late: e.headers.contains_key("X-Escalation-Late"),
            held: e.hold.as_ref().map(|h| h.reason.clone()),
            message_id: e.message_id.clone(),
            html: e.html.clone(),
            files: e.attachments.clone(),
        });
    }
    out
}

/// Write each email's HTML part (`NN-kind.html`) and attached files (`NN-name`) into `dir`; the number of
/// files written.
pub fn save(sim: &Simulation, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || matches!(c, '-' | '.' | ' ') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut n = 0;
    for (i, e) in sim.emails.iter().enumerate() {
        if let Some(html) = &e.html {
            std::fs::write(dir.join(format!("{:02}-{}.html", i + 1, safe(&e.kind))), html)?;
            n += 1;
        }
        for f in &e.files {
            if let Some(bytes) = f.bytes() {
                std::fs::write(dir.join(format!("{:02}-{}", i + 1, safe(&f.filename))), bytes)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The simulation as `--json` prints it.
pub fn to_json(sim: &Simulation) -> serde_json::Value {
    json!({ "board": sim.board, "emails": sim.emails, "steps": sim.steps })
}

/// The simulation as a table a board manager can read: when (local time), what, to whom, subject.
pub fn to_table(sim: &Simulation, config: &Config) -> String {
    let tz = config
        .board(&sim.board)
        .map(|b| b.rules.timezone)
        .unwrap_or(chrono_tz::Europe::London);
    let mut s = String::new();
    for e in &sim.emails {
        let mut who = e.to.join(", ");
        if !e.cc.is_empty() {
            who.push_str(&format!(" (cc {})", e.cc.join(", ")));
        }
        s.push_str(&format!(
            "{}  {:<15} {:<45} {}{}\n",
            e.at.with_timezone(&tz).format("%a %d %b %Y %H:%M"),
            e.kind,
            who,
            e.subject,
            if e.held.is_some() {
                "  [held: placeholder address]"
            } else {
                ""
            }
        ));
    }
    if sim.emails.is_empty() {
        s.push_str("No email would be sent.\n");
    }
    s
}
