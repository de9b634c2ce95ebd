//! Prints how the bot reads an .eml: the text it parses and the fields it finds. For debugging fixtures:
//! `cargo run --example readform -- FILE.eml`
fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let raw = std::fs::read(&path).unwrap_or_default();
    let config = match escalation_bot::config::load(std::path::Path::new("config/default.toml")) {
        Ok(c) => c,
        Err(e) => return eprintln!("{e}"),
    };
    let pipeline = match escalation_bot::mail::pipeline::Pipeline::new(&config, b"x".to_vec()) {
        Ok(p) => p,
        Err(e) => return eprintln!("{e}"),
    };
    match pipeline.read_escalation(&raw) {
        Ok((msg, parsed)) => {
            println!(
                "--- text\n{}\n--- html as text\n{}",
                msg.text.clone().unwrap_or_default(),
                msg.html_text().unwrap_or_default()
            );
            println!("--- fields\n{:#}", escalation_bot::mail::pipeline::fields_json(&parsed));
        }
        Err(e) => eprintln!("unreadable: {}", e.0),
    }
}
