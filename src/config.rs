//! Loading and validating configuration: the daemon's settings (`config/default.toml`), each board's own
//! settings (`config/boards/*.toml`) and each board's policy (`config/policies/*.toml`).
//!
//! Order: built-in defaults, then the TOML files, then environment variables (`ESCALATION_BOT_DATABASE_URL`,
//! or `ESCALATION_BOT_DATABASE_URL_FILE` naming a file that holds it). Loading validates everything and
//! returns every problem at once, each with its file and key and what to do.
//! Relative paths in a file are taken relative to the directory of that file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::core::calendar::{Calendar, Region};
use crate::core::lifecycle::looks_like_email;
use crate::core::policy::{Policy, Role};
use crate::core::rules::BoardRules;

/// One problem (or warning) in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem that stops the configuration loading.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<Issue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for i in &self.0 {
            writeln!(f, "  - {i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A secret-bearing string whose `Debug` hides it.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<hidden>\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    /// `sqlite:PATH` (relative to the config file) or `postgres://…`.
    pub url: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathFile {
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    database: Option<DatabaseFile>,
    mailbox: Option<PathFile>,
    outbox: Option<PathFile>,
    policies_dir: Option<String>,
    boards_dir: Option<String>,
    templates_dir: Option<String>,
    secret_file: Option<String>,
    smtp: Option<crate::mail::send::SmtpSettings>,
    http: Option<HttpSettings>,
    reading: Option<ReadingSettings>,
}

/// How long reading one message may take (`[reading]`): decoding it and reading the record or the reply
/// in it. Past `budget_ms`, the message counts as a failed attempt (three quarantine it) and the daemon
/// moves on without waiting for it; the reading left running on its own thread is abandoned, and at most
/// `max_abandoned` of those may run at once (beyond, messages wait to be read).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReadingSettings {
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    #[serde(default = "default_max_abandoned")]
    pub max_abandoned: usize,
}

impl Default for ReadingSettings {
    fn default() -> Self {
        ReadingSettings {
            budget_ms: default_budget_ms(),
            max_abandoned: default_max_abandoned(),
        }
    }
}

impl ReadingSettings {
    /// The time one message's reading may take.
    pub fn budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.budget_ms)
    }
}

/// Five seconds: a message is read in milliseconds (every parser is linear in its input), a 25 MB one in
/// well under a second.
fn default_budget_ms() -> u64 {
    5_000
}

fn default_max_abandoned() -> usize {
    4
}

/// The optional health and metrics listener (`[http]`): off unless `listen` is given.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address and port, e.g. `127.0.0.1:9187`: `/healthz` and `/metrics`.
    pub listen: String,
    /// `/healthz` answers 503 once a mailbox has been reconnecting, or the mail server failing, this long.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after_seconds: u64,
}

fn default_unhealthy_after() -> u64 {
    300
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(Secret),
}

impl Database {
    /// Parse a database URL, resolving a relative SQLite path against `base`.
    pub fn parse(url: &str, base: &Path) -> Result<Database, String> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let p = rest.trim_start_matches("//");
            let p = p.split('?').next().unwrap_or(p);
            if p.is_empty() {
                return Err("give a file path after sqlite:, e.g. sqlite:../data/escalation-bot.sqlite3".into());
            }
            let path = Path::new(p);
            Ok(Database::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                tidy(&base.join(path))
            }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres(Secret(url.to_string())))
        } else {
            Err("use sqlite:PATH or postgres://USER@HOST:PORT/DATABASE".into())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => format!("SQLite at {}", p.display()),
            Database::Postgres(_) => "PostgreSQL".to_string(),
        }
    }
}

/// The daemon's settings, after defaults, file and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: Database,
    /// The local mailbox folder (Maildir) read when no IMAP server is configured.
    pub mailbox_dir: PathBuf,
    /// The folder outgoing mail is written to when no SMTP server is configured.
    pub outbox_dir: PathBuf,
    pub policies_dir: PathBuf,
    pub boards_dir: PathBuf,
    /// An operator's folder of templates overriding the built-in ones, file by file.
    pub templates_dir: Option<PathBuf>,
    /// The file holding the secret that signs the bot's Message-IDs (created on first use), unless
    /// `ESCALATION_BOT_SECRET` is set.
    pub secret_file: PathBuf,
    /// The SMTP server outgoing mail goes through; without one, mail is written to `outbox_dir`.
    pub smtp: Option<crate::mail::send::SmtpSettings>,
    /// The health and metrics listener, if any.
    pub http: Option<HttpSettings>,
    /// How long reading one message may take (`[reading]`).
    pub reading: ReadingSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HolidayAdjustments {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A board's own settings (`config/boards/ID.toml`), beside its policy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BoardSettings {
    pub id: String,
    /// The id of the policy file this board follows.
    pub policy: String,
    /// The board mailbox escalations are sent to.
    pub mailbox: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_hours")]
    pub working_hours: WorkingHours,
    /// How long raw messages and closed cases are kept, in days.
    pub retention_days: u32,
    pub allowed_sender_domains: Vec<String>,
    #[serde(default = "default_shared")]
    pub shared_domains: Vec<String>,
    /// Whether reminders, digests and notifications may carry the adult's name and NHS number.
    #[serde(default)]
    pub personal_data_in_notifications: bool,
    #[serde(default)]
    pub roles: BTreeMap<Role, Contact>,
    #[serde(default)]
    pub holidays: HolidayAdjustments,
    /// When the board's digest goes and to whom (`[digest]`).
    #[serde(default)]
    pub digest: DigestSettings,
    /// Where the bot files, unread, its own notifications that arrive in the mailbox it reads (a board role
    /// whose address is the board mailbox): a folder of that mailbox, for the person who reads it.
    #[serde(default = "default_notifications_folder")]
    pub notifications_folder: String,
    /// The board's directory of named people (a CSV with the columns role, agency, name, email and
    /// optionally stage), relative to the board file: reminders and acknowledgements name them as whom to
    /// approach next, and ESCALATE may name a role instead of a person.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// The board's IMAP mailbox; without one, the local folder `MAILBOX_DIR/ID` is watched.
    #[serde(default)]
    pub imap: Option<ImapSettings>,
    /// The most answers (refusals, command errors, status) one address gets in 24 hours: stops mail loops.
    #[serde(default = "default_reply_cap")]
    pub reply_cap_per_day: u32,
    /// How many emails of any kind one address, one domain and the whole board may be sent in 24 hours
    /// (`[rate_limits]`: `per_address`, `per_domain`, `overall`).
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Put a signed token for the case in a plus address in Reply-To (`escalations+brad-2027-0042.3f9a…@…`),
    /// so that a reply is matched to its case even where a mail client or gateway drops In-Reply-To and
    /// References. Only for a mailbox whose server delivers plus addresses to it (most do).
    #[serde(default)]
    pub reply_to_token: bool,
    /// The authserv-id of the board's own mail server: when set, a command whose Authentication-Results
    /// from that server report a DMARC or DKIM failure is refused.
    #[serde(default)]
    pub trusted_authserv_id: Option<String>,
}

/// A board's rate limits on outgoing email, per 24 hours (`[rate_limits]`); `mail::limits` applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Emails to one address (other than the board's staff).
    pub per_address: u32,
    /// Emails to the addresses of one domain (other than the shared domains).
    pub per_domain: u32,
    /// Emails the board sends in all.
    pub overall: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_address: 40,
            per_domain: 300,
            overall: 3000,
        }
    }
}

/// A board's IMAP mailbox (`[imap]` in the board's file). It lives here, with the rest of the configuration,
/// so that `config` needs nothing from `mail`; `mail::imap` reads it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    /// `tls` (default, port 993) or `none`, which sends the password and every message unencrypted and is
    /// therefore allowed only when `host` is this machine (127.0.0.0/8, ::1 or localhost).
    #[serde(default = "default_imap_tls")]
    pub tls: String,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    /// `password` (default) or `oauth2` (SASL XOAUTH2 with `[imap.oauth2]`, for Microsoft 365 and NHSmail,
    /// which refuse passwords).
    #[serde(default = "default_auth")]
    pub auth: String,
    #[serde(default)]
    pub oauth2: Option<OAuth2Settings>,
    #[serde(default = "default_imap_folder")]
    pub folder: String,
    #[serde(default = "default_imap_processed")]
    pub processed_folder: String,
    #[serde(default = "default_imap_quarantine")]
    pub quarantine_folder: String,
    /// The longest an IDLE lasts before it is re-issued, and how often to look when the server has no IDLE
    /// (at most every minute). The default, 9 minutes, is well inside firewall/NAT idle timeouts (and the
    /// 29 minutes RFC 2177 allows); a connection that sat idle that long is checked with a NOOP.
    #[serde(default = "default_imap_idle")]
    pub idle_seconds: u64,
    #[serde(default = "default_imap_timeout")]
    pub timeout_seconds: u64,
    /// The board's `notifications_folder`, set when the board file is loaded (not written in `[imap]`).
    #[serde(skip)]
    pub notifications_folder: String,
}

/// An app registration's client-credentials login (`[imap.oauth2]`, `[smtp.oauth2]`); `mail::oauth` uses it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Settings {
    /// The organisation's tenant: its domain (`westshire.gov.uk`) or directory id.
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// A file holding the client secret (relative to the file that names it), read at every token fetch.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Or the environment variable holding it.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Or a certificate uploaded to the app registration (PEM), with its private key (PEM, PKCS#8 or
    /// PKCS#1 RSA; relative to the file that names them): the bot signs a client assertion instead of
    /// sending a secret.
    #[serde(default)]
    pub client_certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub client_private_key_file: Option<PathBuf>,
    /// Default: Microsoft's identity platform for the tenant.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Default: `https://outlook.office365.com/.default`.
    #[serde(default)]
    pub scope: Option<String>,
}

impl OAuth2Settings {
    /// Its files, relative to `dir` (the folder of the file that names them).
    fn resolve_files(&mut self, dir: &Path) {
        for f in [
            &mut self.client_secret_file,
            &mut self.client_certificate_file,
            &mut self.client_private_key_file,
        ] {
            *f = f.as_deref().map(|p| tidy(&dir.join(p)));
        }
    }
}

pub fn default_auth() -> String {
    "password".into()
}

/// The problems of an `auth`/`oauth2` pair, as (key, message); `prefix` is `imap` or `smtp`.
pub fn check_auth(prefix: &str, auth: &str, oauth2: Option<&OAuth2Settings>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match (auth, oauth2) {
        ("password", None) => {}
        ("password", Some(_)) => out.push((
            format!("{prefix}.auth"),
            format!("is \"password\" but [{prefix}.oauth2] is given: set auth = \"oauth2\" to use it"),
        )),
        ("oauth2", None) => out.push((
            format!("{prefix}.oauth2"),
            "auth = \"oauth2\" needs tenant, client_id and client_secret_file (or client_secret_env)".into(),
        )),
        ("oauth2", Some(o)) => {
            let key = |k: &str| format!("{prefix}.oauth2.{k}");
            if o.tenant.trim().is_empty() {
                out.push((
                    key("tenant"),
                    "give the tenant: the organisation's domain or directory id".into(),
                ));
            }
            if o.client_id.trim().is_empty() {
                out.push((
                    key("client_id"),
                    "give the app registration's application (client) id".into(),
                ));
            }
            let given = [
                o.client_secret_file.is_some(),
                o.client_secret_env.is_some(),
                o.client_certificate_file.is_some() || o.client_private_key_file.is_some(),
            ]
            .iter()
            .filter(|g| **g)
            .count();
            if given == 0 {
                out.push((
                    key("client_secret_file"),
                    "give client_secret_file (a file holding the secret), client_secret_env, or client_certificate_file and client_private_key_file".into(),
                ));
            } else if given > 1 {
                out.push((
                    key("client_secret_env"),
                    "give one way to prove the app: client_secret_file, client_secret_env, or a certificate".into(),
                ));
            }
            if o.client_certificate_file.is_some() != o.client_private_key_file.is_some() {
                out.push((
                    key("client_private_key_file"),
                    "a certificate needs both client_certificate_file and client_private_key_file".into(),
                ));
            }
            for (k, f) in [
                ("client_secret_file", &o.client_secret_file),
                ("client_certificate_file", &o.client_certificate_file),
                ("client_private_key_file", &o.client_private_key_file),
            ] {
                if let Some(f) = f.as_ref().filter(|f| !f.is_file()) {
                    out.push((key(k), format!("{} does not exist", f.display())));
                }
            }
            if let Some(url) = &o.token_url {
                let host = url
                    .split("//")
                    .nth(1)
                    .and_then(|r| r.split(['/', ':']).next())
                    .unwrap_or_default();
                if url.starts_with("http://") && !is_loopback_host(host) {
                    out.push((
                        key("token_url"),
                        "must be https:// (http:// only for a server on this machine): the client secret would cross the network unencrypted".into(),
                    ));
                } else if !url.starts_with("https://") && !url.starts_with("http://") {
                    out.push((key("token_url"), format!("{url:?} is not an https:// URL")));
                }
            }
        }
        (other, _) => out.push((
            format!("{prefix}.auth"),
            format!("{other:?} is not a choice: use \"password\" (the default) or \"oauth2\""),
        )),
    }
    out
}

/// A duty's trigger in words, for `check-config`.
fn trigger_words(t: &crate::core::policy::Trigger) -> String {
    use crate::core::policy::Trigger;
    match t {
        Trigger::EnteringStage(n) => format!("when a case reaches stage {n}"),
        Trigger::ResolvedAtOrAbove(1) => "when a case is resolved".into(),
        Trigger::ResolvedAtOrAbove(n) => format!("when a case is resolved at stage {n} or above"),
        Trigger::DeadlinePassed(l) if l == "any" => "when a deadline passes unresolved".into(),
        Trigger::DeadlinePassed(l) => format!("when the {} deadline passes unresolved", l.replace('-', " ")),
        Trigger::Withdrawn(_) => "when a case is withdrawn".into(),
    }
}

/// The board's digest (`[digest]` in the board file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    /// A cron expression with seconds (the `cron` crate's form), in the board's local time: default
    /// Mondays at 09:00. An occurrence on a day that is not a working day moves to the next working day.
    #[serde(default = "default_digest_schedule")]
    pub schedule: String,
    /// The roles it goes to; default: the business manager (or, without one, the Strategic Safeguarding
    /// Service Manager, then the business office).
    #[serde(default)]
    pub to: Vec<Role>,
}

impl Default for DigestSettings {
    fn default() -> Self {
        DigestSettings {
            schedule: default_digest_schedule(),
            to: Vec::new(),
        }
    }
}

fn default_digest_schedule() -> String {
    "0 0 9 * * Mon".into()
}

fn default_notifications_folder() -> String {
    "Board notifications".into()
}

fn default_imap_port() -> u16 {
    993
}
fn default_imap_tls() -> String {
    "tls".into()
}
fn default_imap_folder() -> String {
    "INBOX".into()
}
fn default_imap_processed() -> String {
    "Processed".into()
}
fn default_imap_quarantine() -> String {
    "Quarantine".into()
}
/// The default `idle_seconds`: 9 minutes, well inside firewall/NAT idle timeouts.
pub const DEFAULT_IDLE_SECONDS: u64 = 9 * 60;
/// The longest IDLE RFC 2177 allows before the server may drop the client (29 minutes).
pub const MAX_IDLE_SECONDS: u64 = 29 * 60;
fn default_imap_idle() -> u64 {
    DEFAULT_IDLE_SECONDS
}
fn default_imap_timeout() -> u64 {
    30
}

/// Whether `host` names this machine: `localhost`, an address in 127.0.0.0/8, or ::1 (also written as an
/// IPv4-mapped IPv6 address). Only such a host may be reached without TLS.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The problems in a board's `[imap]` table, each with its key.
fn check_imap(f: &Path, imap: &ImapSettings, errors: &mut Vec<Issue>) {
    if imap.host.trim().is_empty() {
        errors.push(issue(
            f,
            "imap.host",
            "give the IMAP server's name, e.g. \"imap.example.gov.uk\"",
        ));
    }
    match imap.tls.as_str() {
        "tls" => {}
        "none" if is_loopback_host(&imap.host) => {}
        "none" => errors.push(issue(
            f,
            "imap.tls",
            format!(
                "\"none\" sends the mailbox password and every message unencrypted, so it is allowed only for a \
                 server on this machine (127.0.0.1, ::1 or localhost), but imap.host is {:?}: remove the tls line \
                 to use TLS (port 993)",
                imap.host
            ),
        )),
        other => errors.push(issue(
            f,
            "imap.tls",
            format!(
                "{other:?} is not a choice: use \"tls\" (the default) or \"none\" (only for a server on this machine)"
            ),
        )),
    }
    if imap.username.trim().is_empty() {
        errors.push(issue(f, "imap.username", "give the mailbox's user name"));
    }
    for (key, message) in check_auth("imap", &imap.auth, imap.oauth2.as_ref()) {
        errors.push(issue(f, key, message));
    }
    for (key, name) in [
        ("imap.folder", &imap.folder),
        ("imap.processed_folder", &imap.processed_folder),
        ("imap.quarantine_folder", &imap.quarantine_folder),
    ] {
        if name.trim().is_empty() {
            errors.push(issue(f, key, "give a folder name"));
        }
    }
    for (key, name) in [
        ("imap.processed_folder", &imap.processed_folder),
        ("imap.quarantine_folder", &imap.quarantine_folder),
    ] {
        if name == &imap.folder {
            errors.push(issue(
                f,
                key,
                format!("is {name:?}, the watched folder itself: messages moved there would be read again for ever; use another folder"),
            ));
        }
    }
    if imap.idle_seconds == 0 || imap.idle_seconds > MAX_IDLE_SECONDS {
        errors.push(issue(
            f,
            "imap.idle_seconds",
            format!(
                "{} is out of range: use 1 to {MAX_IDLE_SECONDS} (29 minutes, the longest RFC 2177 lets an IDLE last); \
                 the default, {DEFAULT_IDLE_SECONDS}, stays well inside firewall/NAT idle timeouts",
                imap.idle_seconds
            ),
        ));
    }
    if imap.timeout_seconds == 0 {
        errors.push(issue(
            f,
            "imap.timeout_seconds",
            "must be at least 1 (seconds to wait for each answer)",
        ));
    }
}

fn default_reply_cap() -> u32 {
    20
}

fn default_timezone() -> String {
    "Europe/London".into()
}
fn default_region() -> String {
    "england-and-wales".into()
}
fn default_hours() -> WorkingHours {
    WorkingHours {
        start: "09:00".into(),
        end: "17:00".into(),
    }
}
fn default_shared() -> Vec<String> {
    vec!["nhs.net".into()]
}

/// A board ready to use: its settings, its policy and the rules built from both.
#[derive(Debug, Clone)]
pub struct Board {
    pub settings: BoardSettings,
    pub rules: BoardRules,
    /// `settings.digest.schedule`, parsed.
    pub digest_schedule: cron::Schedule,
    pub board_file: PathBuf,
    pub policy_file: PathBuf,
}

impl Board {
    pub fn id(&self) -> &str {
        &self.settings.id
    }

    /// Who gets the board's digest: the roles `[digest] to` names, or the board's manager by default.
    pub fn digest_recipients(&self) -> Vec<&Contact> {
        let roles: Vec<Role> = if self.settings.digest.to.is_empty() {
            [
                Role::BusinessManager,
                Role::StrategicSafeguardingServiceManager,
                Role::BusinessOffice,
            ]
            .into_iter()
            .find(|r| self.settings.roles.contains_key(r))
            .into_iter()
            .collect()
        } else {
            self.settings.digest.to.clone()
        };
        roles.iter().filter_map(|r| self.settings.roles.get(r)).collect()
    }
    pub fn policy(&self) -> &Policy {
        &self.rules.policy
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Settings,
    pub boards: Vec<Board>,
    /// Things that work but need an operator's attention (placeholder addresses…).
    pub warnings: Vec<Issue>,
}

impl Config {
    pub fn board(&self, id: &str) -> Option<&Board> {
        self.boards.iter().find(|b| b.settings.id == id)
    }

    /// The board, or an error listing the ones there are.
    pub fn board_or_err(&self, id: &str) -> anyhow::Result<&Board> {
        self.board(id).ok_or_else(|| {
            anyhow::anyhow!(
                "no board {id:?} is configured; the boards are: {}",
                self.boards
                    .iter()
                    .map(|b| b.settings.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

fn issue(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        file: file.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(file: &Path, errors: &mut Vec<Issue>) -> Option<T> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(issue(file, "", format!("cannot be read ({e})")));
            return None;
        }
    };
    match toml::from_str::<T>(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text.get(..s.start).unwrap_or(&text).matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_default();
            errors.push(issue(file, at, msg));
            None
        }
    }
}

fn toml_files(dir: &Path, errors: &mut Vec<Issue>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            v.sort();
            v
        }
        Err(e) => {
            errors.push(issue(
                dir,
                "",
                format!("cannot be read ({e}); check policies_dir and boards_dir"),
            ));
            Vec::new()
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        tidy(&base.join(path))
    }
}

/// `config/../data/x` as `data/x`: `..` folded into the folder before it, where there is one.
fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// Load the configuration at `path`, reading the process environment for overrides.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// Load the configuration at `path`, with `env` standing for the environment.
pub fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file: Option<SettingsFile> = if path.exists() {
        read_toml(path, &mut errors)
    } else {
        errors.push(issue(
            path,
            "",
            "does not exist: pass --config PATH or create it (see README.md)",
        ));
        None
    };
    let file = file.unwrap_or(SettingsFile {
        database: None,
        mailbox: None,
        outbox: None,
        policies_dir: None,
        boards_dir: None,
        templates_dir: None,
        secret_file: None,
        smtp: None,
        http: None,
        reading: None,
    });

    let mut url = file
        .database
        .and_then(|d| d.url)
        .map(|s| s.0)
        .unwrap_or_else(|| "sqlite:../data/escalation-bot.sqlite3".into());
    let mut url_base = base.clone();
    if let Some(u) = env("ESCALATION_BOT_DATABASE_URL") {
        url = u;
        url_base = PathBuf::from(".");
    } else if let Some(f) = env("ESCALATION_BOT_DATABASE_URL_FILE") {
        match std::fs::read_to_string(&f) {
            Ok(u) => {
                url = u.trim().to_string();
                url_base = PathBuf::from(".");
            }
            Err(e) => errors.push(issue(
                Path::new(&f),
                "ESCALATION_BOT_DATABASE_URL_FILE",
                format!("cannot be read ({e})"),
            )),
        }
    }
    let database = match Database::parse(&url, &url_base) {
        Ok(d) => d,
        Err(m) => {
            errors.push(issue(path, "database.url", m));
            Database::Sqlite(tidy(&base.join("../data/escalation-bot.sqlite3")))
        }
    };
    let settings = Settings {
        database,
        mailbox_dir: resolve(
            &base,
            file.mailbox
                .and_then(|m| m.path)
                .as_deref()
                .unwrap_or("../data/mailbox"),
        ),
        outbox_dir: resolve(
            &base,
            file.outbox.and_then(|m| m.path).as_deref().unwrap_or("../data/outbox"),
        ),
        policies_dir: resolve(&base, file.policies_dir.as_deref().unwrap_or("policies")),
        boards_dir: resolve(&base, file.boards_dir.as_deref().unwrap_or("boards")),
        templates_dir: file.templates_dir.as_deref().map(|d| resolve(&base, d)),
        secret_file: resolve(&base, file.secret_file.as_deref().unwrap_or("../data/secret")),
        smtp: file.smtp.map(|mut s| {
            if let Some(p) = env("ESCALATION_BOT_SMTP_PASSWORD") {
                s.password = Some(Secret(p));
            }
            if let Some(o) = s.oauth2.as_mut() {
                o.resolve_files(&base);
            }
            s
        }),
        http: file.http,
        reading: file.reading.unwrap_or_default(),
    };
    if settings.reading.budget_ms == 0 {
        errors.push(issue(
            path,
            "reading.budget_ms",
            "must be at least 1 (milliseconds; the default, 5000, is five seconds)",
        ));
    }
    if settings.reading.max_abandoned == 0 {
        errors.push(issue(
            path,
            "reading.max_abandoned",
            "must be at least 1: with none, a message that overran would stop all reading",
        ));
    }
    if let Some(h) = &settings.http {
        if h.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(issue(
                path,
                "http.listen",
                format!("{:?} is not an address and port: use e.g. \"127.0.0.1:9187\"", h.listen),
            ));
        }
        if h.unhealthy_after_seconds == 0 {
            errors.push(issue(path, "http.unhealthy_after_seconds", "must be at least 1"));
        }
    }
    if let Some(s) = &settings.smtp {
        for (key, message) in check_auth("smtp", &s.auth, s.oauth2.as_ref()) {
            errors.push(issue(path, key, message));
        }
        if s.auth == "oauth2" && s.username.as_deref().unwrap_or_default().trim().is_empty() {
            errors.push(issue(
                path,
                "smtp.username",
                "auth = \"oauth2\" logs in as a mailbox: give the address mail is sent as",
            ));
        }
    }

    // Policies, keyed by id.
    let mut policies: BTreeMap<String, (Policy, PathBuf)> = BTreeMap::new();
    for f in toml_files(&settings.policies_dir, &mut errors) {
        let Some(policy) = read_toml::<Policy>(&f, &mut errors) else {
            continue;
        };
        for p in policy.validate() {
            errors.push(issue(&f, p.key, p.message));
        }
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if stem != policy.id {
            errors.push(issue(
                &f,
                "id",
                format!("is {:?} but the file is named {stem}.toml: make them match", policy.id),
            ));
        }
        if let Some((_, other)) = policies.get(&policy.id) {
            errors.push(issue(
                &f,
                "id",
                format!("{:?} is also the id of {}", policy.id, other.display()),
            ));
            continue;
        }
        policies.insert(policy.id.clone(), (policy, f));
    }

    let mut boards = Vec::new();
    let mut mailboxes: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for f in toml_files(&settings.boards_dir, &mut errors) {
        let Some(mut b) = read_toml::<BoardSettings>(&f, &mut errors) else {
            continue;
        };
        // ESCALATION_BOT_IMAP_PASSWORD_BRADFORD (board id upper-cased, `-` as `_`) keeps the password out of files.
        let var = format!("ESCALATION_BOT_IMAP_PASSWORD_{}", b.id.to_uppercase().replace('-', "_"));
        if let Some(imap) = b.imap.as_mut() {
            imap.notifications_folder = b.notifications_folder.clone();
            let dir = f.parent().unwrap_or(Path::new("."));
            if let Some(o) = imap.oauth2.as_mut() {
                o.resolve_files(dir);
            }
        }
        if let (Some(imap), Some(p)) = (b.imap.as_mut(), env(&var)) {
            imap.password = Some(Secret(p));
        }
        let before = errors.len();
        if !ids.insert(b.id.clone()) {
            errors.push(issue(&f, "id", format!("board {:?} is configured twice", b.id)));
        }
        if !looks_like_email(&b.mailbox) {
            errors.push(issue(&f, "mailbox", format!("{:?} is not an email address", b.mailbox)));
        } else if let Some(other) = mailboxes.insert(b.mailbox.to_lowercase(), f.clone()) {
            errors.push(issue(
                &f,
                "mailbox",
                format!("{} is also the mailbox of {}", b.mailbox, other.display()),
            ));
        }
        if b.mailbox.to_lowercase().ends_with(".invalid") {
            warnings.push(issue(
                &f,
                "mailbox",
                format!(
                    "{} is a placeholder: set the board's real mailbox before going live",
                    b.mailbox
                ),
            ));
        }
        let tz = Tz::from_str(&b.timezone);
        if tz.is_err() {
            errors.push(issue(
                &f,
                "timezone",
                format!("{:?} is not a timezone name; use e.g. \"Europe/London\"", b.timezone),
            ));
        }
        let region = Region::from_str(&b.region);
        if let Err(e) = &region {
            errors.push(issue(&f, "region", e.clone()));
        }
        let start = parse_hhmm(&b.working_hours.start);
        let end = parse_hhmm(&b.working_hours.end);
        match (start, end) {
            (Some(s), Some(e)) if s < e => {}
            (Some(_), Some(_)) => errors.push(issue(&f, "working_hours", "start must be before end")),
            _ => errors.push(issue(
                &f,
                "working_hours",
                "use 24-hour HH:MM times, e.g. start = \"09:00\"",
            )),
        }
        if b.retention_days == 0 || b.retention_days > crate::core::retention::MAX_RETENTION_DAYS {
            errors.push(issue(
                &f,
                "retention_days",
                format!(
                    "{} is out of range: use 1 to {} (a day count, e.g. 2190 for six years)",
                    b.retention_days,
                    crate::core::retention::MAX_RETENTION_DAYS
                ),
            ));
        }
        if b.allowed_sender_domains.is_empty() {
            errors.push(issue(
                &f,
                "allowed_sender_domains",
                "list the email domains that may open cases, e.g. [\"nhs.net\", \"gov.uk\"]",
            ));
        }
        for (i, d) in b.allowed_sender_domains.iter().enumerate() {
            if d.contains('@') || !d.contains('.') || d.trim() != d {
                errors.push(issue(
                    &f,
                    format!("allowed_sender_domains[{i}]"),
                    format!("{d:?} is not a domain: write e.g. \"nhs.net\""),
                ));
            }
        }
        for (role, c) in &b.roles {
            if !role.is_board_role() {
                errors.push(issue(
                    &f,
                    format!("roles.{role}"),
                    "is taken from each case, not configured: remove it",
                ));
            }
            if !looks_like_email(&c.email) {
                errors.push(issue(
                    &f,
                    format!("roles.{role}.email"),
                    format!("{:?} is not an email address", c.email),
                ));
            } else if c.email.to_lowercase().ends_with(".invalid") {
                // Which of the policy's duties this leaves undone: their emails wait in the outbox.
                let mut broken: Vec<String> = policies
                    .get(&b.policy)
                    .map(|(p, _)| {
                        p.duties
                            .iter()
                            .filter(|d| d.notify.contains(role))
                            .map(|d| format!("the notice {}", trigger_words(&d.when)))
                            .collect()
                    })
                    .unwrap_or_default();
                // The first staff role is asked to approve records from organisations the board does not know.
                let approver = [
                    Role::BusinessManager,
                    Role::BusinessOffice,
                    Role::StrategicSafeguardingServiceManager,
                ]
                .into_iter()
                .find(|r| b.roles.contains_key(r));
                if approver == Some(*role) {
                    broken.push(
                        "the request to approve a record from an organisation the board does not know yet".into(),
                    );
                }
                let duties = if broken.is_empty() {
                    "no duty of the policy uses it".to_string()
                } else {
                    format!(
                        "until then the {} gets none of these, which wait in the outbox until the address is set and the bot restarted: {}",
                        c.name,
                        broken.join("; ")
                    )
                };
                warnings.push(issue(
                    &f,
                    format!("roles.{role}.email"),
                    format!(
                        "{} is a placeholder: set the real address before going live; {duties}",
                        c.email
                    ),
                ));
            }
        }
        // Held records and board notifications need a staff address that is not the mailbox the bot reads.
        let staff = [
            Role::BusinessManager,
            Role::BusinessOffice,
            Role::StrategicSafeguardingServiceManager,
        ];
        if !staff.iter().any(|r| b.roles.contains_key(r)) {
            warnings.push(issue(
                &f,
                "roles".to_string(),
                "no business-manager, business-office or strategic-safeguarding-service-manager role: records from organisations the board does not know yet are held for approval, and the request would go to the board mailbox the bot itself reads; add one of these roles".to_string(),
            ));
        }
        if let Some(imap) = &b.imap {
            check_imap(&f, imap, &mut errors);
        }
        if let Some(id) = &b.trusted_authserv_id {
            if id.trim().is_empty() || id.contains(|c: char| c.is_whitespace() || c == ';') {
                errors.push(issue(
                    &f,
                    "trusted_authserv_id",
                    format!(
                        "{id:?} is not an authserv-id: give the single word your mail server writes at the start of \
                         its Authentication-Results header, e.g. \"mx.example.gov.uk\", or remove the line"
                    ),
                ));
            }
        } else if b.imap.is_some() {
            warnings.push(issue(
                &f,
                "trusted_authserv_id",
                "is not set for this board's IMAP mailbox: commands that are not replies to the bot's own email to \
                 their sender are held for a CONFIRM by email, because without the mail server's \
                 Authentication-Results the bot cannot tell a forged From; set it to the authserv-id your mail \
                 server writes at the start of its Authentication-Results header (e.g. \"mx.example.gov.uk\")",
            ));
        }
        let mut dates = |list: &[String], key: &str| -> Vec<NaiveDate> {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        errors.push(issue(
                            &f,
                            format!("holidays.{key}[{i}]"),
                            format!("{s:?} is not a date: use YYYY-MM-DD"),
                        ));
                        None
                    }
                })
                .collect()
        };
        let add = dates(&b.holidays.add, "add");
        let remove = dates(&b.holidays.remove, "remove");
        let Some((policy, policy_file)) = policies.get(&b.policy) else {
            errors.push(issue(
                &f,
                "policy",
                format!(
                    "no policy {:?} in {}; the policies are: {}",
                    b.policy,
                    settings.policies_dir.display(),
                    policies.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
            continue;
        };
        for (i, duty) in policy.duties.iter().enumerate() {
            for role in duty.notify.iter().filter(|r| r.is_board_role()) {
                if !b.roles.contains_key(role) {
                    errors.push(issue(&f, format!("roles.{role}"), format!(
                        "the policy ({}, duties[{i}]) notifies the {role} but no address is set: add [roles.{role}] with name and email",
                        policy_file.display()
                    )));
                }
            }
        }
        if errors.len() > before {
            continue;
        }
        let (Ok(tz), Ok(region), Some(start), Some(end)) = (tz, region, start, end) else {
            continue;
        };
        let mut rules = BoardRules::new(
            b.id.clone(),
            policy.clone(),
            Calendar::with_adjustments(region, &add, &remove),
        );
        rules.timezone = tz;
        rules.working_day_starts = start;
        rules.working_day_ends = end;
        rules.shared_domains = b.shared_domains.clone();
        if let Some(dir_file) = &b.directory {
            let path = f.parent().map(|p| p.join(dir_file)).unwrap_or_else(|| dir_file.clone());
            match std::fs::read(&path) {
                Err(e) => {
                    errors.push(issue(
                        &f,
                        "directory",
                        format!("{} cannot be read: {e}", path.display()),
                    ));
                    continue;
                }
                Ok(bytes) => match String::from_utf8(bytes) {
                    Err(_) => {
                        errors.push(issue(
                            &f,
                            "directory",
                            format!("{} is not UTF-8 text: save it as \"CSV UTF-8\"", path.display()),
                        ));
                        continue;
                    }
                    Ok(text) => match crate::core::directory::parse_csv(&text) {
                        Ok(entries) => rules.directory = entries,
                        Err(problems) => {
                            for p in problems {
                                errors.push(issue(&f, "directory", format!("{}: {p}", path.display())));
                            }
                            continue;
                        }
                    },
                },
            }
        }
        let digest_schedule = match cron::Schedule::from_str(&b.digest.schedule) {
            Ok(s) => s,
            Err(e) => {
                errors.push(issue(
                    &f,
                    "digest.schedule",
                    format!(
                        "{:?} is not a schedule ({e}): write seconds, minutes, hours, day of month, month, day of week, e.g. \"0 0 9 * * Mon\" for Mondays at 09:00",
                        b.digest.schedule
                    ),
                ));
                continue;
            }
        };
        for role in &b.digest.to {
            if !b.roles.contains_key(role) {
                errors.push(issue(
                    &f,
                    "digest.to",
                    format!("the digest goes to the {role}, but no address is set: add [roles.{role}]"),
                ));
            }
        }
        boards.push(Board {
            settings: b,
            rules,
            digest_schedule,
            board_file: f,
            policy_file: policy_file.clone(),
        });
    }
    if boards.is_empty() && errors.is_empty() {
        errors.push(issue(
            &settings.boards_dir,
            "",
            "no board is configured: add a board file (see config/boards/)",
        ));
    }
    if errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            settings,
            boards,
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}
