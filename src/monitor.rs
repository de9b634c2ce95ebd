//! What an operator watches (shell): the daemon's Prometheus metrics, and the state `/healthz` judges —
//! each mail source connected or reconnecting since when, the sender working or failing since when.
//!
//! One process-wide [`Monitor`] ([`monitor()`]): the pipeline, the sources, the sender and the scheduler
//! count into it where they already log what happened, and `http` reads it. Counting costs an atomic add;
//! without `[http] listen` nobody reads it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A mail source's connection, as `/healthz` judges it.
#[derive(Debug, Clone, Copy)]
pub struct SourceState {
    pub connected: bool,
    /// Since when it has been connected, or trying to reconnect.
    pub since: Instant,
}

/// The daemon's counters and states.
pub struct Monitor {
    registry: Registry,
    messages_in: Family<Labels, Counter>,
    cases_opened: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    emails_sent: Counter,
    emails_failed: Counter,
    recipients_refused: Counter,
    outbox_depth: Gauge,
    outbox_oldest_seconds: Gauge<f64, AtomicU64>,
    timers_due: Gauge,
    timers_late: Counter,
    imap_last_activity: Family<Labels, Gauge>,
    source_connected: Family<Labels, Gauge>,
    processing_seconds: Histogram,
    sources: Mutex<BTreeMap<String, SourceState>>,
    /// When the mail server began failing (`None`: it takes mail).
    sender_down_since: Mutex<Option<Instant>>,
}

static MONITOR: OnceLock<Monitor> = OnceLock::new();

/// The process's monitor.
pub fn monitor() -> &'static Monitor {
    MONITOR.get_or_init(Monitor::new)
}

impl Monitor {
    fn new() -> Monitor {
        let mut registry = Registry::with_prefix("escalation_bot");
        let m = Monitor {
            messages_in: Family::default(),
            cases_opened: Family::default(),
            commands: Family::default(),
            emails_sent: Counter::default(),
            emails_failed: Counter::default(),
            recipients_refused: Counter::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_seconds: Gauge::default(),
            timers_due: Gauge::default(),
            timers_late: Counter::default(),
            imap_last_activity: Family::default(),
            source_connected: Family::default(),
            // 1 ms to about 16 s.
            processing_seconds: Histogram::new([0.001, 0.004, 0.016, 0.064, 0.256, 1.024, 4.096, 16.384]),
            sources: Mutex::new(BTreeMap::new()),
            sender_down_since: Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "messages_in",
            "Inbound messages by board and outcome (case_opened, command_applied, held, refused, ignored, quarantined, retry)",
            m.messages_in.clone(),
        );
        registry.register("cases_opened", "Cases opened, by board", m.cases_opened.clone());
        registry.register(
            "commands",
            "Reply commands by board, command and result (applied or refused)",
            m.commands.clone(),
        );
        registry.register(
            "emails_sent",
            "Emails delivered to the mail server",
            m.emails_sent.clone(),
        );
        registry.register(
            "emails_failed",
            "Delivery attempts the mail server failed (retried later)",
            m.emails_failed.clone(),
        );
        registry.register(
            "recipients_refused",
            "Recipients the mail server refused for good",
            m.recipients_refused.clone(),
        );
        registry.register("outbox_depth", "Emails waiting to be sent", m.outbox_depth.clone());
        registry.register(
            "outbox_oldest_unsent_seconds",
            "Age of the oldest email waiting to be sent, in seconds (0 when none waits)",
            m.outbox_oldest_seconds.clone(),
        );
        registry.register(
            "timers_due",
            "Case timers whose moment has passed and that have not been acted on",
            m.timers_due.clone(),
        );
        registry.register(
            "timers_late",
            "Timers acted on after their moment because the daemon was down",
            m.timers_late.clone(),
        );
        registry.register(
            "imap_last_activity_timestamp_seconds",
            "When each board's IMAP connection last heard from its server (Unix time)",
            m.imap_last_activity.clone(),
        );
        registry.register(
            "source_connected",
            "Whether each board's mail source is connected (1) or reconnecting (0)",
            m.source_connected.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time to process one batch of inbound messages",
            m.processing_seconds.clone(),
        );
        Monitor { registry, ..m }
    }

    /// One inbound message's outcome; a case opened and a command applied or refused are counted too.
    pub fn message(&self, board: &str, outcome: &str, command: Option<&str>) {
        self.messages_in
            .get_or_create(&labels(&[("board", board), ("outcome", outcome)]))
            .inc();
        if outcome == "case_opened" {
            self.cases_opened.get_or_create(&labels(&[("board", board)])).inc();
        }
        if let Some(c) = command {
            let result = if outcome == "command_applied" {
                "applied"
            } else {
                "refused"
            };
            if outcome == "command_applied" || outcome == "refused" {
                self.commands
                    .get_or_create(&labels(&[("board", board), ("command", c), ("result", result)]))
                    .inc();
            }
        }
    }

    pub fn batch_processed(&self, took: Duration) {
        self.processing_seconds.observe(took.as_secs_f64());
    }

    pub fn email_sent(&self) {
        self.emails_sent.inc();
    }

    pub fn recipient_refused(&self) {
        self.recipients_refused.inc();
    }

    /// The mail server failed an attempt (`failing`), or took mail (`!failing`).
    pub fn sender(&self, failing: bool) {
        if failing {
            self.emails_failed.inc();
        }
        if let Ok(mut down) = self.sender_down_since.lock() {
            match (failing, down.is_some()) {
                (true, false) => *down = Some(Instant::now()),
                (false, true) => *down = None,
                _ => {}
            }
        }
    }

    pub fn timers_late(&self, n: u64) {
        self.timers_late.inc_by(n);
    }

    /// A board's source connected (`true`) or lost its connection and is reconnecting (`false`).
    pub fn source(&self, board: &str, connected: bool) {
        self.source_connected
            .get_or_create(&labels(&[("board", board)]))
            .set(i64::from(connected));
        if let Ok(mut s) = self.sources.lock() {
            let changed = s.get(board).is_none_or(|st| st.connected != connected);
            if changed {
                s.insert(
                    board.to_string(),
                    SourceState {
                        connected,
                        since: Instant::now(),
                    },
                );
            }
        }
        if connected {
            self.imap_activity(board);
        }
    }

    /// A board's IMAP server was heard from.
    pub fn imap_activity(&self, board: &str) {
        let now = chrono::Utc::now().timestamp();
        self.imap_last_activity
            .get_or_create(&labels(&[("board", board)]))
            .set(now);
    }

    /// The outbox and timers as the store has them now (set just before `/metrics` is read).
    pub fn store_figures(&self, depth: i64, oldest_seconds: f64, timers_due: i64) {
        self.outbox_depth.set(depth);
        self.outbox_oldest_seconds.set(oldest_seconds);
        self.timers_due.set(timers_due);
    }

    /// Every source's state, by board.
    pub fn sources(&self) -> BTreeMap<String, SourceState> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How long the mail server has been failing, if it is.
    pub fn sender_down_for(&self) -> Option<Duration> {
        self.sender_down_since
            .lock()
            .ok()
            .and_then(|d| d.map(|since| since.elapsed()))
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What `/healthz` says: healthy, or the reasons it is not. `store` is the store's answer, with how long
/// the oldest email due to be tried has waited untried (a sender that has stopped).
pub fn judge(
    store: Result<Option<Duration>, String>,
    sources: &BTreeMap<String, SourceState>,
    sender_down_for: Option<Duration>,
    grace: Duration,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    match store {
        Err(e) => problems.push(format!("the store cannot be reached: {e}")),
        Ok(Some(waited)) if waited >= grace => problems.push(format!(
            "the sender is stuck: an email due {} s ago has not been tried",
            waited.as_secs()
        )),
        Ok(_) => {}
    }
    for (board, s) in sources {
        if !s.connected && s.since.elapsed() >= grace {
            problems.push(format!(
                "board {board}'s mailbox has been reconnecting for {} s",
                s.since.elapsed().as_secs()
            ));
        }
    }
    if let Some(d) = sender_down_for.filter(|d| *d >= grace) {
        problems.push(format!(
            "the mail server has refused or failed every email for {} s",
            d.as_secs()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_judged_by_store_sources_and_sender() {
        let grace = Duration::from_secs(300);
        let mut sources = BTreeMap::new();
        sources.insert(
            "bradford".to_string(),
            SourceState {
                connected: false,
                since: Instant::now(),
            },
        );
        assert_eq!(judge(Ok(None), &sources, None, grace), Ok(()));
        assert_eq!(judge(Ok(Some(Duration::from_secs(10))), &sources, None, grace), Ok(()));
        let stuck = judge(Ok(Some(Duration::from_secs(400))), &sources, None, grace).expect_err("stuck");
        assert!(stuck[0].contains("the sender is stuck"), "{stuck:?}");
        let down = judge(
            Err("connection refused".into()),
            &sources,
            Some(Duration::from_secs(301)),
            grace,
        )
        .expect_err("unhealthy");
        assert_eq!(down.len(), 2, "{down:?}");
        assert!(down[0].contains("store") && down[1].contains("mail server"), "{down:?}");
        assert!(judge(Ok(None), &sources, None, Duration::ZERO).is_err());
    }

    #[test]
    fn metrics_render_in_prometheus_text() {
        let m = Monitor::new();
        m.message("bradford", "case_opened", None);
        m.message("bradford", "command_applied", Some("RESOLVED"));
        m.email_sent();
        let text = m.render();
        assert!(
            text.contains("escalation_bot_messages_in_total{board=\"bradford\",outcome=\"case_opened\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("escalation_bot_cases_opened_total{board=\"bradford\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "escalation_bot_commands_total{board=\"bradford\",command=\"RESOLVED\",result=\"applied\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("escalation_bot_emails_sent_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
