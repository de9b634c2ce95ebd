//! Real mail servers for the end-to-end tests, started per test on free loopback ports: Dovecot (IMAP with
//! IDLE, and LMTP for delivery) in a temporary folder, and an SMTP server (tests/support/smtp_server.py,
//! aiosmtpd) that delivers into Dovecot over LMTP. Both stop when this is dropped. `scripts/test.sh`
//! installs them (Debian's dovecot-imapd and dovecot-lmtpd; aiosmtpd from PyPI).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

pub const PASSWORD: &str = "test-password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The test SMTP server, delivering to Dovecot's LMTP; with `oauth_port`, taking only XOAUTH2. On `port`,
/// or on a free port; started again (on another free port, when none was asked for) when it does not come
/// up, as when another test took the port between `free_port` and the bind. Its errors go to `log`.
fn start_smtp(port: Option<u16>, lmtp_port: u16, oauth_port: Option<u16>, log: &std::path::Path) -> (Child, u16) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let what = format!("the SMTP server (its errors are in {})", log.display());
    start_until_ready(&what, || {
        let smtp_port = port.unwrap_or_else(free_port);
        if port.is_none() {
            // The server's control folder is named by its port: what an earlier server on this port left
            // there (a refusal a failed test never took back, an old auth log) is not this server's.
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("escbot-smtp-{smtp_port}")));
        }
        let mut smtp = Command::new("python3");
        smtp.arg(&script).args([smtp_port.to_string(), lmtp_port.to_string()]);
        if let Some(port) = oauth_port {
            smtp.args(["--oauth2".to_string(), format!("http://127.0.0.1:{port}/introspect")]);
        }
        let errors = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the SMTP server's log");
        let child = smtp
            .stdout(Stdio::piped())
            .stderr(errors)
            .spawn()
            .expect("the SMTP server starts (scripts/test.sh installs aiosmtpd)");
        (child, smtp_port)
    })
}

/// Start a child that prints "ready" once it listens (`spawn` gives the child and its port); started again,
/// on another port, when it does not (another test took the port between `free_port` and the bind).
fn start_until_ready(what: &str, mut spawn: impl FnMut() -> (Child, u16)) -> (Child, u16) {
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        let (mut child, port) = spawn();
        let mut first = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut first);
        }
        if first.trim() == "ready" {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not start");
}

/// Whether this Dovecot answers on `port` with its own `greeting` (not another test's server that took the
/// port), waiting up to 20 s while it is still running.
fn dovecot_is_up(dovecot: &mut Child, port: u16, greeting: &str) -> bool {
    use std::io::Read;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if !matches!(dovecot.try_wait(), Ok(None)) {
            return false;
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).unwrap_or(0);
            return String::from_utf8_lossy(&buf[..n]).contains(greeting);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub struct MailServers {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: u16,
    /// With [`MailServers::start_oauth2`]: the token and introspection server's port.
    pub oauth_port: Option<u16>,
    dovecot: Child,
    smtp: Child,
    oauth: Option<Child>,
}

/// The app registrations the OAuth2 test server knows: client id, secret, and the mailbox its tokens open.
pub const OAUTH_CLIENTS: &str = r#"{"bot-bradford": {"secret": "s3cret-bradford", "username": "bsab"},
 "bot-unpermitted": {"secret": "s3cret-other", "username": "someone-else"}}"#;

impl MailServers {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// [`MailServers::start`], with `dovecot_extra` added at the end of Dovecot's configuration (e.g.
    /// `imap_capability = IMAP4rev1 IDLE` for a server without MOVE or UIDPLUS).
    pub fn start_with(dovecot_extra: &str) -> Self {
        Self::start_full(dovecot_extra, false)
    }

    /// Mail servers that take OAuth2 (SASL XOAUTH2) as Microsoft 365 does: a token endpoint and an
    /// introspection endpoint (tests/support/oauth_server.py, clients [`OAUTH_CLIENTS`]), Dovecot's oauth2
    /// passdb asking it about every token (password login still works), and the SMTP server taking only
    /// AUTH XOAUTH2.
    pub fn start_oauth2() -> Self {
        Self::start_full("", true)
    }

    fn start_full(dovecot_extra: &str, oauth2: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().to_path_buf();
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let (oauth, oauth_port) = if oauth2 {
            std::fs::write(d.join("clients.json"), OAUTH_CLIENTS).expect("clients");
            let (child, port) = start_until_ready("the OAuth2 test server", || {
                let port = free_port();
                let child = Command::new("python3")
                    .arg(here.join("tests/support/oauth_server.py"))
                    .arg(port.to_string())
                    .arg(d.join("clients.json"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("the OAuth2 test server starts");
                (child, port)
            });
            (Some(child), Some(port))
        } else {
            (None, None)
        };
        let auth = match oauth_port {
            Some(port) => {
                std::fs::write(
                    d.join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_url = http://127.0.0.1:{port}/introspect\nintrospection_mode = post\n\
                         force_introspection = yes\nusername_attribute = username\nusername_format = %Ln\n\
                         active_attribute = active\nactive_value = true\ntimeout_msecs = 10000\n"
                    ),
                )
                .expect("oauth2 conf");
                format!(
                    "auth_mechanisms = plain login xoauth2 oauthbearer\nauth_cache_size = 0\nauth_failure_delay = 0\n\
                     passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n  args = scheme=PLAIN username_format=%n {d}/users\n}}\n\
                     passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/dovecot-oauth2.conf.ext\n}}\n\
                     # No growing delay after failed logins from this machine: the tests fail logins on purpose.\n\
                     service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n",
                    d = d.display()
                )
            }
            None => format!(
                "auth_mechanisms = plain login\npassdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%n {d}/users\n}}\n",
                d = d.display()
            ),
        };
        let id = |flag: &str| -> String {
            let out = Command::new("id").args([flag, "dovecot"]).output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for sub in ["mail", "home", "state", "run"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let users: String = ["bsab", "nia.nurse", "sam.social"]
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}\n"))
            .collect();
        std::fs::write(d.join("users"), users).expect("write users");
        let _ = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(d.join("mail"))
            .arg(d.join("home"))
            .status();
        // Dovecot on two free ports; chosen again when it does not come up on them (another test took one
        // between `free_port` and Dovecot's bind). Its own greeting tells it apart from another test's server.
        let mut attempt = 0;
        let (dovecot, imap_port, lmtp_port) = loop {
            attempt += 1;
            let (imap_port, lmtp_port) = (free_port(), free_port());
            let conf = format!(
                r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = escbot-{imap_port}
login_greeting = escbot-{imap_port} ready
protocols = imap lmtp
listen = 127.0.0.1
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
{auth}
mail_location = maildir:{d}/mail/%n
first_valid_uid = 1
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%n allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  # Local parts are matched without regard to case, as real mail servers do: BSAB@… reaches user bsab.
  auth_username_format = %Ln
}}
"#,
                d = d.display()
            );
            let conf = format!("{conf}{dovecot_extra}\n");
            std::fs::write(d.join("dovecot.conf"), conf).expect("write dovecot.conf");
            let mut dovecot = Command::new("dovecot")
                .args(["-F", "-c"])
                .arg(d.join("dovecot.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dovecot starts (scripts/test.sh installs it)");
            if dovecot_is_up(&mut dovecot, imap_port, &format!("escbot-{imap_port} ready")) {
                break (dovecot, imap_port, lmtp_port);
            }
            let _ = dovecot.kill();
            let _ = dovecot.wait();
            assert!(
                attempt < 4,
                "Dovecot did not start: {}",
                std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
            );
        };
        let (smtp, smtp_port) = start_smtp(None, lmtp_port, oauth_port, &d.join("smtp.log"));
        MailServers {
            dir,
            imap_port,
            lmtp_port,
            smtp_port,
            oauth_port,
            dovecot,
            smtp,
            oauth,
        }
    }

    /// Restart the SMTP server (its connections drop, as when a relay restarts).
    pub fn restart_smtp(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.smtp.id().to_string()])
            .status();
        let _ = self.smtp.wait();
        let log = self.dir.path().join("smtp.log");
        self.smtp = start_smtp(Some(self.smtp_port), self.lmtp_port, self.oauth_port, &log).0;
    }

    /// POST `body` to the OAuth2 test server's `path` (its control endpoints); the answer's body.
    pub fn oauth_post(&self, path: &str, body: &str) -> String {
        self.oauth_request("POST", path, body)
    }

    /// GET the OAuth2 test server's `/control/stats`.
    pub fn oauth_stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.oauth_request("GET", "/control/stats", "")).expect("stats JSON")
    }

    fn oauth_request(&self, method: &str, path: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let port = self.oauth_port.expect("started with start_oauth2");
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        c.read_to_string(&mut out).expect("read");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// A daemon configuration in `dir`: the shipped policies and boards, Bradford's mailbox on this Dovecot
    /// (user `bsab`), mail out through this SMTP server, and the database `database` (relative to the
    /// configuration folder, e.g. `sqlite:../data/db.sqlite3`). Returns the main configuration file.
    pub fn daemon_config(&self, dir: &std::path::Path, database: &str) -> PathBuf {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = dir.join("config");
        for sub in ["policies", "boards"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
            for entry in std::fs::read_dir(here.join("config").join(sub)).expect("config") {
                let p = entry.expect("entry").path();
                std::fs::copy(&p, root.join(sub).join(p.file_name().expect("name"))).expect("copy");
            }
        }
        let bradford = root.join("boards/bradford.toml");
        // One invented practitioner sends the whole backlog here: the rate limits a live board keeps
        // against floods are raised for these tests and the benchmark.
        let mut text = std::fs::read_to_string(&bradford)
            .expect("read")
            .replace("per_address = 40", "per_address = 1000000")
            .replace("per_domain = 300", "per_domain = 1000000")
            .replace("overall = 3000", "overall = 1000000");
        text.push_str(&format!(
            "\n[imap]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"bsab\"\npassword = \"{PASSWORD}\"\nidle_seconds = 60\ntimeout_seconds = 10\n",
            self.imap_port
        ));
        std::fs::write(&bradford, text).expect("write");
        let main = root.join("default.toml");
        std::fs::write(
            &main,
            format!(
                "[database]\nurl = \"{database}\"\n[mailbox]\npath = \"../data/mailbox\"\n[outbox]\npath = \"../data/outbox\"\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout_seconds = 30\n",
                self.smtp_port
            ),
        )
        .expect("write");
        main
    }

    /// A logged-in IMAP session as `user`.
    pub async fn session(&self, user: &str) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("connect");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting").expect("greeting");
        client.login(user, PASSWORD).await.map_err(|(e, _)| e).expect("login")
    }

    /// Put `raw` into `user`'s INBOX, as a delivery would.
    pub async fn append(&self, user: &str, raw: &[u8]) {
        let mut s = self.session(user).await;
        s.append("INBOX", None, None, raw).await.expect("APPEND");
        s.logout().await.ok();
    }

    /// The messages in `user`'s `folder` (empty when the folder does not exist).
    pub async fn messages(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let mut s = self.session(user).await;
        let Ok(mb) = s.select(folder).await else {
            return Vec::new();
        };
        if mb.exists == 0 {
            s.logout().await.ok();
            return Vec::new();
        }
        let fetched: Vec<_> = s
            .fetch("1:*", "BODY.PEEK[]")
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("fetch");
        let out = fetched.iter().filter_map(|f| f.body().map(<[u8]>::to_vec)).collect();
        s.logout().await.ok();
        out
    }

    /// How many messages `user`'s `folder` holds.
    pub async fn count(&self, user: &str, folder: &str) -> u32 {
        let mut s = self.session(user).await;
        let n = s.select(folder).await.map(|m| m.exists).unwrap_or(0);
        s.logout().await.ok();
        n
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        for child in [Some(&mut self.smtp), Some(&mut self.dovecot), self.oauth.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        let _ = self.smtp.wait();
        let _ = self.dovecot.wait();
        if let Some(o) = self.oauth.as_mut() {
            let _ = o.wait();
        }
    }
}
