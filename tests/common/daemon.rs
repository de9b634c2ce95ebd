//! The real binary run as a daemon by a test: its standard error read line by line, so that a test can
//! wait for what it says; stopped with SIGTERM (or killed) at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub said: Vec<String>,
}

impl Daemon {
    /// Start `escalation-bot --config CONFIG run` with `env`, and wait until it says `ready_text`.
    pub fn start(config: &Path, env: &[(&str, &str)], ready_text: &str) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_escalation-bot"));
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env("ESCALATION_BOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            said: Vec::new(),
        };
        d.wait_for(ready_text, Duration::from_secs(30));
        d
    }

    /// Wait until the daemon says `text` (a line it said before this call counts too).
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        if self.said.iter().any(|l| l.contains(text)) {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let hit = line.contains(text);
                self.said.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("the daemon never said {text:?}; it said:\n{}", self.said.join("\n"));
    }

    /// How many lines said so far contain `text` (reading what has arrived).
    pub fn count(&mut self, text: &str) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.said.push(line);
        }
        self.said.iter().filter(|l| l.contains(text)).count()
    }

    /// SIGTERM, and the exit status with how long it took to exit.
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        let asked = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        (status, asked.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
