//! ARCHITECTURE.md's invariants that can be checked by reading the source.

use std::fs;
use std::path::Path;

/// Code lines (comments and unit-test modules dropped) of every file under `dir`.
fn code_lines(dir: &Path) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(code_lines(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("read file");
            for (i, line) in text.lines().enumerate() {
                // A file's unit tests come last, after `#[cfg(test)]`; they may unwrap.
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                let code = line.split("//").next().unwrap_or_default();
                if !code.trim().is_empty() {
                    out.push((path.display().to_string(), i + 1, code.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn the_core_does_no_io_and_never_reads_the_clock() {
    let forbidden = [
        "sqlx",
        "tokio",
        "lettre",
        "async_imap",
        "std::fs",
        "std::net",
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant::now",
        "std::env",
    ];
    let offences: Vec<String> = code_lines(Path::new("src/core"))
        .into_iter()
        .filter(|(_, _, code)| forbidden.iter().any(|f| code.contains(f)))
        .map(|(file, line, code)| format!("{file}:{line}: {}", code.trim()))
        .collect();
    assert!(
        offences.is_empty(),
        "the functional core must stay pure:\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_unwrap_in_the_shipped_code() {
    // Tests may unwrap; the daemon must not, on anything from outside. `unwrap_or*` is fine.
    let offences: Vec<String> = code_lines(Path::new("src"))
        .into_iter()
        .filter(|(_, _, code)| code.contains(".unwrap()") || code.contains(".expect("))
        .map(|(file, line, code)| format!("{file}:{line}: {}", code.trim()))
        .collect();
    assert!(
        offences.is_empty(),
        "use ? or a clear error instead:\n{}",
        offences.join("\n")
    );
}
