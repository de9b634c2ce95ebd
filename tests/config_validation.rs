//! Configuration loading: the shipped files load; a broken configuration reports every problem at once,
//! each with its file and key and what to do; environment overrides apply; secrets stay out of `Debug`.

use std::fs;
use std::path::Path;

use escalation_bot::config::{self, Database};

mod common;

use common::copy_config;

fn edit(path: &Path, from: &str, to: &str) {
    let s = fs::read_to_string(path).expect("read");
    assert!(s.contains(from), "{} has no {from:?}", path.display());
    fs::write(path, s.replacen(from, to, 1)).expect("write");
}

#[test]
fn the_shipped_configuration_loads_with_placeholder_warnings() {
    let c = config::load_with_env(Path::new("config/default.toml"), &|_| None).expect("loads");
    let ids: Vec<&str> = c.boards.iter().map(|b| b.id()).collect();
    assert_eq!(
        ids,
        [
            "bradford",
            "buckinghamshire",
            "rotherham",
            "south-gloucestershire",
            "trafford"
        ]
    );
    assert!(matches!(&c.settings.database, Database::Sqlite(p) if p.ends_with("data/escalation-bot.sqlite3")));
    assert!(c.warnings.iter().any(|w| w.key == "roles.independent-chair.email"));
}

#[test]
fn every_problem_is_reported_at_once_with_file_and_key() {
    let (_dir, root) = copy_config();
    edit(
        &root.join("boards/bradford.toml"),
        "timezone = \"Europe/London\"",
        "timezone = \"Europe/Londres\"",
    );
    edit(
        &root.join("boards/bradford.toml"),
        "region = \"england-and-wales\"",
        "region = \"wales\"",
    );
    edit(
        &root.join("boards/rotherham.toml"),
        "[roles.business-manager]\nname = \"RSAB Board Manager\"\nemail = \"board-manager@rotherham-sab.invalid\"\n",
        "",
    );
    edit(
        &root.join("boards/trafford.toml"),
        "start = \"09:00\"",
        "start = \"9am\"",
    );
    let bucks = root.join("boards/buckinghamshire.toml");
    let text = fs::read_to_string(&bucks).expect("read");
    fs::write(&bucks, format!("{text}\n[holidays]\nadd = [\"2027-02-30\"]\n")).expect("write");
    edit(&root.join("policies/trafford.toml"), "number = 3", "number = 4");
    edit(
        &root.join("policies/south-gloucestershire.toml"),
        "limit_working_days = 2",
        "limit_working_days = 0",
    );
    edit(
        &root.join("policies/bradford.toml"),
        "short_name = \"BSAB\"",
        "short_name = \"BSAB\"\ncolour = \"blue\"",
    );
    let errors = config::load_with_env(&root.join("default.toml"), &|_| None).expect_err("broken");
    let listed: Vec<String> = errors
        .0
        .iter()
        .map(|i| {
            let file = i
                .file
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            let dir = i
                .file
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            format!("{dir}/{file} {} :: {}", i.key, i.message)
        })
        .collect();
    let all = listed.join("\n");
    for expected in [
        "boards/bradford.toml timezone :: \"Europe/Londres\" is not a timezone name",
        "boards/bradford.toml region :: unknown region \"wales\"",
        "boards/rotherham.toml roles.business-manager :: the policy",
        "boards/trafford.toml working_hours :: use 24-hour HH:MM",
        "boards/buckinghamshire.toml holidays.add[0] :: \"2027-02-30\" is not a date",
        "policies/trafford.toml stages[2].number :: stages must be numbered 1, 2, 3… in order: expected 3, found 4",
        "policies/south-gloucestershire.toml stages[1].limit_working_days :: a limit of 0 working days cannot be met",
        "policies/bradford.toml line 8 :: unknown field `colour`",
    ] {
        assert!(all.contains(expected), "expected {expected:?} among:\n{all}");
    }
    // Bradford's board cannot load without its policy, and says which policies there are.
    assert!(
        all.contains("boards/bradford.toml policy :: no policy \"bradford\""),
        "{all}"
    );
    let shown = errors.to_string();
    assert!(shown.starts_with(&format!("the configuration has {} problem(s):", errors.0.len())));
}

#[test]
fn a_missing_config_file_says_what_to_do() {
    let errors = config::load_with_env(Path::new("/nonexistent/escalation.toml"), &|_| None).expect_err("missing");
    assert!(errors.to_string().contains("does not exist: pass --config PATH"));
}

#[test]
fn environment_overrides_the_database_and_hides_the_secret() {
    let (_dir, root) = copy_config();
    let url = "postgres://bot:s3cret@127.0.0.1:5432/escalations";
    let c = config::load_with_env(&root.join("default.toml"), &|k| {
        (k == "ESCALATION_BOT_DATABASE_URL").then(|| url.to_string())
    })
    .expect("loads");
    assert!(matches!(&c.settings.database, Database::Postgres(s) if s.0 == url));
    assert!(
        !format!("{:?}", c.settings).contains("s3cret"),
        "the password must not appear in Debug output"
    );
    let file = root.join("db-url");
    fs::write(&file, format!("{url}\n")).expect("write");
    let f = file.to_string_lossy().to_string();
    let c = config::load_with_env(&root.join("default.toml"), &|k| {
        (k == "ESCALATION_BOT_DATABASE_URL_FILE").then(|| f.clone())
    })
    .expect("loads");
    assert!(matches!(&c.settings.database, Database::Postgres(s) if s.0 == url));
    let bad = config::load_with_env(&root.join("default.toml"), &|k| {
        (k == "ESCALATION_BOT_DATABASE_URL").then(|| "mysql://x".to_string())
    })
    .expect_err("unsupported");
    assert!(bad
        .0
        .iter()
        .any(|i| i.key == "database.url" && i.message.contains("postgres://")));
}

/// Give Bradford's board an `[imap]` table with `imap` (its lines), and `top` among its top-level settings.
fn with_imap(root: &Path, top: &str, imap: &str) {
    let bradford = root.join("boards/bradford.toml");
    edit(&bradford, "id = \"bradford\"\n", &format!("id = \"bradford\"\n{top}"));
    let text = fs::read_to_string(&bradford).expect("read");
    fs::write(&bradford, format!("{text}\n[imap]\n{imap}\n")).expect("write");
}

/// Each issue as `dir/file key :: message`.
fn listed(issues: &[config::Issue]) -> Vec<String> {
    issues
        .iter()
        .map(|i| {
            let name = |p: Option<&Path>| {
                p.and_then(|p| p.file_name())
                    .and_then(|f| f.to_str())
                    .unwrap_or_default()
                    .to_string()
            };
            format!(
                "{}/{} {} :: {}",
                name(i.file.parent()),
                name(Some(&i.file)),
                i.key,
                i.message
            )
        })
        .collect()
}

#[test]
fn plain_imap_is_refused_unless_the_server_is_on_this_machine() {
    for host in [
        "imap.bradford.gov.uk",
        "10.1.2.3",
        "128.0.0.1",
        "::2",
        "localhost.bradford.gov.uk",
    ] {
        let (_dir, root) = copy_config();
        with_imap(
            &root,
            "",
            &format!("host = \"{host}\"\nport = 143\ntls = \"none\"\nusername = \"bsab\""),
        );
        let errors = config::load_with_env(&root.join("default.toml"), &|_| None).expect_err("refused");
        let all = listed(&errors.0).join("\n");
        let expected = format!(
            "boards/bradford.toml imap.tls :: \"none\" sends the mailbox password and every message unencrypted, \
             so it is allowed only for a server on this machine (127.0.0.1, ::1 or localhost), but imap.host is \
             \"{host}\""
        );
        assert!(all.contains(&expected), "expected {expected:?} among:\n{all}");
        // As check-config shows it: the file, then the key.
        assert!(
            errors
                .to_string()
                .contains("boards/bradford.toml: imap.tls: \"none\" sends"),
            "{errors}"
        );
    }
    for host in ["127.0.0.1", "127.0.0.53", "::1", "localhost"] {
        let (_dir, root) = copy_config();
        with_imap(
            &root,
            "",
            &format!("host = \"{host}\"\nport = 143\ntls = \"none\"\nusername = \"bsab\""),
        );
        let c = config::load_with_env(&root.join("default.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("tls = \"none\" to {host} is allowed: {e}"));
        let imap = c.board("bradford").and_then(|b| b.settings.imap.clone()).expect("imap");
        assert_eq!((imap.host.as_str(), imap.tls.as_str()), (host, "none"));
    }
    // A choice that is neither.
    let (_dir, root) = copy_config();
    with_imap(
        &root,
        "",
        "host = \"imap.bradford.gov.uk\"\ntls = \"starttls\"\nusername = \"bsab\"",
    );
    let errors = config::load_with_env(&root.join("default.toml"), &|_| None).expect_err("refused");
    let all = listed(&errors.0).join("\n");
    assert!(
        all.contains("boards/bradford.toml imap.tls :: \"starttls\" is not a choice"),
        "{all}"
    );
}

#[test]
fn imap_defaults_re_issue_idle_well_inside_ten_minutes_and_bad_values_are_refused() {
    let (_dir, root) = copy_config();
    with_imap(
        &root,
        "trusted_authserv_id = \"mx.bradford.gov.uk\"\n",
        "host = \"imap.bradford.gov.uk\"\nusername = \"bsab\"",
    );
    let c = config::load_with_env(&root.join("default.toml"), &|_| None).expect("loads");
    let imap = c.board("bradford").and_then(|b| b.settings.imap.clone()).expect("imap");
    assert!(
        imap.idle_seconds <= 10 * 60,
        "IDLE re-issued after {} s",
        imap.idle_seconds
    );
    assert_eq!((imap.tls.as_str(), imap.port), ("tls", 993));

    let (_dir, root) = copy_config();
    with_imap(
        &root,
        "",
        "host = \"imap.bradford.gov.uk\"\nusername = \"bsab\"\nidle_seconds = 3600\nprocessed_folder = \"INBOX\"",
    );
    let errors = config::load_with_env(&root.join("default.toml"), &|_| None).expect_err("refused");
    let all = listed(&errors.0).join("\n");
    for expected in [
        "boards/bradford.toml imap.idle_seconds :: 3600 is out of range",
        "boards/bradford.toml imap.processed_folder :: is \"INBOX\", the watched folder itself",
    ] {
        assert!(all.contains(expected), "expected {expected:?} among:\n{all}");
    }
}

/// What check-config must say about a board read over IMAP without its mail server's authserv-id.
const AUTHSERV_WARNING: &str = "commands that are not replies to the bot's own email to their sender are held for \
                                a CONFIRM by email, because without the mail server's Authentication-Results the \
                                bot cannot tell a forged From";

#[test]
fn an_imap_board_without_a_trusted_authserv_id_is_warned_what_that_leaves_open() {
    let (_dir, root) = copy_config();
    with_imap(&root, "", "host = \"imap.bradford.gov.uk\"\nusername = \"bsab\"");
    let c = config::load_with_env(&root.join("default.toml"), &|_| None).expect("loads");
    let warnings = listed(&c.warnings);
    let ours: Vec<&String> = warnings.iter().filter(|w| w.contains(AUTHSERV_WARNING)).collect();
    assert_eq!(ours.len(), 1, "{warnings:#?}");
    assert!(
        ours[0].starts_with("boards/bradford.toml trusted_authserv_id :: "),
        "{}",
        ours[0]
    );

    // With the authserv-id set, nothing to warn about.
    let (_dir, root) = copy_config();
    with_imap(
        &root,
        "trusted_authserv_id = \"mx.bradford.gov.uk\"\n",
        "host = \"imap.bradford.gov.uk\"\nusername = \"bsab\"",
    );
    let c = config::load_with_env(&root.join("default.toml"), &|_| None).expect("loads");
    assert!(
        !c.warnings.iter().any(|w| w.message.contains(AUTHSERV_WARNING)),
        "{:#?}",
        c.warnings
    );
    // The shipped boards read a local folder, not IMAP: no such warning either.
    let c = config::load_with_env(Path::new("config/default.toml"), &|_| None).expect("loads");
    assert!(
        !c.warnings.iter().any(|w| w.key == "trusted_authserv_id"),
        "{:#?}",
        c.warnings
    );

    // An empty authserv-id would trust any Authentication-Results header that names no server.
    let (_dir, root) = copy_config();
    with_imap(
        &root,
        "trusted_authserv_id = \"\"\n",
        "host = \"imap.bradford.gov.uk\"\nusername = \"bsab\"",
    );
    let errors = config::load_with_env(&root.join("default.toml"), &|_| None).expect_err("refused");
    let all = listed(&errors.0).join("\n");
    assert!(
        all.contains("boards/bradford.toml trusted_authserv_id :: \"\" is not an authserv-id"),
        "{all}"
    );
}

#[test]
fn a_board_without_a_staff_role_is_warned_that_held_records_would_go_unseen() {
    let (_dir, root) = copy_config();
    // Buckinghamshire without its business manager: only the Independent Chair is left.
    let path = root.join("boards/buckinghamshire.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let cut = text.find("[roles.business-manager]").expect("role");
    let rest = text.get(cut..).unwrap_or_default();
    let end = rest.find("[roles.independent-chair]").expect("next role");
    std::fs::write(
        &path,
        format!(
            "{}{}",
            text.get(..cut).unwrap_or_default(),
            rest.get(end..).unwrap_or_default()
        ),
    )
    .expect("write");
    let c = config::load_with_env(&root.join("default.toml"), &|_| None).expect("loads");
    let warnings = listed(&c.warnings);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("boards/buckinghamshire.toml roles :: ") && w.contains("held for approval")),
        "{warnings:#?}"
    );
    // The shipped boards all have one.
    let c = config::load_with_env(Path::new("config/default.toml"), &|_| None).expect("loads");
    assert!(!c.warnings.iter().any(|w| w.key == "roles"), "{:#?}", c.warnings);
}
