//! End to end, against real servers started by the harness (tests/common/mailserver.rs): Dovecot for IMAP
//! (with IDLE) and delivery, an SMTP server delivering into Dovecot, SQLite, and the real binary.
//! - A message appended to the board's INBOX becomes a case, and its acknowledgement arrives in the
//!   sender's own mailbox, inside two seconds.
//! - In one batch, good messages go to the Processed folder and an unreadable one to Quarantine.
//! - The daemon killed mid-batch and restarted leaves no duplicate case or acknowledgement, and loses nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::mailserver::MailServers;

fn daemon_config(servers: &MailServers, dir: &Path) -> PathBuf {
    servers.daemon_config(dir, "sqlite:../data/db.sqlite3")
}

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Start the real binary and wait until it watches Bradford's IMAP mailbox.
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("ESCALATION_BOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let d = Daemon { child, lines };
        d.wait_for("watching the IMAP mailbox", Duration::from_secs(30));
        d
    }

    fn wait_for(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < limit {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
        }
        panic!("the daemon never said {text:?}; it said:\n{}", seen.join("\n"));
    }

    fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A test that fails leaves no daemon running to slow the tests after it.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn escalation(n: usize) -> Vec<u8> {
    std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("fixture")
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<e2e-{n}@fixtures.nhs.net>"),
        )
        .into_bytes()
}

fn header(raw: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find(|l| l.to_lowercase().starts_with(&format!("{}:", name.to_lowercase())))
        .map(|l| l[name.len() + 1..].trim().to_string())
        .unwrap_or_default()
}

/// (emails queued, sent, with an error) in the daemon's SQLite outbox.
async fn outbox_state(db: &Path) -> (i64, i64, i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("db");
    sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(sent_at IS NOT NULL), 0), COALESCE(SUM(last_error IS NOT NULL), 0) FROM outbox",
    )
    .fetch_one(&mut c)
    .await
    .expect("outbox")
}

fn case_count(config: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(["cases", "list", "--json"])
        .output()
        .expect("cases list");
    let cases: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    cases.as_array().map(Vec::len).unwrap_or(0)
}

async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_escalation_is_acknowledged_in_the_senders_mailbox() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&daemon_config(&servers, dir.path()));

    let appended = Instant::now();
    servers.append("bsab", &escalation(1)).await;
    let arrived = wait_until(Duration::from_secs(60), || async {
        servers.count("nia.nurse", "INBOX").await > 0
    })
    .await;
    let latency = appended.elapsed();
    assert!(arrived, "no acknowledgement arrived");
    // How fast is measured by `cargo bench --bench mail` (50 samples); here only that it arrives.
    println!("APPEND to acknowledgement delivered: {} ms", latency.as_millis());

    let acks = servers.messages("nia.nurse", "INBOX").await;
    assert_eq!(acks.len(), 1);
    let subject = header(&acks[0], "Subject");
    assert!(subject.starts_with("BRAD-"), "{subject}");
    assert_eq!(header(&acks[0], "Auto-Submitted"), "auto-replied");
    assert_eq!(header(&acks[0], "In-Reply-To"), "<e2e-1@fixtures.nhs.net>");
    // The other party is copied in; the board's inbox is empty and the message is in Processed.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("sam.social", "INBOX").await == 1
        })
        .await
    );
    // The message is moved to Processed once its effects are committed, which may be just after the
    // acknowledgement is delivered.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("bsab", "INBOX").await == 0 && servers.count("bsab", "Processed").await == 1
        })
        .await
    );
    daemon.stop();
    // The SMTP server accepted it for both recipients (a copy each): the outbox says sent, with no error to
    // retry.
    assert_eq!(outbox_state(&dir.path().join("data/db.sqlite3")).await, (2, 2, 0));
}

/// A message the bot cannot read: MIME parts nested deeper than it reads.
fn unreadable() -> Vec<u8> {
    let depth = 40;
    let mut raw = String::from(
        "From: Quinn Quarantine <quinn.quarantine@fixtures.nhs.net>\r\nTo: escalations@bradford.gov.uk\r\n\
         Subject: nested\r\nMessage-ID: <e2e-nested@fixtures.nhs.net>\r\nMIME-Version: 1.0\r\n",
    );
    for d in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{d}\"\r\n\r\n--b{d}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nhello\r\n");
    for d in (0..depth).rev() {
        raw.push_str(&format!("--b{d}--\r\n"));
    }
    raw.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_one_batch_a_good_message_goes_to_processed_and_an_unreadable_one_to_quarantine() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    servers.append("bsab", &unreadable()).await;
    servers.append("bsab", &escalation(1)).await;
    servers.append("bsab", &escalation(2)).await;
    let daemon = Daemon::start(&daemon_config(&servers, dir.path()));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            servers.count("bsab", "INBOX").await == 0
        })
        .await,
        "the INBOX was never emptied"
    );
    daemon.stop();
    assert_eq!(servers.count("bsab", "Processed").await, 2);
    assert_eq!(servers.count("bsab", "Quarantine").await, 1);
    let quarantined = servers.messages("bsab", "Quarantine").await;
    assert_eq!(header(&quarantined[0], "Message-ID"), "<e2e-nested@fixtures.nhs.net>");
    assert_eq!(case_count(&daemon_config(&servers, dir.path())), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_and_restarted_the_daemon_loses_nothing_and_duplicates_nothing() {
    const N: usize = 300;
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    // Kill it hard once it is part-way through the backlog, at once: a whole backlog can be done within a
    // tenth of a second on a fast machine. A kill that comes after the whole backlog (the test's own thread
    // lost the processor meanwhile) proves nothing, so another backlog is added and the daemon killed again.
    let (mut total, mut kills) = (0, 0);
    let (left, cases_at_kill) = loop {
        {
            let mut s = servers.session("bsab").await;
            for n in total..total + N {
                s.append("INBOX", None, None, escalation(n)).await.expect("APPEND");
            }
            s.logout().await.ok();
        }
        total += N;
        let daemon = Daemon::start(&config);
        daemon.wait_for("message processed", Duration::from_secs(30));
        daemon.kill_hard();
        kills += 1;
        let left = servers.count("bsab", "INBOX").await as usize;
        let cases_at_kill = case_count(&config);
        println!("killed with {cases_at_kill} cases opened and {left} of {total} messages still in the INBOX");
        if cases_at_kill < total || kills == 3 {
            break (left, cases_at_kill);
        }
    };
    assert!(
        cases_at_kill > 0 && cases_at_kill < total,
        "the kill must fall mid-batch ({cases_at_kill} of {total} done)"
    );
    // Nothing lost: every message that is not yet a case is still in the INBOX (one committed but not yet
    // moved is there too, and must not become a second case: the re-delivery tests in replies.rs and
    // store_contract.rs cover that path deterministically).
    assert!(
        left >= total - cases_at_kill,
        "{left} left in the INBOX but {} not yet cases",
        total - cases_at_kill
    );
    let n = total;

    let daemon = Daemon::start(&config);
    let drained = wait_until(Duration::from_secs(180), || async {
        servers.count("bsab", "INBOX").await == 0
    })
    .await;
    assert!(drained, "the INBOX was not drained after the restart");
    // Every acknowledgement delivered: n distinct ones (a kill between the SMTP server's 250 and the commit
    // of "sent" delivers one twice, so counting messages is not enough).
    let delivered = wait_until(Duration::from_secs(180), || async {
        if (servers.count("nia.nurse", "INBOX").await as usize) < n {
            return false;
        }
        let acks = servers.messages("nia.nurse", "INBOX").await;
        acks.iter()
            .map(|a| header(a, "Message-ID"))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= n
    })
    .await;
    daemon.stop();
    assert!(delivered, "not every acknowledgement arrived");

    // No loss and no duplicate: n cases, n acknowledgements queued, n distinct acknowledgements delivered.
    assert_eq!(case_count(&config), n, "one case per message");
    assert_eq!(servers.count("bsab", "Processed").await as usize, n);
    let acks = servers.messages("nia.nurse", "INBOX").await;
    let ids: std::collections::BTreeSet<String> = acks.iter().map(|a| header(a, "Message-ID")).collect();
    assert_eq!(ids.len(), n, "each case acknowledged");
    let replies_to: std::collections::BTreeSet<String> = acks.iter().map(|a| header(a, "In-Reply-To")).collect();
    assert_eq!(replies_to.len(), n, "one acknowledgement per escalation");
    // SMTP delivery is at least once: a kill between the server's 250 and the commit of "sent" can repeat
    // one email (with the same Message-ID), once per kill. It must not repeat more than that.
    assert!(
        acks.len() <= n + kills,
        "{} acknowledgements for {n} escalations",
        acks.len()
    );
    let (queued, sent, errors) = outbox_state(&dir.path().join("data/db.sqlite3")).await;
    assert_eq!(
        (queued as usize, sent as usize, errors),
        (2 * n, 2 * n, 0),
        "every acknowledgement sent (a copy to the practitioner, one to the other party), none failed"
    );
}

/// A reply as a mail client sends it to the board mailbox.
fn reply_mail(from: &str, subject: &str, in_reply_to: Option<&str>, body: &str, id: &str) -> Vec<u8> {
    let thread = in_reply_to
        .map(|p| format!("In-Reply-To: {p}\r\nReferences: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "From: {from}\r\nTo: BSAB@bradford.gov.uk\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{thread}\
         Date: Mon, 4 Jan 2027 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The case's status as `cases show --json` gives it.
fn case_status(config: &Path, reference: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(["cases", "show", reference, "--json"])
        .output()
        .expect("cases show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["case"]["status"]
        .as_str()
        .or_else(|| v["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_command_is_confirmed_by_the_real_owner_and_a_curly_apostrophe_stops_nothing() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    let daemon = Daemon::start(&config);
    servers.append("bsab", &escalation(7)).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("nia.nurse", "INBOX").await == 1 && servers.count("sam.social", "INBOX").await == 1
        })
        .await,
        "acknowledgement delivered"
    );
    let ack = servers.messages("nia.nurse", "INBOX").await.remove(0);
    let ack_id = header(&ack, "Message-ID");
    let reference = header(&ack, "Subject")
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(reference.starts_with("BRAD-"), "{reference}");

    // Anyone can write Nia's address in From: with only the reference in the subject, the command is
    // held, and Nia herself is asked.
    servers
        .append(
            "bsab",
            &reply_mail(
                "Nia Nurse <nia.nurse@nhs.net>",
                &format!("RE: {reference}"),
                None,
                "WITHDRAW\nNo longer needed.",
                "forged-e2e@attacker.example",
            ),
        )
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("nia.nurse", "INBOX").await == 2
        })
        .await,
        "the challenge reached the real owner"
    );
    let challenge = servers.messages("nia.nurse", "INBOX").await.remove(1);
    assert!(header(&challenge, "Subject").contains("please confirm your WITHDRAW"));
    assert_eq!(case_status(&config, &reference), "open");

    // Sam replies from a phone with Outlook's curly apostrophe in the review date: answered, and the
    // daemon goes on.
    servers
        .append(
            "bsab",
            &reply_mail(
                "Sam Social <sam.social@westshire.gov.uk>",
                &format!("RE: {reference}"),
                Some(&ack_id),
                "Resolved\nOutcome: joint visit agreed\nReview date: in 3 months\u{2019} time\n\nGet Outlook for iOS",
                "curly-e2e@westshire.gov.uk",
            ),
        )
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("sam.social", "INBOX").await == 2
        })
        .await,
        "Sam is told what to fix"
    );
    let answer = servers.messages("sam.social", "INBOX").await.remove(1);
    assert!(
        String::from_utf8_lossy(&answer).contains("review date"),
        "the answer says what to fix"
    );

    // Nia confirms, in reply to the challenge: the withdrawal is applied.
    servers
        .append(
            "bsab",
            &reply_mail(
                "Nia Nurse <nia.nurse@nhs.net>",
                &format!("RE: {}", header(&challenge, "Subject")),
                Some(&header(&challenge, "Message-ID")),
                "CONFIRM\n\nSent from my iPhone",
                "confirm-e2e@nhs.net",
            ),
        )
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("nia.nurse", "INBOX").await == 3
        })
        .await,
        "the withdrawal is confirmed to Nia"
    );
    assert_eq!(case_status(&config, &reference), "withdrawn");
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("bsab", "INBOX").await == 0
        })
        .await,
        "every message handled"
    );
    daemon.stop();
}

/// Whether any message in `user`'s `folder` is flagged \Seen.
async fn any_seen(servers: &MailServers, user: &str, folder: &str) -> bool {
    use futures_util::TryStreamExt;
    let mut s = servers.session(user).await;
    let Ok(mb) = s.select(folder).await else {
        return false;
    };
    if mb.exists == 0 {
        s.logout().await.ok();
        return false;
    }
    let flags: Vec<_> = s
        .fetch("1:*", "FLAGS")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .expect("fetch");
    s.logout().await.ok();
    flags
        .iter()
        .any(|f| f.flags().any(|fl| matches!(fl, async_imap::types::Flag::Seen)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_to_the_board_mailbox_itself_is_filed_unread_for_the_person_who_reads_it() {
    // Bradford's Business Unit Manager is the board mailbox the bot reads (BSAB@bradford.gov.uk).
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    let daemon = Daemon::start(&config);
    servers.append("bsab", &escalation(11)).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("nia.nurse", "INBOX").await == 1
        })
        .await,
        "acknowledgement delivered"
    );
    let ack = servers.messages("nia.nurse", "INBOX").await.remove(0);
    let reference = header(&ack, "Subject")
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    servers
        .append(
            "bsab",
            &reply_mail(
                "Nia Nurse <nia.nurse@nhs.net>",
                &format!("RE: {}", header(&ack, "Subject")),
                Some(&header(&ack, "Message-ID")),
                "RESOLVED\nThe enquiry is reopened and a joint visit is booked.",
                "resolved-e2e@nhs.net",
            ),
        )
        .await;
    // The resolution notice to the Business Unit Manager goes out by SMTP, arrives in the board mailbox,
    // and is filed, unread, in "Board notifications" — neither processed as mail in nor quarantined.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            servers.count("bsab", "Board notifications").await == 1
        })
        .await,
        "the notice was filed in Board notifications"
    );
    let filed = servers.messages("bsab", "Board notifications").await.remove(0);
    assert_eq!(header(&filed, "X-Escalation-Kind"), "notification");
    assert_eq!(header(&filed, "X-Escalation-Case"), reference);
    assert!(!any_seen(&servers, "bsab", "Board notifications").await, "left unread");
    assert_eq!(servers.count("bsab", "Quarantine").await, 0);
    assert_eq!(servers.count("bsab", "INBOX").await, 0);
    assert_eq!(case_status(&config, &reference), "resolved");
    daemon.stop();
}
