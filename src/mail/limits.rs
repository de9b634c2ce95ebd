//! Rate limits on outgoing email, per board (`[rate_limits]` in the board's file): how many emails one
//! address, one organisation's domain, and the board as a whole may be sent in 24 hours. They stop mail
//! loops with auto-responders no header revealed, and floods (a script sending records by the thousand),
//! whatever the kind of email. The board's own staff addresses are never limited (a notification to the
//! board must not be lost to a flood), and the domains many organisations share (nhs.net, gov.uk) are never
//! limited per domain. An email over a limit is not sent to the recipients over it; one left with nobody to
//! go to is not queued, and each suppression is an audit event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::Board;
pub use crate::config::RateLimits;
use crate::core::lifecycle::Event;
use crate::store::{OutboundEmail, Store, StoreError};

fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default()
}

/// What may still be sent today, loaded from the outbox for the addresses about to be written to.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: RateLimits,
    staff: Vec<String>,
    shared: Vec<String>,
    sent_to: HashMap<String, i64>,
    sent_to_domain: HashMap<String, i64>,
    overall: i64,
    board: String,
}

impl Budget {
    /// The board's budget for emails to `addresses` (lower-cased), as the outbox stands at `now`.
    pub async fn load<S: Store>(
        store: &S,
        board: &Board,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<Budget, StoreError> {
        let since = now - chrono::Duration::hours(24);
        let s = &board.settings;
        let limits = s.rate_limits;
        let mut staff: Vec<String> = s.roles.values().map(|c| c.email.to_lowercase()).collect();
        staff.push(s.mailbox.to_lowercase());
        let shared: Vec<String> = s.shared_domains.iter().map(|d| d.to_lowercase()).collect();
        let mut sent_to = HashMap::new();
        let mut sent_to_domain = HashMap::new();
        for a in addresses {
            let a = a.to_lowercase();
            if !sent_to.contains_key(&a) {
                sent_to.insert(a.clone(), store.count_outbox_to(&a, since).await?);
            }
            let d = domain_of(&a);
            if !d.is_empty() && !sent_to_domain.contains_key(&d) && !shared.contains(&d) {
                sent_to_domain.insert(d.clone(), store.count_outbox_to_domain(&d, since).await?);
            }
        }
        let overall = store.count_outbox_of_board(board.id(), since).await?;
        Ok(Budget {
            limits,
            staff,
            shared,
            sent_to,
            sent_to_domain,
            overall,
            board: board.id().to_string(),
        })
    }

    /// Why `address` may not be sent another email today, if it may not.
    fn over(&self, address: &str) -> Option<String> {
        let a = address.to_lowercase();
        // The board's own staff are always told (an immediate-risk notification must not be lost to a flood).
        if !self.staff.contains(&a) && self.overall >= i64::from(self.limits.overall) {
            return Some(format!("the board has sent {} emails in 24 hours", self.limits.overall));
        }
        if !self.staff.contains(&a) && self.sent_to.get(&a).copied().unwrap_or(0) >= i64::from(self.limits.per_address)
        {
            return Some(format!("{a} has had {} emails in 24 hours", self.limits.per_address));
        }
        let d = domain_of(&a);
        if !self.staff.contains(&a)
            && !self.shared.contains(&d)
            && self.sent_to_domain.get(&d).copied().unwrap_or(0) >= i64::from(self.limits.per_domain)
        {
            return Some(format!("{d} has had {} emails in 24 hours", self.limits.per_domain));
        }
        None
    }

    /// The emails that may go, each without the recipients over a limit (counted as sent from now), and an
    /// audit event for each recipient left out.
    pub fn admit(&mut self, emails: Vec<OutboundEmail>, now: DateTime<Utc>) -> (Vec<OutboundEmail>, Vec<Event>) {
        let mut out = Vec::with_capacity(emails.len());
        let mut events = Vec::new();
        for mut email in emails {
            let mut left_out = Vec::new();
            for list in [&mut email.to, &mut email.cc] {
                list.retain(|a| match self.over(a) {
                    Some(why) => {
                        left_out.push((a.clone(), why));
                        false
                    }
                    None => true,
                });
            }
            for (a, why) in &left_out {
                events.push(Event {
                    kind: "reply_suppressed".into(),
                    at: now,
                    actor: a.clone(),
                    summary: format!("{} email to {a} not sent: {why}", email.kind),
                    detail: json!({ "kind": email.kind, "board": self.board, "limits": self.limits }),
                });
            }
            if email.to.is_empty() && !email.cc.is_empty() {
                email.to = std::mem::take(&mut email.cc);
            }
            if email.to.is_empty() {
                continue;
            }
            self.overall += 1;
            for a in email.to.iter().chain(email.cc.iter()) {
                let a = a.to_lowercase();
                *self.sent_to.entry(a.clone()).or_insert(0) += 1;
                *self.sent_to_domain.entry(domain_of(&a)).or_insert(0) += 1;
            }
            out.push(email);
        }
        (out, events)
    }
}
