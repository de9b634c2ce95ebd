//! Where the time goes in the inbound pipeline, in-process on SQLite (no IMAP, no SMTP):
//! `cargo run --release --example profile_pipeline`.
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = escalation_bot::config::load(std::path::Path::new("config/default.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pipeline = escalation_bot::mail::pipeline::Pipeline::new(&config, b"x".to_vec()).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let store = escalation_bot::store::SqliteStore::open(&dir.path().join("p.sqlite3")).await?;
    let now = chrono::Utc::now();
    escalation_bot::app::prepare_store(&config, &store, now).await?;
    let template = std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")?;
    let n: usize = std::env::var("PROFILE_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            template
                .replace("<bradford-plain@fixtures.nhs.net>", &format!("<p{i}@x>"))
                .into_bytes()
        })
        .collect();
    // `profile_pipeline batched`: only the batched run (for a profiler); `profile_pipeline parse-mix`: only
    // parsing, over the golden fixtures of every board (plain, Word HTML, multipart).
    let only_batched = std::env::args().nth(1).as_deref() == Some("batched");
    if std::env::args().nth(1).as_deref() == Some("parse-mix") {
        let mut mix = Vec::new();
        for entry in std::fs::read_dir("tests/fixtures/forms")? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "eml") {
                mix.push(std::fs::read(path)?);
            }
        }
        let n: usize = std::env::var("PROFILE_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(30_000);
        let t = Instant::now();
        for i in 0..n {
            let _ = pipeline.read_escalation(&mix[i % mix.len()]);
        }
        println!("parse mix, one core: {:.0} msg/s", n as f64 / t.elapsed().as_secs_f64());
        let bs: usize = std::env::var("PROFILE_BATCH")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        let batch: Vec<&[u8]> = (0..bs).map(|i| mix[i % mix.len()].as_slice()).collect();
        let t = Instant::now();
        for _ in 0..n / bs {
            pipeline.prepare_all(&batch).await;
        }
        println!(
            "parse mix, batches of 100 on every core: {:.0} msg/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let t = Instant::now();
    for m in msgs.iter().filter(|_| !only_batched) {
        let _ = pipeline.read_escalation(m);
    }
    println!("parse only: {:.0} msg/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for m in msgs.iter().filter(|_| !only_batched) {
        let r = pipeline
            .process(&store, &Default::default(), m, Some("bradford"), now, true)
            .await?;
        assert_eq!(r.outcome, "case_opened");
    }
    println!(
        "dry run (parse, decide, render nothing stored): {:.0} msg/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for m in msgs.iter().filter(|_| !only_batched) {
        pipeline
            .process(&store, &Default::default(), m, Some("bradford"), now, false)
            .await?;
    }
    println!(
        "full, SQLite, one at a time: {:.0} msg/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let batched: Vec<(escalation_bot::mail::pipeline::Source, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                Default::default(),
                template
                    .replace("<bradford-plain@fixtures.nhs.net>", &format!("<b{i}@x>"))
                    .into_bytes(),
            )
        })
        .collect();
    let t = Instant::now();
    let bs: usize = std::env::var("PROFILE_BATCH")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    for chunk in batched.chunks(bs) {
        pipeline.process_batch(&store, "bradford", chunk, now).await;
    }
    println!(
        "full, SQLite, batches of {bs}: {:.0} msg/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    if std::env::var("PROFILE_SIZES").is_ok() {
        // What each message leaves in the database, table by table (the bytes SQLite writes twice, WAL first).
        let db = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path().join("p.sqlite3").display())).await?;
        for (table, columns) in [
            ("inbound", "length(raw) + length(problems) + length(message_id)"),
            ("cases", "length(data)"),
            ("events", "length(detail) + length(summary)"),
            (
                "outbox",
                "length(body_text) + length(body_html) + length(headers) + length(envelope) + length(subject)",
            ),
            ("participants", "length(email) + length(name) + length(agency)"),
            ("deadlines", "length(label)"),
            ("timers", "length(label) + length(key)"),
        ] {
            let (rows, bytes): (i64, Option<i64>) =
                sqlx::query_as(&format!("SELECT COUNT(*), SUM({columns}) FROM {table}"))
                    .fetch_one(&db)
                    .await?;
            println!("{table}: {rows} rows, {} bytes each", bytes.unwrap_or(0) / rows.max(1));
        }
    }
    Ok(())
}
