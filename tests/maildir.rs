//! The local Maildir source reads only whole messages: a file still being written into `new/` in place is
//! left until its writer closes it (or it stops changing), and `deliver_to_maildir` (`escalation-bot
//! deliver`) writes as a mail delivery agent does, in `tmp/` then renamed into `new/`.

use std::io::Write;
use std::time::Duration;

use escalation_bot::mail::source::{deliver_to_maildir, maildir, Ack, Incoming};
use tokio::sync::{mpsc, watch};

fn message() -> Vec<u8> {
    let mut m = b"From: Nia Nurse <nia.nurse@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: Escalation\r\n\
Message-ID: <slow-writer@nhs.net>\r\n\r\n"
        .to_vec();
    for n in 0..200 {
        m.extend_from_slice(format!("Line {n} of a record written slowly.\r\n").as_bytes());
    }
    m
}

async fn next(rx: &mut mpsc::Receiver<Incoming>, limit: Duration) -> Option<Incoming> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

#[tokio::test]
async fn a_file_being_written_slowly_into_new_is_read_only_once_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mailbox = dir.path().join("bradford");
    std::fs::create_dir_all(mailbox.join("new")).expect("mkdir");
    let whole = message();
    let (first, rest) = whole.split_at(whole.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let path = mailbox.join("new").join("written-in-place.eml");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(first).expect("write");
    f.flush().expect("flush");
    // The source starts while the file is a third written: its first look finds it.
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(maildir(
        "bradford".into(),
        mailbox.clone(),
        "Board notifications".into(),
        tx,
        stop,
    ));
    assert!(
        next(&mut rx, Duration::from_millis(700)).await.is_none(),
        "nothing may be read while the file is being written"
    );
    // Written on with pauses, as a slow copy over a network share would.
    f.write_all(second).expect("write");
    f.flush().expect("flush");
    assert!(
        next(&mut rx, Duration::from_millis(700)).await.is_none(),
        "nothing may be read while the file is being written"
    );
    f.write_all(third).expect("write");
    drop(f);
    let incoming = next(&mut rx, Duration::from_secs(5)).await.expect("read once whole");
    assert_eq!(incoming.messages.len(), 1);
    assert_eq!(incoming.messages[0].1, whole, "the whole message, not a part of it");
    let _ = incoming.ack.send(vec![Ack::Done]);
    task.abort();
}

#[tokio::test]
async fn deliver_writes_through_tmp_and_the_source_reads_it_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mailbox = dir.path().join("trafford");
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop_tx, stop) = watch::channel(false);
    std::fs::create_dir_all(mailbox.join("new")).expect("mkdir");
    let task = tokio::spawn(maildir(
        "trafford".into(),
        mailbox.clone(),
        "Board notifications".into(),
        tx,
        stop,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = deliver_to_maildir(&mailbox, &message()).expect("deliver");
    assert!(path.starts_with(mailbox.join("new")), "{}", path.display());
    assert_eq!(std::fs::read_dir(mailbox.join("tmp")).expect("tmp").count(), 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a kept message is readable by its owner only");
    }
    // Announced complete by its rename: read without waiting for it to settle.
    let incoming = next(&mut rx, Duration::from_secs(5)).await.expect("read");
    assert_eq!(incoming.messages[0].1, message());
    let _ = incoming.ack.send(vec![Ack::Done]);
    task.abort();
}

#[tokio::test]
async fn the_bots_own_notification_is_filed_unread_in_the_boards_notifications_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mailbox = dir.path().join("bradford");
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop_tx, stop) = watch::channel(false);
    std::fs::create_dir_all(mailbox.join("new")).expect("mkdir");
    let task = tokio::spawn(maildir(
        "bradford".into(),
        mailbox.clone(),
        "Board notifications".into(),
        tx,
        stop,
    ));
    let path = deliver_to_maildir(&mailbox, &message()).expect("deliver");
    let name = path.file_name().expect("name").to_owned();
    let incoming = next(&mut rx, Duration::from_secs(5)).await.expect("read");
    let _ = incoming.ack.send(vec![Ack::File]);
    // A Maildir++ folder of the mailbox, the message in its new/ (unread), not in cur/ or quarantine.
    let filed = mailbox.join(".Board notifications").join("new").join(&name);
    let start = std::time::Instant::now();
    while !filed.exists() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(filed.exists(), "filed unread in the notifications folder");
    assert!(!path.exists());
    assert!(std::fs::read_dir(mailbox.join("cur")).map(|d| d.count()).unwrap_or(0) == 0);
    task.abort();
}
