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

/// The range indexings (`x[a..b]`) in a line of code, if any.
fn range_indexing(code: &str) -> bool {
    let bytes = code.as_bytes();
    let mut depth_start = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => {
                // An index follows a name, a call or another index; a slice type or array does not.
                let indexed =
                    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b')' | b']'));
                depth_start.push((i, indexed));
            }
            b']' => {
                if let Some((start, true)) = depth_start.pop() {
                    if code[start..i].contains("..") {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

#[test]
fn text_is_never_sliced_by_byte_index() {
    // Slicing a string at a byte index panics inside a multi-byte character (a curly apostrophe in a
    // reply once stopped the daemon). Shipped code slices text with `get(..)`, `char_indices`,
    // `strip_prefix`/`strip_suffix` or `split_at_checked`; a range index that is safe (a byte buffer, or an
    // index just found for an ASCII character in the same string) says why on its line: `// byte-slice: …`.
    let mut offences = Vec::new();
    let mut stack = vec![Path::new("src").to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = fs::read_to_string(&path).expect("read file");
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                let code = line.split("//").next().unwrap_or_default();
                // `split_at`, `truncate` and `drain` on a String panic off a character boundary too.
                let cutting = [".split_at(", ".truncate(", ".drain("].iter().any(|c| code.contains(c));
                if (range_indexing(code) || cutting) && !line.contains("byte-slice:") {
                    offences.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "slice text with get(..) or by characters, or say why the index is safe with `// byte-slice: …`:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_slicing_check_sees_what_it_should() {
    assert!(range_indexing("let a = s[..i].to_string();"));
    assert!(range_indexing("f(x)[1..]"));
    assert!(!range_indexing("let a: &[u8] = &[];"));
    assert!(!range_indexing("match v { [a, ..] => 1 }"));
    assert!(!range_indexing("s.get(..i)"));
}
