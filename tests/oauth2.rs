//! OAuth2 (SASL XOAUTH2) against real servers, as Microsoft 365 and NHSmail require: Dovecot with its oauth2
//! passdb and the test SMTP server taking only AUTH XOAUTH2, both asking a local token and introspection
//! server (tests/support/oauth_server.py) about every token. And `check-config --connect` against a
//! reachable and an unreachable mailbox, a wrong password, a wrong secret, a mailbox the app may not open, a
//! missing folder and a name not in DNS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::mailserver::MailServers;

/// The shipped configuration with Bradford's mailbox and the SMTP server logging in with OAuth2 (client
/// `client`, secret `secret` in a file beside the configuration).
fn oauth_config(servers: &MailServers, dir: &Path, client: &str, secret: &str) -> PathBuf {
    let main = servers.daemon_config(dir, "sqlite:../data/db.sqlite3");
    let root = main.parent().expect("config dir").to_path_buf();
    std::fs::write(root.join("client-secret.txt"), format!("{secret}\n")).expect("secret");
    let token_url = format!(
        "http://127.0.0.1:{}/westshire.example/oauth2/v2.0/token",
        servers.oauth_port.expect("oauth")
    );
    let oauth = format!(
        "tenant = \"westshire.example\"\nclient_id = \"{client}\"\nclient_secret_file = \"{{}}\"\ntoken_url = \"{token_url}\"\n"
    );
    let bradford = root.join("boards/bradford.toml");
    let text = std::fs::read_to_string(&bradford).expect("read").replace(
        &format!("password = \"{}\"\n", common::mailserver::PASSWORD),
        "auth = \"oauth2\"\n",
    );
    std::fs::write(
        &bradford,
        format!("{text}\n[imap.oauth2]\n{}", oauth.replace("{}", "../client-secret.txt")),
    )
    .expect("write");
    let text = std::fs::read_to_string(&main).expect("read");
    std::fs::write(
        &main,
        format!(
            "{text}auth = \"oauth2\"\nusername = \"bsab\"\n[smtp.oauth2]\n{}",
            oauth.replace("{}", "client-secret.txt")
        ),
    )
    .expect("write");
    main
}

fn escalation(n: usize) -> Vec<u8> {
    std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("fixture")
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<oauth-{n}@fixtures.nhs.net>"),
        )
        .into_bytes()
}

async fn wait_for_count(servers: &MailServers, user: &str, folder: &str, n: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if servers.count(user, folder).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Drop every IMAP connection of `user`, as a server does when it restarts or a token's session ends.
fn kick(servers: &MailServers, user: &str) {
    let ok = Command::new("doveadm")
        .arg("-c")
        .arg(servers.dir.path().join("dovecot.conf"))
        .args(["kick", user])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("doveadm");
    assert!(ok.success(), "doveadm kick {user}");
}

fn smtp_auth_log(servers: &MailServers) -> String {
    std::fs::read_to_string(
        std::env::temp_dir()
            .join(format!("escbot-smtp-{}", servers.smtp_port))
            .join("auth-log"),
    )
    .unwrap_or_default()
}

fn wait_until_count(d: &mut Daemon, text: &str, n: usize, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if d.count(text) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the daemon said {text:?} fewer than {n} times:\n{}", d.said.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_reads_and_sends_and_an_expired_or_revoked_token_is_replaced_on_reconnect() {
    let mut servers = MailServers::start_oauth2();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = oauth_config(&servers, dir.path(), "bot-bradford", "s3cret-bradford");
    let mut d = Daemon::start(&config, &[], "watching the IMAP mailbox");

    // A good token: the escalation is read over IMAP and the acknowledgement sent over SMTP, both XOAUTH2.
    servers.append("bsab", &escalation(1)).await;
    let arrived = wait_for_count(&servers, "nia.nurse", "INBOX", 1, Duration::from_secs(30)).await;
    let _ = d.count("");
    assert!(arrived, "no acknowledgement arrived:\n{}", d.said.join("\n"));
    let stats = servers.oauth_stats();
    assert_eq!(
        stats["issued"], 1,
        "one token for the app, shared by IMAP, SMTP and retention: {stats}"
    );
    assert!(
        stats["scopes"]
            .to_string()
            .contains("https://outlook.office365.com/.default"),
        "{stats}"
    );
    assert!(
        smtp_auth_log(&servers).contains("ok bsab"),
        "{}",
        smtp_auth_log(&servers)
    );

    // The tokens expire early (the server says so; the bot still believes them good), and the IMAP
    // connection drops mid-IDLE: the reconnect is refused once, the token dropped, a new one fetched, and
    // the mailbox watched again. The SMTP login refused with the old token is retried at once with a new one.
    servers.oauth_post("/control/expire_all", "");
    kick(&servers, "bsab");
    wait_until_count(&mut d, "watching the IMAP mailbox", 2, Duration::from_secs(30));
    assert!(d.count("refused the OAuth2 token") >= 1, "{}", d.said.join("\n"));
    servers.append("bsab", &escalation(2)).await;
    let arrived = wait_for_count(&servers, "nia.nurse", "INBOX", 2, Duration::from_secs(30)).await;
    let _ = d.count("");
    assert!(
        arrived,
        "no acknowledgement after the tokens expired:\n{}",
        d.said.join("\n")
    );
    // One new token, which SMTP takes up too.
    assert_eq!(servers.oauth_stats()["issued"], 2);
    // The other party's copy has gone too, before the relay restarts below.
    assert!(wait_for_count(&servers, "sam.social", "INBOX", 2, Duration::from_secs(30)).await);

    // Revoked while the IMAP session lasts, and the SMTP relay restarts: the sender's next connection
    // logs in with the revoked token, is refused (535), and tries again at once with a new token. Then the
    // IMAP connection drops and comes back with that new token. Nothing lost.
    servers.oauth_post("/control/revoke_all", "");
    servers.restart_smtp();
    servers.append("bsab", &escalation(3)).await;
    let arrived = wait_for_count(&servers, "nia.nurse", "INBOX", 3, Duration::from_secs(30)).await;
    let _ = d.count("");
    assert!(
        arrived,
        "no acknowledgement after the tokens were revoked:\n{}",
        d.said.join("\n")
    );
    assert!(
        wait_for_count(&servers, "bsab", "Processed", 3, Duration::from_secs(30)).await,
        "three messages in Processed"
    );
    assert_eq!(servers.count("bsab", "Processed").await, 3, "each message once");
    assert!(
        smtp_auth_log(&servers).contains("fail bsab"),
        "{}",
        smtp_auth_log(&servers)
    );
    assert!(d.count("the SMTP server refused the OAuth2 token; trying again with a new one") >= 1);
    kick(&servers, "bsab");
    wait_until_count(&mut d, "watching the IMAP mailbox", 3, Duration::from_secs(30));
    assert_eq!(servers.oauth_stats()["issued"], 3);
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "the daemon is still running"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_said_plainly_and_retried_until_it_is_put_right_without_a_restart() {
    let servers = MailServers::start_oauth2();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = oauth_config(&servers, dir.path(), "bot-bradford", "not-the-secret");
    let mut d = Daemon::start(&config, &[], "escalation-bot is running");
    d.wait_for("the client secret is wrong", Duration::from_secs(20));
    // Retried with backoff, never a crash loop: the process stays up and says it again.
    wait_until_count(&mut d, "the client secret is wrong", 2, Duration::from_secs(20));
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "the daemon is still running"
    );
    assert_eq!(d.count("panicked"), 0);
    // The operator corrects the secret file: the next retry logs in.
    std::fs::write(
        config.parent().expect("dir").join("client-secret.txt"),
        "s3cret-bradford\n",
    )
    .expect("write");
    d.wait_for("watching the IMAP mailbox", Duration::from_secs(90));
    let (status, _) = d.stop();
    assert!(status.success());
}

/// `check-config --connect` with `config`: (exit success, standard output).
fn connect(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(["check-config", "--connect"])
        .output()
        .expect("check-config");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The board file's `[imap]` lines changed by `edit`.
fn edit_bradford(config: &Path, edit: impl Fn(String) -> String) {
    let f = config.parent().expect("dir").join("boards/bradford.toml");
    let text = std::fs::read_to_string(&f).expect("read");
    std::fs::write(&f, edit(text)).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_connect_says_in_plain_words_what_is_wrong() {
    let servers = MailServers::start_oauth2();

    // Reachable, with OAuth2: the folders are listed and the bot's own are created.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = oauth_config(&servers, dir.path(), "bot-bradford", "s3cret-bradford");
    let (ok, out) = connect(&config);
    assert!(ok, "{out}");
    assert!(out.contains("OK    board bradford mailbox: IMAP 127.0.0.1:"), "{out}");
    assert!(out.contains("(OAuth2); folders: "), "{out}");
    assert!(
        out.contains("created: Processed, Quarantine, Board notifications"),
        "{out}"
    );
    assert!(out.contains("OK    SMTP: 127.0.0.1:"), "{out}");
    assert!(out.contains("EHLO and AUTH accepted"), "{out}");
    assert!(out.contains("OK    store (SQLite at"), "{out}");
    assert_eq!(servers.count("bsab", "Quarantine").await, 0, "the folder exists now");
    // No mail was sent.
    assert_eq!(servers.count("nia.nurse", "INBOX").await, 0);
    let (ok, out) = connect(&config);
    assert!(
        ok && !out.contains("created:"),
        "the second time nothing is created: {out}"
    );

    // A wrong client secret.
    std::fs::write(config.parent().expect("dir").join("client-secret.txt"), "nope").expect("write");
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  board bradford mailbox: OAuth2 token for IMAP: the client secret is wrong"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  SMTP: OAuth2 token for SMTP: the client secret is wrong"),
        "{out}"
    );
    assert!(out.contains("connection checks failed"), "{out}");

    // An app registration without permission on this mailbox (its tokens are for another).
    let dir = tempfile::tempdir().expect("temp dir");
    let config = oauth_config(&servers, dir.path(), "bot-unpermitted", "s3cret-other");
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("refused the OAuth2 token for bsab"), "{out}");
    assert!(out.contains("no permission on this mailbox"), "{out}");

    // A password login with the wrong password.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = servers.daemon_config(dir.path(), "sqlite:../data/db.sqlite3");
    edit_bradford(&config, |t| t.replace(common::mailserver::PASSWORD, "wrong-password"));
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("refused the user name or password for bsab"), "{out}");

    // A missing folder.
    edit_bradford(&config, |t| {
        t.replace("wrong-password", common::mailserver::PASSWORD)
            .replace("[imap]\n", "[imap]\nfolder = \"Escalations\"\n")
    });
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the folder \"Escalations\" (imap.folder) does not exist"),
        "{out}"
    );

    // Unreachable: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    edit_bradford(&config, |t| {
        t.replace("folder = \"Escalations\"\n", "")
            .replace(&format!("port = {}", servers.imap_port), &format!("port = {closed}"))
    });
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("connection refused"), "{out}");

    // A name not in DNS (TLS, as any server not on this machine must be).
    edit_bradford(&config, |t| {
        t.replace("host = \"127.0.0.1\"", "host = \"imap.westshire.invalid\"")
            .replace(&format!("port = {closed}"), "port = 993")
            .replace("tls = \"none\"\n", "")
    });
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("is not found in DNS"), "{out}");
}

/// A self-signed certificate and its RSA key (PKCS#8 PEM) in `dir`, as an app registration's certificate
/// credential: (certificate, key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=escalation-bot test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(ok.success());
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_instead_of_a_secret_signs_a_client_assertion_the_token_endpoint_accepts() {
    let servers = MailServers::start_oauth2();
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(dir.path(), "registered");
    let (other_cert, other_key) = certificate(dir.path(), "unregistered");
    servers.oauth_post(
        "/control/clients",
        &serde_json::json!({"bot-cert": {"certificate": cert, "username": "bsab"}}).to_string(),
    );
    let config = oauth_config(&servers, dir.path(), "bot-cert", "unused");
    let with_certificate = |cert: &Path, key: &Path| {
        for f in [
            config.clone(),
            config.parent().expect("dir").join("boards/bradford.toml"),
        ] {
            let text = std::fs::read_to_string(&f).expect("read");
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    !l.starts_with("client_secret_file")
                        && !l.starts_with("client_certificate_file")
                        && !l.starts_with("client_private_key_file")
                })
                .collect();
            let mut text = kept.join("\n");
            text = text.replace(
                "client_id = \"bot-cert\"",
                &format!(
                    "client_id = \"bot-cert\"\nclient_certificate_file = \"{}\"\nclient_private_key_file = \"{}\"",
                    cert.display(),
                    key.display()
                ),
            );
            std::fs::write(&f, text + "\n").expect("write");
        }
    };
    with_certificate(&cert, &key);
    let (ok, out) = connect(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("OK    board bradford mailbox: IMAP 127.0.0.1:") && out.contains("OK    SMTP"),
        "{out}"
    );
    assert_eq!(servers.oauth_stats()["issued"], 1, "one token for IMAP and SMTP");
    // A certificate the app registration does not hold.
    with_certificate(&other_cert, &other_key);
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("the certificate's signature was refused"), "{out}");
    assert!(out.contains("AADSTS700027"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_connect_says_when_the_servers_certificate_is_not_trusted() {
    // Dovecot with IMAPS on a certificate no public authority signed (as a TLS-inspecting proxy or a
    // misconfigured server presents).
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(certs.path(), "self-signed");
    let imaps = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    for f in [&cert, &key] {
        let _ = Command::new("chmod").arg("644").arg(f).status();
    }
    let _ = Command::new("chmod").arg("755").arg(certs.path()).status();
    let servers = MailServers::start_with(&format!(
        "ssl = yes\nssl_cert = <{}\nssl_key = <{}\nservice imap-login {{\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n  }}\n}}\n",
        cert.display(),
        key.display()
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = servers.daemon_config(dir.path(), "sqlite:../data/db.sqlite3");
    edit_bradford(&config, |t| {
        t.replace(&format!("port = {}", servers.imap_port), &format!("port = {imaps}"))
            .replace("tls = \"none\"\n", "")
    });
    let (ok, out) = connect(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  board bradford mailbox: the TLS connection to 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("certificate is not trusted"), "{out}");
}
