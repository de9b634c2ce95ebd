//! Configuration loading: the shipped files load; a broken configuration reports every problem at once,
//! each with its file and key and what to do; environment overrides apply; secrets stay out of `Debug`.

use std::fs;
use std::path::{Path, PathBuf};

use escalation_bot::config::{self, Database};

/// A copy of the shipped configuration in a temporary folder, to break.
fn copy_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("config");
    for sub in ["policies", "boards"] {
        fs::create_dir_all(root.join(sub)).expect("mkdir");
        for entry in fs::read_dir(Path::new("config").join(sub)).expect("read config") {
            let p = entry.expect("entry").path();
            fs::copy(&p, root.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    fs::copy("config/default.toml", root.join("default.toml")).expect("copy");
    (dir, root)
}

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
