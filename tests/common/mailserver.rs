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

fn wait_for_port(port: u16, what: &str, log: &std::path::Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not start on port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct MailServers {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: u16,
    dovecot: Child,
    smtp: Child,
}

impl MailServers {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// [`MailServers::start`], with `dovecot_extra` added at the end of Dovecot's configuration (e.g.
    /// `imap_capability = IMAP4rev1 IDLE` for a server without MOVE or UIDPLUS).
    pub fn start_with(dovecot_extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().to_path_buf();
        let (imap_port, lmtp_port, smtp_port) = (free_port(), free_port(), free_port());
        let id = |flag: &str| -> String {
            let out = Command::new("id").args([flag, "dovecot"]).output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for sub in ["mail", "home", "state", "run"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = escbot-{imap_port}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%n
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
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
        let dovecot = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts (scripts/test.sh installs it)");
        wait_for_port(imap_port, "Dovecot", &d.join("dovecot.log"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut smtp = Command::new("python3")
            .arg(script)
            .args([smtp_port.to_string(), lmtp_port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the SMTP server starts (scripts/test.sh installs aiosmtpd)");
        let mut first = String::new();
        if let Some(out) = smtp.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut first);
        }
        assert_eq!(first.trim(), "ready", "the SMTP server did not start");
        MailServers {
            dir,
            imap_port,
            lmtp_port,
            smtp_port,
            dovecot,
            smtp,
        }
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
                 [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout_seconds = 5\n",
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
        for child in [&mut self.smtp, &mut self.dovecot] {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        let _ = self.smtp.wait();
        let _ = self.dovecot.wait();
    }
}
