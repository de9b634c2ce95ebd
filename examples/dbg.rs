fn main() {
    let c = escalation_bot::config::load(std::path::Path::new("config/default.toml")).unwrap();
    for a in std::env::args().skip(1) {
        let board = if a.contains("rotherham") {
            "rotherham"
        } else if a.contains("buck") {
            "buckinghamshire"
        } else if a.contains("bradford") {
            "bradford"
        } else {
            "south-gloucestershire"
        };
        let labels = escalation_bot::core::intake::Labels::new([c.board(board).unwrap().policy()]);
        let t = escalation_bot::mail::docx::read_text(&std::fs::read(&a).unwrap(), &|l| labels.is_label(l)).unwrap();
        println!("{t}");
        for l in t.lines() {
            if let Some(m) = labels.match_line(l) {
                println!("{:?}", m.0);
            }
        }
        let p = escalation_bot::core::intake::parse_record(&t, &labels);
        println!("{:#?}", p.record);
    }
}
