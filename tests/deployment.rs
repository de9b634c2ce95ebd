//! The deployment files are checked against the configuration they ship: docker-compose.yml parsed, every
//! file, secret, service and port it names present and matching the bot's configuration (which
//! `check-config` accepts as the container sees it); `docker compose config` where a client exists; the
//! Dockerfile's non-root user, HEALTHCHECK and cached dependency layer; the systemd unit's hardening
//! (`systemd-analyze verify` where it exists). And the guides in docs/ run: every command in their `sh`
//! blocks, in order, in a fresh copy of the shipped configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn compose() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string("docker-compose.yml").expect("docker-compose.yml")).expect("YAML")
}

/// `${VAR:-default}` as compose reads it with VAR unset.
fn defaults(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else { break };
        let inner = &rest[start + 2..start + end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let p = entry.expect("entry").path();
        let target = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}

#[test]
fn every_file_secret_service_and_port_the_compose_file_names_exists_and_matches_the_configuration() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    let names: Vec<String> = services.keys().filter_map(|k| k.as_str().map(String::from)).collect();
    for want in ["postgres", "mail", "relay", "escalation-bot"] {
        assert!(names.iter().any(|n| n == want), "service {want} in {names:?}");
    }
    let secrets = c["secrets"].as_mapping().expect("secrets");
    for (name, s) in secrets {
        let file = defaults(s["file"].as_str().expect("secret file"));
        assert!(Path::new(&file).is_file(), "secret {name:?}: {file} exists");
    }
    let mut published = Vec::new();
    for (name, s) in services {
        let name = name.as_str().expect("name");
        if let Some(build) = s.get("build") {
            let (context, dockerfile) = match build {
                Value::String(ctx) => (ctx.clone(), "Dockerfile".to_string()),
                b => (
                    b["context"].as_str().unwrap_or(".").to_string(),
                    b["dockerfile"].as_str().unwrap_or("Dockerfile").to_string(),
                ),
            };
            assert!(
                Path::new(&context).join(&dockerfile).is_file(),
                "{name}: {context}/{dockerfile}"
            );
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().expect("short volume syntax");
            let host = v.split(':').next().expect("host part");
            if host.starts_with("./") {
                assert!(Path::new(host).exists(), "{name}: volume {host} exists");
            } else {
                assert!(
                    c["volumes"].get(host).is_some(),
                    "{name}: named volume {host} is declared"
                );
            }
        }
        for secret in s["secrets"].as_sequence().into_iter().flatten() {
            let secret = secret.as_str().expect("secret name");
            assert!(secrets.contains_key(secret), "{name}: secret {secret} is declared");
        }
        if let Some(mode) = s["network_mode"].as_str() {
            let other = mode.strip_prefix("service:").expect("service:NAME");
            assert!(names.iter().any(|n| n == other), "{name}: network_mode {mode}");
        }
        if let Some(deps) = s["depends_on"].as_mapping() {
            for d in deps.keys() {
                assert!(
                    names.iter().any(|n| Some(n.as_str()) == d.as_str()),
                    "{name}: depends on {d:?}"
                );
            }
        }
        for p in s["ports"].as_sequence().into_iter().flatten() {
            let p = defaults(p.as_str().expect("port"));
            published.push(p.rsplit(':').next().expect("container port").to_string());
        }
    }

    // The bot's configuration as the container sees it: /app/config and /app/policies from the mounts.
    let bot = &c["services"]["escalation-bot"];
    let mounts: Vec<&str> = bot["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let app = tempfile::tempdir().expect("temp dir");
    for m in &mounts {
        let mut parts = m.split(':');
        let (host, inside) = (parts.next().expect("host"), parts.next().expect("container"));
        if let Some(sub) = inside
            .strip_prefix("/app/")
            .filter(|s| ["config", "policies"].contains(s))
        {
            copy_dir(Path::new(host), &app.path().join(sub));
        }
    }
    let main = app.path().join("config/default.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_escalation-bot"));
    cmd.arg("--config").arg(&main).args(["check-config", "--json"]);
    cmd.env(
        "ESCALATION_BOT_DATABASE_URL",
        "postgres://escalation_bot@postgres:5432/escalation_bot",
    );
    let out = cmd.output().expect("check-config");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["boards"],
        serde_json::json!([
            "bradford",
            "buckinghamshire",
            "rotherham",
            "south-gloucestershire",
            "trafford"
        ])
    );
    // Every port the bot uses inside the shared namespace is one the mail service publishes.
    let boards = app.path().join("config/boards");
    for b in [
        "bradford",
        "buckinghamshire",
        "rotherham",
        "south-gloucestershire",
        "trafford",
    ] {
        let text = std::fs::read_to_string(boards.join(format!("{b}.toml"))).expect("board");
        let board: toml::Value = toml::from_str(&text).expect("TOML");
        let imap = &board["imap"];
        assert_eq!(imap["host"].as_str(), Some("127.0.0.1"), "{b}");
        assert!(
            published.contains(&imap["port"].to_string()),
            "{b}: IMAP port {} published",
            imap["port"]
        );
        let secret = format!("imap_password_{b}");
        assert!(
            bot["secrets"]
                .as_sequence()
                .expect("secrets")
                .iter()
                .any(|s| s.as_str() == Some(&secret)),
            "{b}: the bot is given {secret}"
        );
    }
    let settings: toml::Value = toml::from_str(&std::fs::read_to_string(&main).expect("main")).expect("TOML");
    assert!(
        published.contains(&settings["smtp"]["port"].to_string()),
        "the relay's port is published"
    );
    let http = settings["http"]["listen"].as_str().expect("[http] listen");
    assert!(
        published.contains(&http.rsplit(':').next().expect("port").to_string()),
        "{http} is published"
    );
    // The image's HEALTHCHECK reads the same file.
    let dockerfile = std::fs::read_to_string("Dockerfile").expect("Dockerfile");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"/app/config/default.toml\", \"health\""));

    if Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("docker")
            .args(["compose", "config", "--quiet"])
            .output()
            .expect("docker");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    } else {
        println!("no `docker compose` client here: checked by parsing alone");
    }
}

#[test]
fn the_image_runs_as_a_user_with_a_healthcheck_and_caches_its_dependencies() {
    let d = std::fs::read_to_string("Dockerfile").expect("Dockerfile");
    let user = d.lines().rev().find(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && !user.trim_end().ends_with(" 0"), "{user}");
    assert!(d.contains("HEALTHCHECK"));
    // Cargo.toml and Cargo.lock are copied, and dependencies built, before the sources.
    let manifest = d.find("COPY Cargo.toml Cargo.lock").expect("the manifest copied first");
    let sources = d.find("COPY src").expect("the sources copied");
    let deps_build = d[manifest..sources].find("cargo build").is_some();
    assert!(
        manifest < sources && deps_build,
        "dependencies are built in their own layer"
    );
    assert!(std::fs::read_to_string(".dockerignore")
        .expect(".dockerignore")
        .contains("target"));
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit = std::fs::read_to_string("deploy/systemd/escalation-bot.service").expect("unit");
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=escalation-bot",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "{line}");
    }
    let stop = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec");
    let secs: u64 = stop.trim_end_matches('s').parse().expect("seconds");
    assert!(
        secs > escalation_bot::app::STOP_WITHIN.as_secs(),
        "{secs} s leaves the daemon its stop time"
    );
    if Path::new("/usr/bin/systemd-analyze").exists() {
        // Verified with the binary it names replaced by one that exists here.
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join("escalation-bot.service");
        std::fs::write(
            &copy,
            unit.replace("/usr/local/bin/escalation-bot", env!("CARGO_BIN_EXE_escalation-bot")),
        )
        .expect("write");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    }
}

/// The `sh` blocks of a Markdown file, in order: (line number, command).
fn sh_commands(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_sh = None;
    for (n, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            in_sh = match in_sh {
                None => Some(info.trim() == "sh"),
                Some(_) => None,
            };
            continue;
        }
        if in_sh == Some(true) && !t.is_empty() && !t.starts_with('#') {
            out.push((n + 1, t.to_string()));
        }
    }
    out
}

#[test]
fn every_command_in_the_guides_runs_as_written() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_escalation-bot"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let readme = std::fs::read_to_string("README.md").expect("README");
    let mut ran = 0;
    for guide in ["docs/practitioners.md", "docs/board-managers.md", "docs/operators.md"] {
        assert!(readme.contains(guide), "README links {guide}");
        let md = std::fs::read_to_string(guide).expect("guide");
        let sandbox = tempfile::tempdir().expect("temp dir");
        for sub in ["config", "docs", "templates"] {
            copy_dir(Path::new(sub), &sandbox.path().join(sub));
        }
        std::fs::create_dir_all(sandbox.path().join("data")).expect("data");
        for (line, command) in sh_commands(&md) {
            let program = command.split_whitespace().next().unwrap_or_default();
            assert!(
                ["escalation-bot", "cp", "mkdir", "ls", "cat"].contains(&program),
                "{guide}:{line}: {program} is not a command the guides' test can run"
            );
            let out = Command::new("bash")
                .args(["-e", "-c", &command])
                .current_dir(sandbox.path())
                .env("PATH", &path)
                .env_remove("ESCALATION_BOT_CONFIG")
                .env_remove("ESCALATION_BOT_DATABASE_URL")
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "{guide}:{line}: `{command}` failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 30, "{ran} commands ran");
}
