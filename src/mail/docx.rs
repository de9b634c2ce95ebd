//! The board's record form as a Word document, as HTML and as plain text, and a Word document read back
//! as text.
//!
//! Writing: a `.docx` is a zip archive of XML parts (ECMA-376); [`write`] makes the smallest set Word,
//! LibreOffice and Google Docs open — content types, relationships, the document, its styles and the
//! document properties — with the form as a two-column table, then the stages and the agreed actions.
//!
//! Reading: [`read_text`] turns `word/document.xml` into the text a person sees, tables as tab-separated
//! lines (as `core::html::html_to_text` does for HTML tables), so that the same record reader reads it. What
//! Word shows but is not the document's text is left out: deleted text of tracked changes, field codes,
//! hidden text, a content control's placeholder, and the fallback copy of a text box.

use std::io::{Cursor, Read, Write};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use zip::write::SimpleFileOptions;

use crate::core::paperwork::FilledForm;

/// The MIME type of a `.docx`.
pub const DOCX_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// The largest `word/document.xml` read, uncompressed: a form is a few hundred KB at most.
const MAX_DOCUMENT_XML: u64 = 8 * 1024 * 1024;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Characters XML 1.0 cannot carry.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            '\u{FFFE}' | '\u{FFFF}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Runs for a text: line breaks as `<w:br/>`, tabs as `<w:tab/>`.
fn runs(text: &str, bold: bool, italic: bool) -> String {
    let props = match (bold, italic) {
        (true, true) => "<w:rPr><w:b/><w:i/></w:rPr>",
        (true, false) => "<w:rPr><w:b/></w:rPr>",
        (false, true) => "<w:rPr><w:i/></w:rPr>",
        (false, false) => "",
    };
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str(&format!("<w:r>{props}<w:br/></w:r>"));
        }
        for (j, part) in line.split('\t').enumerate() {
            if j > 0 {
                out.push_str(&format!("<w:r>{props}<w:tab/></w:r>"));
            }
            if !part.is_empty() {
                out.push_str(&format!(
                    "<w:r>{props}<w:t xml:space=\"preserve\">{}</w:t></w:r>",
                    esc(part)
                ));
            }
        }
    }
    out
}

fn para(text: &str, style: Option<&str>, bold: bool, italic: bool) -> String {
    let ppr = style
        .map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"))
        .unwrap_or_default();
    format!("<w:p>{ppr}{}</w:p>", runs(text, bold, italic))
}

/// A cell: its paragraphs (one per blank-line-separated block), shaded when a label.
fn cell(text: &str, width: u32, label: bool, span: u32) -> String {
    let mut tcpr = format!("<w:tcW w:w=\"{width}\" w:type=\"dxa\"/>");
    if span > 1 {
        tcpr.push_str(&format!("<w:gridSpan w:val=\"{span}\"/>"));
    }
    if label {
        tcpr.push_str("<w:shd w:val=\"clear\" w:color=\"auto\" w:fill=\"E7E6E6\"/>");
    }
    let mut paras: String = text.split("\n\n").map(|p| para(p, None, label, false)).collect();
    if paras.is_empty() {
        paras = "<w:p/>".into();
    }
    format!("<w:tc><w:tcPr>{tcpr}</w:tcPr>{paras}</w:tc>")
}

fn table(widths: &[u32], rows: &[String]) -> String {
    let grid: String = widths.iter().map(|w| format!("<w:gridCol w:w=\"{w}\"/>")).collect();
    format!(
        "<w:tbl><w:tblPr><w:tblStyle w:val=\"TableGrid\"/><w:tblW w:w=\"0\" w:type=\"auto\"/>\
         <w:tblLook w:val=\"04A0\" w:firstRow=\"1\" w:lastRow=\"0\" w:firstColumn=\"1\" w:lastColumn=\"0\" \
         w:noHBand=\"0\" w:noVBand=\"1\"/></w:tblPr><w:tblGrid>{grid}</w:tblGrid>{}</w:tbl>",
        rows.concat()
    )
}

fn row(cells: &[String]) -> String {
    // A row is not split across pages.
    format!("<w:tr><w:trPr><w:cantSplit/></w:trPr>{}</w:tr>", cells.concat())
}

fn long(d: chrono::NaiveDate) -> String {
    d.format("%A %-d %B %Y").to_string()
}

/// The row's value as shown: the value, and the note after it (or instead of it).
fn shown(value: &str, note: &Option<String>) -> String {
    match (value.trim().is_empty(), note) {
        (true, Some(n)) => format!("[{n}]"),
        (false, Some(n)) => format!("{value}\n\n[{n}]"),
        (_, None) => value.to_string(),
    }
}

fn document_xml(f: &FilledForm) -> String {
    let mut body = String::new();
    body.push_str(&para(&f.title, Some("Title"), false, false));
    body.push_str(&para(
        &format!("{} — {}", f.board_name, f.source),
        Some("Subtitle"),
        false,
        false,
    ));
    body.push_str(&para(&format!("Case {}: {}", f.reference, f.status), None, true, false));
    for p in &f.intro {
        body.push_str(&para(p, None, false, true));
    }
    if let Some(b) = &f.blanked {
        body.push_str(&para(b, None, true, false));
    }
    let mut rows = Vec::new();
    let mut group: Option<&str> = None;
    for r in &f.rows {
        if r.group.as_deref() != group {
            group = r.group.as_deref();
            if let Some(g) = group {
                rows.push(row(&[cell(g, 9000, true, 2)]));
            }
        }
        rows.push(row(&[
            cell(&r.label, 3600, true, 1),
            cell(&shown(&r.value, &r.note), 5400, false, 1),
        ]));
    }
    body.push_str(&table(&[3600, 5400], &rows));
    body.push_str(&para("Record of stages", Some("Heading1"), false, false));
    let mut rows = vec![row(&[
        cell("Stage", 3000, true, 1),
        cell("Entered on", 2200, true, 1),
        cell("Managers and practitioners at this stage", 3800, true, 1),
    ])];
    for s in &f.stages {
        rows.push(row(&[
            cell(&s.stage, 3000, false, 1),
            cell(&s.entered_on, 2200, false, 1),
            cell(&s.people.join("\n"), 3800, false, 1),
        ]));
    }
    body.push_str(&table(&[3000, 2200, 3800], &rows));
    if !f.actions.is_empty() {
        body.push_str(&para("Agreed actions", Some("Heading1"), false, false));
        let mut rows = vec![row(&[
            cell("Action", 4400, true, 1),
            cell("Owner", 2600, true, 1),
            cell("By", 2000, true, 1),
        ])];
        for a in &f.actions {
            rows.push(row(&[
                cell(&a.action, 4400, false, 1),
                cell(&a.owner, 2600, false, 1),
                cell(&a.by, 2000, false, 1),
            ]));
        }
        body.push_str(&table(&[4400, 2600, 2000], &rows));
    }
    for p in &f.action_note {
        body.push_str(&para(p, None, false, true));
    }
    body.push_str(&para(
        &format!(
            "Filled in by the escalation service on {} from case {}. To update the record, reply to the \
             case's email with this document attached after editing it, or with the changed lines in \
             the text (\"Summary of reason for dispute: …\").",
            long(f.filled_on),
            f.reference
        ),
        None,
        false,
        true,
    ));
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" \
         xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">\
         <w:body>{body}<w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/>\
         <w:pgMar w:top=\"1134\" w:right=\"1134\" w:bottom=\"1134\" w:left=\"1134\" w:header=\"709\" \
         w:footer=\"709\" w:gutter=\"0\"/></w:sectPr></w:body></w:document>"
    )
}

const CONTENT_TYPES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
<Default Extension=\"xml\" ContentType=\"application/xml\"/>\
<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
<Override PartName=\"/word/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml\"/>\
<Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>\
<Override PartName=\"/docProps/app.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.extended-properties+xml\"/>\
</Types>";

const PACKAGE_RELS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/>\
<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>\
<Relationship Id=\"rId3\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties\" Target=\"docProps/app.xml\"/>\
</Relationships>";

const DOCUMENT_RELS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles\" Target=\"styles.xml\"/>\
</Relationships>";

const STYLES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<w:styles xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
<w:docDefaults><w:rPrDefault><w:rPr><w:rFonts w:ascii=\"Arial\" w:hAnsi=\"Arial\" w:cs=\"Arial\"/>\
<w:sz w:val=\"22\"/><w:lang w:val=\"en-GB\"/></w:rPr></w:rPrDefault>\
<w:pPrDefault><w:pPr><w:spacing w:after=\"120\" w:line=\"259\" w:lineRule=\"auto\"/></w:pPr></w:pPrDefault></w:docDefaults>\
<w:style w:type=\"paragraph\" w:default=\"1\" w:styleId=\"Normal\"><w:name w:val=\"Normal\"/><w:qFormat/></w:style>\
<w:style w:type=\"paragraph\" w:styleId=\"Title\"><w:name w:val=\"Title\"/><w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:qFormat/>\
<w:rPr><w:b/><w:sz w:val=\"32\"/></w:rPr></w:style>\
<w:style w:type=\"paragraph\" w:styleId=\"Subtitle\"><w:name w:val=\"Subtitle\"/><w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:qFormat/>\
<w:rPr><w:color w:val=\"595959\"/><w:sz w:val=\"24\"/></w:rPr></w:style>\
<w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/><w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:qFormat/>\
<w:pPr><w:keepNext/><w:spacing w:before=\"240\"/><w:outlineLvl w:val=\"0\"/></w:pPr><w:rPr><w:b/><w:sz w:val=\"26\"/></w:rPr></w:style>\
<w:style w:type=\"table\" w:default=\"1\" w:styleId=\"TableNormal\"><w:name w:val=\"Normal Table\"/>\
<w:tblPr><w:tblInd w:w=\"0\" w:type=\"dxa\"/><w:tblCellMar><w:top w:w=\"0\" w:type=\"dxa\"/><w:left w:w=\"108\" w:type=\"dxa\"/>\
<w:bottom w:w=\"0\" w:type=\"dxa\"/><w:right w:w=\"108\" w:type=\"dxa\"/></w:tblCellMar></w:tblPr></w:style>\
<w:style w:type=\"table\" w:styleId=\"TableGrid\"><w:name w:val=\"Table Grid\"/><w:basedOn w:val=\"TableNormal\"/>\
<w:tblPr><w:tblBorders><w:top w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/>\
<w:left w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/><w:bottom w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/>\
<w:right w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/><w:insideH w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/>\
<w:insideV w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/></w:tblBorders></w:tblPr></w:style>\
</w:styles>";

fn core_xml(f: &FilledForm) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <dc:title>{}</dc:title><dc:subject>{}</dc:subject><dc:creator>{} escalation service</dc:creator>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">{}T00:00:00Z</dcterms:created></cp:coreProperties>",
        esc(&f.title),
        esc(&f.reference),
        esc(&f.board_name),
        f.filled_on
    )
}

const APP_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\">\
<Application>escalation-bot</Application></Properties>";

/// The form as a Word document.
pub fn write(form: &FilledForm) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let parts: [(&str, String); 6] = [
        ("[Content_Types].xml", CONTENT_TYPES.to_string()),
        ("_rels/.rels", PACKAGE_RELS.to_string()),
        ("word/document.xml", document_xml(form)),
        ("word/_rels/document.xml.rels", DOCUMENT_RELS.to_string()),
        ("word/styles.xml", STYLES.to_string()),
        ("docProps/core.xml", core_xml(form)),
    ];
    for (name, xml) in parts
        .iter()
        .map(|(n, x)| (*n, x.as_str()))
        .chain([("docProps/app.xml", APP_XML)])
    {
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(xml.as_bytes()).map_err(|e| e.to_string())?;
    }
    zip.finish().map(Cursor::into_inner).map_err(|e| e.to_string())
}

fn html_esc(s: &str) -> String {
    esc(s).replace('\n', "<br>")
}

/// The form as an HTML fragment, for the HTML part of the email that carries it: a table Outlook shows as
/// the Word document does.
pub fn html(form: &FilledForm) -> String {
    let td = "style=\"border: 1px solid #999; padding: 4px 8px; vertical-align: top;\"";
    let th = "style=\"border: 1px solid #999; padding: 4px 8px; vertical-align: top; background: #e7e6e6; font-weight: bold;\"";
    let mut out = format!(
        "<div style=\"font-family: Arial, sans-serif; font-size: 14px; margin-top: 16px; border-top: 2px solid #444; padding-top: 8px;\">\
         <h2 style=\"font-size: 18px; margin: 4px 0;\">{}</h2><p style=\"color: #595959; margin: 0 0 8px 0;\">{} — {}</p>\
         <p><strong>Case {}: {}</strong></p>",
        html_esc(&form.title),
        html_esc(&form.board_name),
        html_esc(&form.source),
        html_esc(&form.reference),
        html_esc(&form.status)
    );
    for p in &form.intro {
        out.push_str(&format!("<p><em>{}</em></p>", html_esc(p)));
    }
    if let Some(b) = &form.blanked {
        out.push_str(&format!("<p><strong>{}</strong></p>", html_esc(b)));
    }
    out.push_str("<table style=\"border-collapse: collapse; width: 100%;\">");
    let mut group: Option<&str> = None;
    for r in &form.rows {
        if r.group.as_deref() != group {
            group = r.group.as_deref();
            if let Some(g) = group {
                out.push_str(&format!("<tr><td colspan=\"2\" {th}>{}</td></tr>", html_esc(g)));
            }
        }
        out.push_str(&format!(
            "<tr><td {th} width=\"35%\">{}</td><td {td}>{}</td></tr>",
            html_esc(&r.label),
            html_esc(&shown(&r.value, &r.note))
        ));
    }
    out.push_str("</table><h3 style=\"font-size: 15px;\">Record of stages</h3><table style=\"border-collapse: collapse; width: 100%;\">");
    out.push_str(&format!(
        "<tr><td {th}>Stage</td><td {th}>Entered on</td><td {th}>Managers and practitioners at this stage</td></tr>"
    ));
    for s in &form.stages {
        out.push_str(&format!(
            "<tr><td {td}>{}</td><td {td}>{}</td><td {td}>{}</td></tr>",
            html_esc(&s.stage),
            html_esc(&s.entered_on),
            html_esc(&s.people.join("\n"))
        ));
    }
    out.push_str("</table>");
    if !form.actions.is_empty() {
        out.push_str("<h3 style=\"font-size: 15px;\">Agreed actions</h3><table style=\"border-collapse: collapse; width: 100%;\">");
        out.push_str(&format!(
            "<tr><td {th}>Action</td><td {th}>Owner</td><td {th}>By</td></tr>"
        ));
        for a in &form.actions {
            out.push_str(&format!(
                "<tr><td {td}>{}</td><td {td}>{}</td><td {td}>{}</td></tr>",
                html_esc(&a.action),
                html_esc(&a.owner),
                html_esc(&a.by)
            ));
        }
        out.push_str("</table>");
    }
    for p in &form.action_note {
        out.push_str(&format!("<p><em>{}</em></p>", html_esc(p)));
    }
    out.push_str(&format!(
        "<p><small>Attached as {}. To update the record, reply with the document edited, or with the changed lines.</small></p></div>",
        html_esc(&form.filename)
    ));
    out
}

/// The form as plain text, for the text part of the email that carries it.
pub fn text(form: &FilledForm) -> String {
    let mut out = format!(
        "{}\n{} — {}\nCase {}: {}\n",
        form.title, form.board_name, form.source, form.reference, form.status
    );
    if let Some(b) = &form.blanked {
        out.push_str(&format!("\n{b}\n"));
    }
    let mut group: Option<&str> = None;
    for r in &form.rows {
        if r.group.as_deref() != group {
            group = r.group.as_deref();
            if let Some(g) = group {
                out.push_str(&format!("\n{g}\n"));
            }
        }
        out.push_str(&format!("\n{}: {}\n", r.label, shown(&r.value, &r.note)));
    }
    out.push_str("\nRecord of stages\n");
    for s in &form.stages {
        out.push_str(&format!(
            "  - {}, entered on {}: {}\n",
            s.stage,
            s.entered_on,
            s.people.join("; ")
        ));
    }
    if !form.actions.is_empty() {
        out.push_str("\nAgreed actions\n");
        for a in &form.actions {
            out.push_str(&format!("  - {} | {} | {}\n", a.action, a.owner, a.by));
        }
    }
    for p in &form.action_note {
        out.push_str(&format!("\n{p}\n"));
    }
    out.push_str(&format!("\n(Attached as {}.)\n", form.filename));
    out
}

/// Joins the paragraphs of one table cell in [`read_text`]'s output; [`read_record`] turns it back into
/// a line break.
pub const CELL_LINE: char = '\u{2028}';

/// The record written in a Word document, read with the board's labels; a cell's paragraphs are lines of
/// its value.
pub fn read_record(
    bytes: &[u8],
    labels: &crate::core::intake::Labels,
) -> Result<crate::core::intake::ParsedRecord, Unreadable> {
    let text = read_text(bytes, &|l| labels.is_label(l))?;
    let mut parsed = crate::core::intake::parse_record(&text, labels);
    let fix = |v: &mut Option<String>| {
        if let Some(s) = v.as_mut() {
            *s = s.replace(CELL_LINE, "\n");
        }
    };
    let r = &mut parsed.record;
    for v in [
        &mut r.adult_name,
        &mut r.nhs_number,
        &mut r.escalating_name,
        &mut r.escalating_agency,
        &mut r.escalating_email,
        &mut r.escalating_phone,
        &mut r.other_name,
        &mut r.other_agency,
        &mut r.other_email,
        &mut r.summary,
        &mut r.adult_views,
        &mut r.evidence,
        &mut r.outcome,
        &mut r.theme,
        &mut r.copied_to,
        &mut r.notes,
    ] {
        fix(v);
    }
    for v in r.extra.values_mut() {
        *v = v.replace(CELL_LINE, "\n");
    }
    Ok(parsed)
}

/// An open content control (`w:sdt`), as far as hiding its text goes: its placeholder is shown (Word's grey
/// "Click or tap here to enter text") and its content has started.
#[derive(Debug, Clone, Copy, Default)]
struct Sdt {
    placeholder: bool,
    in_content: bool,
}

impl Sdt {
    /// Whether its content is a placeholder, not text.
    fn hides(self) -> bool {
        self.placeholder && self.in_content
    }

    /// Change it with `change`, keeping `shown` (how many open controls hide their content) true.
    fn update(&mut self, shown: &mut usize, change: impl FnOnce(&mut Sdt)) {
        let before = self.hides();
        change(self);
        match (before, self.hides()) {
            (false, true) => *shown += 1,
            (true, false) => *shown = shown.saturating_sub(1),
            _ => {}
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

fn local(name: &[u8]) -> &[u8] {
    name.rsplit(|&b| b == b':').next().unwrap_or(name)
}

fn attr_is_off(e: &BytesStart<'_>) -> bool {
    e.attributes()
        .flatten()
        .any(|a| local(a.key.as_ref()) == b"val" && matches!(a.value.as_ref(), b"0" | b"false" | b"off"))
}

/// The text of a Word document as a person sees it: paragraphs as lines, table rows as lines with their
/// cells separated by tabs (a cell's own paragraphs on lines below), nested tables' rows as lines of
/// their own.
pub fn read_text(bytes: &[u8], is_label: &dyn Fn(&str) -> bool) -> Result<String, Unreadable> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| Unreadable("it is not a Word document (.docx): it could not be opened as one".into()))?;
    let file = archive
        .by_name("word/document.xml")
        .map_err(|_| Unreadable("it is not a Word document (.docx): it has no document part".into()))?;
    let mut xml = String::new();
    file.take(MAX_DOCUMENT_XML)
        .read_to_string(&mut xml)
        .map_err(|_| Unreadable("its text could not be read".into()))?;
    document_text(&xml, is_label)
}

/// [`read_text`] of the XML of `word/document.xml`.
pub fn document_text(xml: &str, is_label: &dyn Fn(&str) -> bool) -> Result<String, Unreadable> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    // Elements whose text is not shown: deletions, field codes, fallbacks, placeholders.
    let mut skip_depth = 0usize;
    let mut in_text = false;
    let mut run_hidden = false;
    let mut in_rpr = false;
    // Content controls: for each open one, whether it shows its placeholder and whether its content has
    // started; and how many open ones are both, so that whether text is hidden is known in one step on
    // every event (walking the open controls each time made a document of nested controls quadratic).
    let mut sdts: Vec<Sdt> = Vec::new();
    let mut placeholders_shown = 0usize;
    // Tables: per open table, the cells of the current row so far.
    let mut tables: Vec<Vec<String>> = Vec::new();
    // The text of the paragraph being read (pushed to the current cell or to `out` at its end).
    let mut para = String::new();
    // A row of labels whose values are in the row below (South Gloucestershire's monitoring section), with
    // the depth of its table.
    let mut pending_labels: Option<(usize, Vec<String>)> = None;
    let mut events = 0usize;
    loop {
        events += 1;
        if events > 5_000_000 {
            return Err(Unreadable("it is too large to read".into()));
        }
        let ev = reader
            .read_event()
            .map_err(|e| Unreadable(format!("its text is not well-formed XML ({e})")))?;
        let hidden = skip_depth > 0 || run_hidden || placeholders_shown > 0;
        match ev {
            Event::Eof => break,
            Event::Start(e) => {
                let name = local(e.name().as_ref()).to_vec();
                match name.as_slice() {
                    b"del" | b"instrText" | b"delText" | b"Fallback" | b"commentReference" | b"footnoteReference" => {
                        skip_depth += 1;
                    }
                    _ if skip_depth > 0 => skip_depth += 1,
                    b"t" => in_text = true,
                    b"r" => run_hidden = false,
                    b"rPr" => in_rpr = true,
                    b"vanish" if in_rpr => run_hidden = !attr_is_off(&e),
                    b"sdt" => sdts.push(Sdt::default()),
                    b"sdtContent" => {
                        if let Some(sdt) = sdts.last_mut() {
                            sdt.update(&mut placeholders_shown, |s| s.in_content = true);
                        }
                    }
                    b"tbl" => {
                        // A table inside a cell: what the cell holds so far is a line of its own.
                        if let Some(cells) = tables.last_mut() {
                            flush_para(&mut para, Some(cells));
                            let line = cells.join("\t");
                            if !line.trim().is_empty() {
                                out.push_str(line.trim_end());
                                out.push('\n');
                            }
                            cells.clear();
                        } else {
                            flush_para(&mut para, None);
                            push_line(&mut out, &std::mem::take(&mut para));
                        }
                        tables.push(Vec::new());
                    }
                    b"tr" => {
                        if let Some(cells) = tables.last_mut() {
                            cells.clear();
                        }
                    }
                    b"tc" => {
                        if let Some(cells) = tables.last_mut() {
                            cells.push(String::new());
                        }
                    }
                    _ => {}
                }
            }
            Event::Empty(e) => {
                let name = local(e.name().as_ref()).to_vec();
                if skip_depth > 0 {
                    continue;
                }
                match name.as_slice() {
                    b"vanish" if in_rpr => run_hidden = !attr_is_off(&e),
                    b"showingPlcHdr" => {
                        if let Some(sdt) = sdts.last_mut() {
                            let shown = !attr_is_off(&e);
                            sdt.update(&mut placeholders_shown, |s| s.placeholder = shown);
                        }
                    }
                    b"tab" if !hidden && !in_rpr => para.push(if tables.is_empty() { '\t' } else { ' ' }),
                    b"br" | b"cr" if !hidden => para.push('\n'),
                    b"noBreakHyphen" if !hidden => para.push('-'),
                    b"tc" => {
                        if let Some(cells) = tables.last_mut() {
                            cells.push(String::new());
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_text && !hidden => {
                let s = t
                    .decode()
                    .map_err(|_| Unreadable("its text is not valid UTF-8".into()))?;
                para.push_str(&s);
            }
            Event::GeneralRef(r) if in_text && !hidden => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    para.push(c);
                } else {
                    let name: &[u8] = &r;
                    match name {
                        b"amp" => para.push('&'),
                        b"lt" => para.push('<'),
                        b"gt" => para.push('>'),
                        b"quot" => para.push('"'),
                        b"apos" => para.push('\''),
                        _ => {}
                    }
                }
            }
            Event::CData(t) if in_text && !hidden => {
                para.push_str(&String::from_utf8_lossy(&t));
            }
            Event::End(e) => {
                let name = local(e.name().as_ref()).to_vec();
                if skip_depth > 0 {
                    skip_depth -= 1;
                    continue;
                }
                match name.as_slice() {
                    b"t" => in_text = false,
                    b"rPr" => in_rpr = false,
                    b"r" => run_hidden = false,
                    b"sdt" => {
                        if let Some(mut sdt) = sdts.pop() {
                            sdt.update(&mut placeholders_shown, |s| *s = Sdt::default());
                        }
                    }
                    b"p" => {
                        let cells = tables.last_mut();
                        match cells {
                            Some(cells) => flush_para(&mut para, Some(cells)),
                            None => push_line(&mut out, &std::mem::take(&mut para)),
                        }
                    }
                    b"tc" => {
                        if let Some(cells) = tables.last_mut() {
                            flush_para(&mut para, Some(cells));
                        }
                    }
                    b"tr" => {
                        if let Some(cells) = tables.last_mut() {
                            let row = std::mem::take(cells);
                            let depth = tables.len();
                            write_row(&mut out, &mut pending_labels, depth, row, is_label);
                        }
                    }
                    b"tbl" => {
                        if let Some(labels) = pending_labels.take().filter(|(d, _)| *d == tables.len()) {
                            write_cells(&mut out, labels.1);
                        }
                        tables.pop();
                        out.push('\n');
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    flush_para(&mut para, None);
    push_line(&mut out, &para);
    // Tidy: no trailing white space, at most one blank line in a row.
    let mut tidy = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.replace('\u{a0}', " ");
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        tidy.push_str(line);
        tidy.push('\n');
    }
    Ok(tidy.trim().to_string())
}

/// A row's cells on one line: every cell but the last on one line of its own (a label wrapped over lines
/// is one label), the last cell's first line after them and its further lines below.
fn write_cells(out: &mut String, cells: Vec<String>) {
    let n = cells.len();
    let mut shown: Vec<String> = Vec::with_capacity(n);
    let mut below = Vec::new();
    for (i, c) in cells.into_iter().enumerate() {
        if i + 1 < n {
            shown.push(c.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if n == 1 {
            // A row of one cell (a heading, or a value under a label row): its lines as lines.
            let mut lines = c.lines();
            shown.push(lines.next().unwrap_or_default().trim().to_string());
            below.extend(lines.map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
        } else {
            // A value's paragraphs stay on its line (joined by U+2028, which `str::lines` does not break
            // at), so that a paragraph starting "Next steps:" is not read as another field.
            shown.push(
                c.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(&CELL_LINE.to_string()),
            );
        }
    }
    let line = shown.join("\t");
    if !line.trim().is_empty() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for l in below {
        out.push_str(&l);
        out.push('\n');
    }
}

/// One table row, written as the record reader reads it: "label<TAB>value". A row of several labels whose
/// values are in the next row becomes label–value pairs; a row of two label–value pairs side by side
/// becomes two lines.
fn write_row(
    out: &mut String,
    pending: &mut Option<(usize, Vec<String>)>,
    depth: usize,
    row: Vec<String>,
    is_label: &dyn Fn(&str) -> bool,
) {
    let flat = |c: &str| c.split_whitespace().collect::<Vec<_>>().join(" ");
    // A cell is a label when all of it, or its first line (the rest a hint such as "(number of days)"),
    // is one.
    let label_of = |c: &str| {
        let first = c.lines().next().unwrap_or_default().trim().to_string();
        if is_label(&flat(c)) {
            Some(flat(c))
        } else if is_label(&first) {
            Some(first)
        } else {
            None
        }
    };
    let filled: Vec<String> = row.iter().filter(|c| !c.trim().is_empty()).cloned().collect();
    let all_labels = filled.len() >= 2 && filled.iter().all(|c| label_of(c).is_some());
    let row: Vec<String> = if all_labels {
        row.iter().map(|c| label_of(c).unwrap_or_default()).collect()
    } else {
        row
    };
    let hints = filled
        .iter()
        .any(|c| c.trim_start().starts_with('(') || flat(c).ends_with(':') || is_label(&flat(c)));
    if let Some((d, labels)) = pending.take() {
        if d == depth && labels.len() == row.len() && !all_labels && !hints {
            for (l, v) in labels.iter().zip(&row) {
                if !v.trim().is_empty() {
                    write_cells(out, vec![l.clone(), v.clone()]);
                }
            }
            return;
        }
        if d == depth && labels.len() == row.len() && !all_labels && hints {
            // Guidance under the labels ("(number of days)"): the values are further down.
            *pending = Some((d, labels));
            return;
        }
        write_cells(out, labels);
    }
    if all_labels {
        *pending = Some((depth, row));
        return;
    }
    let n = row.len();
    if n >= 4 && n % 2 == 0 && row.iter().step_by(2).all(|c| is_label(&flat(c))) {
        for pair in row.chunks(2) {
            write_cells(out, pair.to_vec());
        }
        return;
    }
    write_cells(out, row);
}

/// The paragraph just read goes to the current cell (a new line of it) or stays for the body.
fn flush_para(para: &mut String, cells: Option<&mut Vec<String>>) {
    if let Some(cells) = cells {
        if let Some(cell) = cells.last_mut() {
            let p = std::mem::take(para);
            if !p.trim().is_empty() {
                if !cell.is_empty() {
                    cell.push('\n');
                }
                cell.push_str(p.trim());
            }
        }
    }
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_hidden_and_field_code_text_is_not_read() {
        let xml = r#"<w:document xmlns:w="w"><w:body>
            <w:p><w:r><w:t>Keep</w:t></w:r><w:del><w:r><w:delText>gone</w:delText></w:r></w:del>
            <w:r><w:rPr><w:vanish/></w:rPr><w:t>hidden</w:t></w:r><w:r><w:instrText> PAGE </w:instrText></w:r>
            <w:r><w:t xml:space="preserve"> this &amp; that</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Label</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Va</w:t></w:r><w:r><w:t>lue</w:t></w:r></w:p><w:p><w:r><w:t>More</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            </w:body></w:document>"#;
        let text = document_text(xml, &|l| l == "Label").expect("reads");
        assert_eq!(text, "Keep this & that\n\nLabel\tValue\u{2028}More");
    }

    #[test]
    fn a_placeholder_hides_only_its_own_content_however_deep() {
        let xml = r#"<w:document xmlns:w="w"><w:body>
            <w:sdt><w:sdtContent>
              <w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent>
                <w:p><w:r><w:t>Click here to enter text.</w:t></w:r></w:p>
                <w:sdt><w:sdtContent><w:p><w:r><w:t>Inside the placeholder</w:t></w:r></w:p></w:sdtContent></w:sdt>
              </w:sdtContent></w:sdt>
              <w:p><w:r><w:t>Shown</w:t></w:r></w:p>
              <w:sdt><w:sdtPr><w:showingPlcHdr w:val="0"/></w:sdtPr><w:sdtContent><w:p><w:r><w:t>Filled in</w:t></w:r></w:p></w:sdtContent></w:sdt>
            </w:sdtContent></w:sdt>
            <w:p><w:r><w:t>After</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let text = document_text(xml, &|_| false).expect("reads");
        assert_eq!(text, "Shown\nFilled in\nAfter");
        // Many levels deep, each event costs the same: a million nested controls read at once.
        let deep = format!(
            "<w:document xmlns:w=\"w\"><w:body>{}<w:p><w:r><w:t>x</w:t></w:r></w:p>{}</w:body></w:document>",
            "<w:sdt><w:sdtContent>".repeat(20_000),
            "</w:sdtContent></w:sdt>".repeat(20_000)
        );
        assert_eq!(document_text(&deep, &|_| false).expect("reads"), "x");
    }

    #[test]
    fn not_a_document_is_said_so() {
        assert!(read_text(b"PK\x03\x04 not really", &|_| false).is_err());
        assert!(read_text(b"", &|_| false).is_err());
    }
}
