//! Rendering emails from handlebars templates: for each kind a subject, a text part and an HTML part.
//!
//! The templates in `templates/` are built into the binary; an operator's folder (`templates_dir`) may
//! override any of them file by file. HTML parts escape every value; text parts do not (they are text);
//! subjects are made safe for a header (no CR/LF).

use std::path::Path;

use handlebars::{no_escape, Handlebars};
use serde_json::Value;

use super::mime::sanitise;

/// The kinds of email, each with `KIND.subject.hbs`, `KIND.text.hbs` and `KIND.html.hbs`.
pub const KINDS: &[&str] = &[
    "acknowledgement",
    "refusal",
    "confirmation",
    "command_error",
    "notification",
    "challenge",
    "held_for_approval",
    "approval_request",
    "reminder",
    "overdue",
    "review",
    "digest",
];

const BUILT_IN: &[(&str, &str)] = &[
    (
        "acknowledgement.subject",
        include_str!("../../templates/acknowledgement.subject.hbs"),
    ),
    (
        "acknowledgement.text",
        include_str!("../../templates/acknowledgement.text.hbs"),
    ),
    (
        "acknowledgement.html",
        include_str!("../../templates/acknowledgement.html.hbs"),
    ),
    (
        "held_for_approval.subject",
        include_str!("../../templates/held_for_approval.subject.hbs"),
    ),
    (
        "held_for_approval.text",
        include_str!("../../templates/held_for_approval.text.hbs"),
    ),
    (
        "held_for_approval.html",
        include_str!("../../templates/held_for_approval.html.hbs"),
    ),
    (
        "approval_request.subject",
        include_str!("../../templates/approval_request.subject.hbs"),
    ),
    (
        "approval_request.text",
        include_str!("../../templates/approval_request.text.hbs"),
    ),
    (
        "approval_request.html",
        include_str!("../../templates/approval_request.html.hbs"),
    ),
    (
        "challenge.subject",
        include_str!("../../templates/challenge.subject.hbs"),
    ),
    ("challenge.text", include_str!("../../templates/challenge.text.hbs")),
    ("challenge.html", include_str!("../../templates/challenge.html.hbs")),
    ("refusal.subject", include_str!("../../templates/refusal.subject.hbs")),
    ("refusal.text", include_str!("../../templates/refusal.text.hbs")),
    ("refusal.html", include_str!("../../templates/refusal.html.hbs")),
    (
        "confirmation.subject",
        include_str!("../../templates/confirmation.subject.hbs"),
    ),
    (
        "confirmation.text",
        include_str!("../../templates/confirmation.text.hbs"),
    ),
    (
        "confirmation.html",
        include_str!("../../templates/confirmation.html.hbs"),
    ),
    (
        "command_error.subject",
        include_str!("../../templates/command_error.subject.hbs"),
    ),
    (
        "command_error.text",
        include_str!("../../templates/command_error.text.hbs"),
    ),
    (
        "command_error.html",
        include_str!("../../templates/command_error.html.hbs"),
    ),
    (
        "notification.subject",
        include_str!("../../templates/notification.subject.hbs"),
    ),
    (
        "notification.text",
        include_str!("../../templates/notification.text.hbs"),
    ),
    (
        "notification.html",
        include_str!("../../templates/notification.html.hbs"),
    ),
    ("reminder.subject", include_str!("../../templates/reminder.subject.hbs")),
    ("reminder.text", include_str!("../../templates/reminder.text.hbs")),
    ("reminder.html", include_str!("../../templates/reminder.html.hbs")),
    ("overdue.subject", include_str!("../../templates/overdue.subject.hbs")),
    ("overdue.text", include_str!("../../templates/overdue.text.hbs")),
    ("overdue.html", include_str!("../../templates/overdue.html.hbs")),
    ("review.subject", include_str!("../../templates/review.subject.hbs")),
    ("review.text", include_str!("../../templates/review.text.hbs")),
    ("review.html", include_str!("../../templates/review.html.hbs")),
    ("digest.subject", include_str!("../../templates/digest.subject.hbs")),
    ("digest.text", include_str!("../../templates/digest.text.hbs")),
    ("digest.html", include_str!("../../templates/digest.html.hbs")),
];

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Templates {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// The built-in templates, with any file in `override_dir` taking the place of its namesake.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, String> {
        let mut text = Handlebars::new();
        text.register_escape_fn(no_escape);
        text.set_strict_mode(false);
        let mut html = Handlebars::new();
        html.set_strict_mode(false);
        for (name, built_in) in BUILT_IN {
            let file = override_dir.map(|d| d.join(format!("{name}.hbs")));
            let source = match file.as_deref().filter(|f| f.exists()) {
                Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
                None => (*built_in).to_string(),
            };
            let registry = if name.ends_with(".html") { &mut html } else { &mut text };
            registry
                .register_template_string(name, source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Templates { text, html })
    }

    /// Render email `kind` with `data`.
    pub fn render(&self, kind: &str, data: &Value) -> Result<Rendered, String> {
        // One context for the three parts (`render` would copy `data` into a context for each).
        let context = handlebars::Context::from(data.clone());
        let r = |reg: &Handlebars, part: &str| {
            reg.render_with_context(&format!("{kind}.{part}"), &context)
                .map_err(|e| format!("template {kind}.{part}: {e}"))
        };
        let text = r(&self.text, "text")?;
        // Collapse the blank lines that template conditionals leave behind.
        let mut tidy = String::new();
        let mut blanks = 0;
        for line in text.lines() {
            if line.trim().is_empty() {
                blanks += 1;
                if blanks > 1 {
                    continue;
                }
            } else {
                blanks = 0;
            }
            tidy.push_str(line.trim_end());
            tidy.push('\n');
        }
        Ok(Rendered {
            subject: sanitise(&r(&self.text, "subject")?),
            text: tidy.trim().to_string() + "\n",
            html: r(&self.html, "html")?,
        })
    }
}

#[cfg(test)]
mod kinds_tests {
    use super::*;

    #[test]
    fn every_kind_has_a_subject_a_text_and_an_html_template_built_in() {
        let t = Templates::load(None).expect("templates load");
        for kind in KINDS {
            let r = t.render(kind, &serde_json::json!({}));
            assert!(r.is_ok(), "{kind}: {r:?}");
            for part in ["subject", "text", "html"] {
                assert!(
                    BUILT_IN.iter().any(|(n, _)| *n == format!("{kind}.{part}")),
                    "{kind}.{part} is not built in"
                );
            }
        }
    }
}
