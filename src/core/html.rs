//! HTML to text, for the record reader: an email's HTML part (a Word form pasted into Outlook is a table)
//! becomes lines the reader reads as it reads plain text, each table row a line with its cells separated
//! by tabs, and character references decoded.
//!
//! One pass over the input, and each step costs the same wherever it falls in the text: the whole of a
//! hostile part (a million `&`, a cell of 400,000 paragraphs, deep nesting) is read in time linear in its
//! size (`tests/linear_growth.rs`). Pure: text in, text out.

/// Text from HTML, keeping a table's structure: each row on a line, its cells separated by a tab; block
/// elements and `<br>` as line breaks; entities decoded; scripts and styles dropped.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    let mut cell_open = false;
    // Whether the open cell holds any text yet (anything but white space since it opened): kept as text is
    // added, so that a paragraph in a cell costs the same however much the cell already holds.
    let mut cell_has_text = false;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_until.is_none() {
                decode_entities_into(&mut out, rest);
            }
            break;
        };
        if skip_until.is_none() {
            let text = rest.get(..lt).unwrap_or_default();
            let from = out.len();
            if cell_open && text.contains(['\n', '\r']) {
                // In a cell, a line break in the source is white space (Word writes one between the cell
                // and its paragraph); only <br> and paragraphs break the value's lines.
                decode_entities_into(&mut out, &text.replace(['\n', '\r'], " "));
            } else {
                decode_entities_into(&mut out, text);
            }
            if !cell_has_text {
                cell_has_text = out.get(from..).is_some_and(|added| !added.trim().is_empty());
            }
        }
        let after = rest.get(lt + 1..).unwrap_or_default();
        if after.starts_with("!--") {
            rest = after.find("-->").and_then(|i| after.get(i + 3..)).unwrap_or("");
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        // The tag's name, lower case, without copying the tag (Word's tags carry long style attributes).
        let tag = after.get(..gt).unwrap_or_default().trim_start();
        rest = after.get(gt + 1..).unwrap_or_default();
        let closing = tag.starts_with('/');
        let name_src = tag.trim_start_matches('/').as_bytes();
        let len = name_src.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        let mut buf = [0u8; 12];
        let name = match name_src.get(..len).filter(|n| n.len() <= buf.len()) {
            Some(n) => {
                for (d, s) in buf.iter_mut().zip(n) {
                    *d = s.to_ascii_lowercase();
                }
                std::str::from_utf8(buf.get(..len).unwrap_or_default()).unwrap_or("")
            }
            None => "",
        };
        if let Some(end) = skip_until {
            if closing && name == end {
                skip_until = None;
            }
            continue;
        }
        match (name, closing) {
            ("script", false) => skip_until = Some("script"),
            ("style", false) => skip_until = Some("style"),
            ("head", false) => skip_until = Some("head"),
            ("td" | "th", false) => {
                if cell_open {
                    out.push('\t');
                }
                cell_open = true;
                cell_has_text = false;
            }
            ("tr", _) => {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                cell_open = false;
            }
            ("br", _) => out.push('\n'),
            // Inside a cell, a new paragraph after some text is a new line of the same value.
            ("p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "table" | "blockquote", _)
                if !cell_open || (!closing && cell_has_text) =>
            {
                out.push('\n');
            }
            _ => {}
        }
    }
    // Tidy: white space in each cell collapsed, no tabs or spaces at line ends, at most one blank line in a row.
    let mut tidy = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let start = tidy.len();
        for (n, cell) in line.split('\t').enumerate() {
            if n > 0 {
                tidy.push('\t');
            }
            for (k, word) in cell.split_whitespace().enumerate() {
                if k > 0 {
                    tidy.push(' ');
                }
                tidy.push_str(word);
            }
        }
        if tidy.get(start..).unwrap_or_default().trim().is_empty() {
            tidy.truncate(start); // byte-slice: `start` was the string's length, a character boundary
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
            let kept = tidy.get(start..).unwrap_or_default().trim_end_matches('\t').len();
            tidy.truncate(start + kept); // byte-slice: the length of a trimmed suffix of the same text
        }
        tidy.push('\n');
    }
    tidy.trim().to_string()
}

/// The longest character reference name read, in bytes (`#x1F600`, `hellip`, `Eacute`): a longer one is
/// left as written.
const MAX_ENTITY_NAME: usize = 10;

/// Append `s` to `out` with its character references decoded (`&amp;`, `&#8217;`, `&#x2019;`, `&eacute;`):
/// one pass, each `&` looking at most [`MAX_ENTITY_NAME`] bytes ahead.
fn decode_entities_into(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        // The `;` is looked for only as far as the longest name could reach: searching the rest of the text
        // at every `&` made a run of `&` quadratic.
        let end = after.bytes().take(MAX_ENTITY_NAME + 1).position(|b| b == b';');
        let decoded = end.and_then(|e| {
            let ent = after.get(..e).unwrap_or_default();
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "ndash" => Some('–'),
                "mdash" => Some('—'),
                "rsquo" | "lsquo" => Some('\''),
                "ldquo" | "rdquo" => Some('"'),
                "hellip" => Some('…'),
                "bull" => Some('•'),
                "pound" => Some('£'),
                "euro" => Some('€'),
                "copy" => Some('©'),
                _ if ent.len() > 2 && ent.is_ascii() && !ent.starts_with('#') => named_latin(ent),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32)
                    .filter(|c| *c != '\0'),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = after.get(e + 1..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Accented Latin letters by entity name: `euml` is `ë`, `Eacute` is `É`.
fn named_latin(ent: &str) -> Option<char> {
    let (base, mark) = ent.split_at(1); // byte-slice: callers pass ASCII entity names of 3 or more bytes
    let lower = base.to_ascii_lowercase();
    let c = match (lower.as_str(), mark) {
        ("a", "grave") => 'à',
        ("a", "acute") => 'á',
        ("a", "circ") => 'â',
        ("a", "uml") => 'ä',
        ("a", "ring") => 'å',
        ("e", "grave") => 'è',
        ("e", "acute") => 'é',
        ("e", "circ") => 'ê',
        ("e", "uml") => 'ë',
        ("i", "grave") => 'ì',
        ("i", "acute") => 'í',
        ("i", "circ") => 'î',
        ("i", "uml") => 'ï',
        ("o", "grave") => 'ò',
        ("o", "acute") => 'ó',
        ("o", "circ") => 'ô',
        ("o", "uml") => 'ö',
        ("o", "slash") => 'ø',
        ("u", "grave") => 'ù',
        ("u", "acute") => 'ú',
        ("u", "circ") => 'û',
        ("u", "uml") => 'ü',
        ("c", "cedil") => 'ç',
        ("n", "tilde") => 'ñ',
        ("y", "acute") => 'ý',
        _ => return None,
    };
    Some(if base.chars().all(|c| c.is_ascii_uppercase()) {
        c.to_uppercase().next().unwrap_or(c)
    } else {
        c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_tables_become_tabbed_lines() {
        let html = "<table><tr><td><p>Name of adult at risk:</p></td><td><p>Alex&nbsp;Testperson</p></td></tr>\
                    <tr><td>Stage</td><td>2</td></tr></table><script>x</script>";
        assert_eq!(html_to_text(html), "Name of adult at risk:\tAlex Testperson\nStage\t2");
    }

    #[test]
    fn entities_are_decoded_and_what_is_not_one_is_kept() {
        let mut out = String::new();
        decode_entities_into(
            &mut out,
            "a &amp; b &#8217;&#x2019;&Eacute;&eacute; &nbsp;&bogus; & ; &#xFFFFFFFFF; &averyverylongname; &#0; &",
        );
        assert_eq!(
            out,
            "a & b \u{2019}\u{2019}\u{c9}\u{e9}  &bogus; & ; &#xFFFFFFFFF; &averyverylongname; &#0; &"
        );
    }

    /// The first decoding of entities, which looked for the `;` in the whole rest of the text.
    fn decode_entities_oracle(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            match after.find(';').filter(|e| *e <= 10) {
                Some(e) => {
                    let mut one = String::new();
                    decode_entities_into(&mut one, &rest[i..i + e + 2]);
                    if one.starts_with('&') && one.len() > 1 {
                        out.push('&');
                        rest = after;
                    } else {
                        out.push_str(&one);
                        rest = &after[e + 1..];
                    }
                }
                None => {
                    out.push('&');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The first, simpler html_to_text, which the faster one must agree with.
    fn html_to_text_oracle(html: &str) -> String {
        let mut out = String::with_capacity(html.len() / 2);
        let mut rest = html;
        let mut skip_until: Option<&'static str> = None;
        let mut cell_open = false;
        let mut cell_start = 0;
        while !rest.is_empty() {
            let Some(lt) = rest.find('<') else {
                if skip_until.is_none() {
                    decode_entities_into(&mut out, rest);
                }
                break;
            };
            if skip_until.is_none() {
                if cell_open {
                    decode_entities_into(&mut out, &rest[..lt].replace(['\n', '\r'], " "));
                } else {
                    decode_entities_into(&mut out, &rest[..lt]);
                }
            }
            let after = &rest[lt + 1..];
            if after.starts_with("!--") {
                rest = after.find("-->").map(|i| &after[i + 3..]).unwrap_or("");
                continue;
            }
            let Some(gt) = after.find('>') else { break };
            let tag = after[..gt].trim().to_ascii_lowercase();
            rest = &after[gt + 1..];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if let Some(end) = skip_until {
                if closing && name == end {
                    skip_until = None;
                }
                continue;
            }
            match (name.as_str(), closing) {
                ("script", false) => skip_until = Some("script"),
                ("style", false) => skip_until = Some("style"),
                ("head", false) => skip_until = Some("head"),
                ("td" | "th", false) => {
                    if cell_open {
                        out.push('\t');
                    }
                    cell_open = true;
                    cell_start = out.len();
                }
                ("tr", _) => {
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    cell_open = false;
                }
                ("br", _) => out.push('\n'),
                // Inside a cell, a new paragraph after some text is a new line of the same value.
                ("p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "table" | "blockquote", _)
                    if !cell_open || (!closing && !out[cell_start..].trim().is_empty()) =>
                {
                    out.push('\n');
                }
                _ => {}
            }
        }
        // Tidy: no spaces at line ends, at most one blank line in a row.
        let mut tidy = String::with_capacity(out.len());
        let mut blank = 0;
        for line in out.lines() {
            let l = line
                .split('\t')
                .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\t");
            let l = l.trim_matches(' ').to_string();
            if l.trim().is_empty() {
                blank += 1;
                if blank > 1 {
                    continue;
                }
            } else {
                blank = 0;
            }
            tidy.push_str(l.trim_end_matches('\t'));
            tidy.push('\n');
        }
        tidy.trim().to_string()
    }

    #[test]
    fn html_to_text_agrees_with_the_oracle_on_the_word_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/forms");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let raw = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if raw.contains("<table") || raw.contains("<TABLE") {
                assert_eq!(
                    html_to_text(&raw),
                    html_to_text_oracle(&raw),
                    "{}",
                    entry.path().display()
                );
                n += 1;
            }
        }
        assert!(n >= 5, "the Word-HTML fixtures were read ({n})");
    }

    #[test]
    fn the_three_stall_shapes_read_as_before() {
        // A cell padded with paragraphs: one value line, then the padding collapsed.
        let cell = format!(
            "<table><tr><td>Summary</td><td>text{}</td></tr></table>",
            "<p>".repeat(1000)
        );
        assert_eq!(html_to_text(&cell), html_to_text_oracle(&cell));
        assert_eq!(html_to_text(&cell), "Summary\ttext");
        let amps = "&".repeat(1000);
        assert_eq!(html_to_text(&amps), amps);
        let mut nested = "<div>".repeat(500);
        nested.push_str("x&amp;y");
        assert_eq!(html_to_text(&nested), "x&y");
    }

    proptest::proptest! {
        #[test]
        fn html_to_text_agrees_with_the_oracle(html in "(<(/)?(td|TR|p|Div|br|table|script|style|head|b|span)( style='x:y')?>|&(amp|nbsp|#39|eacute|x);|[a-z :\t\n]{0,8}|<!-- c -->)*") {
            proptest::prop_assert_eq!(html_to_text(&html), html_to_text_oracle(&html));
        }

        #[test]
        fn entities_agree_with_the_oracle(s in "(&|;|#|x|[0-9]|amp|eacute|nbsp|[a-z ]{0,12}|é)*") {
            let mut out = String::new();
            decode_entities_into(&mut out, &s);
            proptest::prop_assert_eq!(out, decode_entities_oracle(&s));
        }
    }
}
