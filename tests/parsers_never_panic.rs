//! Every parser entry point that text or bytes from outside reach, fed arbitrary Unicode and arbitrary
//! bytes, and text shaped like the real thing (labels, commands, dates, quote headers) with arbitrary
//! Unicode in between: none may panic. Hostile shapes too (a piece that once stalled a parser repeated
//! thousands of times, nested or run together, with arbitrary text between): none may panic, nor take long
//! (`tests/linear_growth.rs` measures how each parser's time grows). In CI each target runs a fixed number
//! of cases; `scripts/fuzz.sh` runs each for a set time (`ESCALATION_BOT_FUZZ_SECONDS`) and prints how many
//! cases it ran.

use std::time::{Duration, Instant};

use escalation_bot::core::html::html_to_text;
use escalation_bot::core::intake::{find_emails, normalise_label, parse_record, Labels};
use escalation_bot::core::nhs;
use escalation_bot::core::reply::{new_text, parse_reply};
use escalation_bot::mail::mime::{decode, Limits};
use escalation_bot::mail::pipeline::{reference_in, Reader};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// Run `check` on values of `strategy`: a fixed number of cases, or for `ESCALATION_BOT_FUZZ_SECONDS`
/// seconds when that is set. A panic fails the test with the input that caused it.
fn fuzz<S: Strategy>(target: &str, cases: u32, strategy: S, check: impl Fn(&S::Value))
where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("ESCALATION_BOT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut runner = TestRunner::new(Config::default());
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        match budget {
            Some(b) if started.elapsed() >= b => break,
            None if n >= u64::from(cases) => break,
            _ => {}
        }
        let value = strategy.new_tree(&mut runner).expect("a value").current();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&value)));
        assert!(result.is_ok(), "{target} panicked on {value:?}");
        n += 1;
    }
    if budget.is_some() {
        println!(
            "fuzz {target}: {n} cases in {:.0} s, 0 panics",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Text that looks like what people send, with arbitrary Unicode woven in.
fn shaped_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "RESOLVED",
        "Resolved – ",
        "ESCALATE to stage ",
        "EXTEND ",
        "WITHDRAW",
        "NOTE",
        "CONFIRM",
        "STATUS",
        "Review date: ",
        "Outcome: ",
        "Actions: ",
        "1st ",
        "22nd ",
        "3rd ",
        "months\u{2019} time",
        "’s",
        "On Tue, 5 Jan 2027 at 10:00, Sam <sam@x.gov.uk> wrote:",
        "-----Original Message-----",
        "> ",
        "________________________________",
        "From: ",
        "Sent: ",
        "-- ",
        "Sent from my iPhone",
        "05.01.2027 10:00 пользователь \"Сэм\" <sam@x.ru> написал:",
        "Am 5. Jan. 2027 schrieb ",
        "Name of adult at risk: ",
        "NHS number: ",
        "999 000 0018",
        "Referrer",
        "Name",
        "Job Title",
        "Agency",
        "Person escalating: ",
        "Callum Reid, City of Bradford MDC Adult Social Care",
        ", ",
        "\n",
        "\t",
        "\r\n",
        "Stage: 2",
        "Immediate risk: yes",
        "mailto:",
        "@",
        "<",
        ">",
        "&amp;",
        "&#x",
        ";",
        "é",
        "ß",
        "İ",
        "ǅ",
        "\u{200b}",
        "\u{00a0}",
        "🙂",
        "ﬁ",
        "ΐ",
        "\u{0301}",
        "😀😀",
        "—",
        "–",
    ]);
    prop::collection::vec(prop_oneof![pieces.prop_map(str::to_string), any::<String>()], 0..40).prop_map(|v| v.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), shaped_text()]
}

fn labels() -> Labels {
    let config = escalation_bot::config::load(std::path::Path::new("config/default.toml")).expect("config");
    Labels::new(config.boards.iter().map(|b| b.policy()))
}

#[test]
fn reply_parsing_never_panics() {
    fuzz("parse_reply", 3000, any_text(), |t| {
        let r = parse_reply(t);
        // The new text is the reply's own text, never more.
        assert!(r.reply_text.len() <= t.len() + t.matches('\r').count() + 1);
    });
    fuzz("new_text", 2000, any_text(), |t| {
        let _ = new_text(t);
    });
}

#[test]
fn record_parsing_never_panics() {
    let labels = labels();
    fuzz("parse_record", 3000, any_text(), |t| {
        let _ = parse_record(t, &labels);
    });
    fuzz("labels", 2000, any_text(), |t| {
        for line in t.lines() {
            let _ = labels.match_line(line);
        }
        let _ = normalise_label(t);
        let _ = find_emails(t);
    });
}

#[test]
fn html_to_text_never_panics() {
    let html = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "<table>",
                "<tr>",
                "<td>",
                "</td>",
                "<th>",
                "</tr>",
                "<p>",
                "</p>",
                "<br>",
                "<!--",
                "-->",
                "&nbsp;",
                "&#8217;",
                "&#x1F600;",
                "&bogus;",
                "&",
                "<a href=\"mailto:x@y.nhs.net\">",
                "</a>",
                "<script>",
                "</script>",
                "<",
                ">",
                "<style>",
                "<td\n>",
                "é",
            ])
            .prop_map(str::to_string),
            any::<String>(),
        ],
        0..40,
    )
    .prop_map(|v| v.concat());
    fuzz("html_to_text", 3000, html, |h| {
        let _ = html_to_text(h);
    });
}

#[test]
fn dates_numbers_and_references_never_panic() {
    fuzz("review dates", 3000, any_text(), |t| {
        let _ = parse_reply(&format!("RESOLVED\nOutcome: agreed\nReview date: {t}"));
        let _ = parse_reply(&format!("EXTEND {t}"));
        let _ = parse_reply(&format!("ESCALATE to stage {t}"));
    });
    fuzz("nhs numbers", 3000, any_text(), |t| {
        let _ = nhs::normalise(t);
    });
    fuzz("references", 3000, any_text(), |t| {
        let _ = reference_in(t, &["BRAD", "TRAF", "RSAB"]);
    });
}

#[test]
fn mime_decoding_and_reading_never_panic() {
    let config = escalation_bot::config::load(std::path::Path::new("config/default.toml")).expect("config");
    let reader = Reader {
        labels: Labels::new(config.boards.iter().map(|b| b.policy())),
        limits: Limits::default(),
        board_addresses: Vec::new(),
    };
    let header_soup = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "From: a@nhs.net\r\n",
                "To: BSAB@bradford.gov.uk\r\n",
                "Subject: =?utf-8?B?4oCZ?=\r\n",
                "Subject: =?iso-8859-1?Q?caf=E9?=\r\n",
                "Content-Type: multipart/mixed; boundary=b\r\n",
                "Content-Type: text/html; charset=windows-1252\r\n",
                "Content-Transfer-Encoding: base64\r\n",
                "Content-Transfer-Encoding: quoted-printable\r\n",
                "--b\r\n",
                "--b--\r\n",
                "\r\n",
                "=E2=80=99",
                "=\r\n",
                "Auto-Submitted: auto-replied\r\n",
                "In-Reply-To: <esc.X.y.z@q>\r\n",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            any::<Vec<u8>>(),
            any::<String>().prop_map(String::into_bytes),
        ],
        0..30,
    )
    .prop_map(|v| v.concat());
    fuzz("mime decode", 3000, header_soup.clone(), |raw| {
        let _ = decode(raw, &Limits::default());
    });
    // Decoding and reading directly, not through `Reader::prepare`, which would catch a panic itself.
    fuzz("read a message", 2000, header_soup, |raw| {
        if let Ok(msg) = decode(raw, &Limits::default()) {
            let _ = reader.read_record(&msg);
            let _ = escalation_bot::mail::pipeline::Pipeline::reply_intent(&msg);
        }
    });
}

/// Text shaped like agreed actions and dates, with arbitrary Unicode between.
fn action_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "- ",
        "• ",
        "1. ",
        "a) ",
        "(iv) ",
        "Owner: ",
        "Due: ",
        " to ",
        " by ",
        "the end of ",
        "January",
        "Feb",
        "29/02/2027",
        "5/2/27",
        "+262142-12-31",
        "Friday 15th January",
        "Sam Smith <sam@x.gov.uk>",
        "(Paul Whitty)",
        "Action\tOwner\tBy",
        "\t",
        "\n",
        "; ",
        "–",
        "é",
        "🙂",
        "\u{0301}",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop_oneof![pieces.prop_map(str::to_string), any::<String>()], 0..30)
            .prop_map(|v| v.concat())
    ]
}

#[test]
fn agreed_actions_dates_and_directories_never_panic() {
    use escalation_bot::core::actions::{find_date, parse_actions};
    use escalation_bot::core::reply::parse_date_near;
    let near = chrono::NaiveDate::from_ymd_opt(2027, 1, 10);
    fuzz("agreed actions", 3000, action_text(), |t| {
        let _ = parse_actions(t, near);
        let _ = parse_actions(t, None);
        let _ = find_date(t, near);
        let _ = parse_date_near(t, near);
        let _ = parse_reply(&format!("RESOLVED – agreed\nActions:\n{t}\nOutstanding issues: {t}"));
    });
    fuzz("directory csv", 2000, any_text(), |t| {
        let _ = escalation_bot::core::directory::parse_csv(&format!("role,agency,name,email,stage\n{t}"));
        let _ = escalation_bot::core::directory::parse_csv(t);
    });
    fuzz("redaction", 2000, any_text(), |t| {
        let record = escalation_bot::core::case::Record {
            adult_name: Some("Zoë Testperson".into()),
            nhs_number: Some("9990000018".into()),
            ..Default::default()
        };
        let r = escalation_bot::core::paperwork::redact(t, &record);
        assert!(!r.contains("9990000018"));
    });
}

#[test]
fn word_documents_never_panic() {
    use escalation_bot::mail::docx::{document_text, read_text};
    let labels = labels();
    // Arbitrary bytes, and arbitrary text as document XML.
    fuzz("docx bytes", 1000, prop::collection::vec(any::<u8>(), 0..400), |b| {
        let _ = read_text(b, &|l| labels.is_label(l));
    });
    let xml = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "<w:p>",
                "</w:p>",
                "<w:r>",
                "</w:r>",
                "<w:t>",
                "</w:t>",
                "<w:tbl>",
                "</w:tbl>",
                "<w:tr>",
                "</w:tr>",
                "<w:tc>",
                "</w:tc>",
                "<w:tc/>",
                "<w:del>",
                "</w:del>",
                "<w:sdt>",
                "<w:sdtContent>",
                "</w:sdt>",
                "<w:showingPlcHdr/>",
                "<w:rPr><w:vanish/></w:rPr>",
                "<w:tab/>",
                "<w:br/>",
                "&amp;",
                "&#x1F642;",
                "&bogus;",
                "Name of adult at risk",
                "Summary",
                "\t",
            ])
            .prop_map(str::to_string),
            any::<String>()
        ],
        0..60,
    )
    .prop_map(|v| v.concat());
    fuzz("docx xml", 2000, xml, |x| {
        let _ = document_text(x, &|l| labels.is_label(l));
    });
    // A real document with its bytes changed here and there.
    let real = std::fs::read("tests/fixtures/docx/bradford-word365.docx").expect("fixture");
    fuzz(
        "docx mutated",
        300,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        |changes| {
            let mut bytes = real.clone();
            for (i, b) in changes {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            let _ = escalation_bot::mail::docx::read_record(&bytes, &labels);
        },
    );
}

/// The pieces of the shapes that stalled, or could stall, a parser: each repeated up to thousands of times
/// and mixed with arbitrary text.
const HOSTILE: &[&str] = &[
    // HTML: runs of `&`, paragraphs padding a cell, nesting, comments and tags never closed.
    "&",
    "&a",
    "&#x",
    "<p>",
    "<td>",
    "<tr>",
    "<table>",
    "<div>",
    "<!--",
    "<",
    "a<b",
    "</td>",
    // Word: nested content controls, placeholders, hidden runs, nested tables.
    "<w:sdt><w:sdtContent>",
    "<w:sdtPr><w:showingPlcHdr/></w:sdtPr>",
    "</w:sdtContent></w:sdt>",
    "<w:tbl><w:tr><w:tc>",
    "<w:p><w:r><w:t>x</w:t></w:r></w:p>",
    "<w:rPr><w:vanish/></w:rPr>",
    // Text: quote levels, label-like lines, separators, attribution-like lines, addresses.
    ">",
    "> ",
    ":",
    "Name of adult at risk: ",
    "Summary: ",
    "Actions:\n",
    "- Sam <sam@x.gov.uk> to visit by 1 March 2027\n",
    "On Tue, 5 Jan 2027 at 10:00, Sam <sam@x.gov.uk> wrote:\n",
    "From: a\n",
    "\t",
    "\n",
    "word",
    " ",
    "a@b.cc ",
];

/// A hostile input: one piece repeated `n` times, maybe wrapped in a form and mixed with a little text.
fn hostile_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(HOSTILE.to_vec()),
        0usize..20_000,
        prop::sample::select(vec![
            "",
            "RESOLVED\n",
            "ESCALATE to stage 2\n",
            "<table><tr><td>x",
            "Summary of the disagreement:\t",
        ]),
        any::<String>(),
    )
        .prop_map(|(piece, n, before, after)| format!("{before}{}{after}", piece.repeat(n)))
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes starting {:?}",
            self.0.len(),
            self.0.chars().take(120).collect::<String>()
        )
    }
}

/// A hostile input, shown shortened when a case fails (it may be a megabyte).
#[derive(Clone)]
struct Hostile(String);

#[test]
fn hostile_shapes_never_panic_nor_stall() {
    use escalation_bot::mail::docx::document_text;
    let labels = labels();
    let limit = Duration::from_secs(10);
    let timed = |what: &str, input: &Hostile, f: &dyn Fn()| {
        let t = Instant::now();
        f();
        assert!(t.elapsed() < limit, "{what} took {:?} on {input:?}", t.elapsed());
    };
    fuzz("hostile shapes", 150, hostile_text().prop_map(Hostile), |h| {
        let t = h.0.as_str();
        timed("html_to_text", h, &|| {
            let _ = html_to_text(t);
        });
        timed("document_text", h, &|| {
            let _ = document_text(&format!("<w:document><w:body>{t}</w:body></w:document>"), &|l| {
                labels.is_label(l)
            });
        });
        timed("parse_record", h, &|| {
            let _ = parse_record(t, &labels);
        });
        timed("parse_reply", h, &|| {
            let _ = parse_reply(t);
        });
        timed("decode", h, &|| {
            let raw = format!("From: a@nhs.net\r\nTo: BSAB@bradford.gov.uk\r\nContent-Type: text/html\r\n\r\n{t}");
            let _ = decode(raw.as_bytes(), &Limits::default());
        });
    });
}
