//! NHS number validation: ten digits, a Modulus 11 check digit, and not all one digit.

/// `c` as an ASCII digit when it is one, full-width ones ("９９９") included.
pub fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{ff10}'..='\u{ff19}' => char::from_u32(c as u32 - 0xff10 + u32::from(b'0')),
        _ => None,
    }
}

/// Whether `c` may stand between the digits of an NHS number as people paste it: any kind of space
/// (U+0020, U+00A0, U+2009, U+202F, a tab), a dot, a hyphen or dash.
pub fn is_digit_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | '-' | '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}' | '\u{ff0d}'
        )
}

/// The NHS number in `input` as ten digits (spaces, dots and dashes removed, full-width digits read), or
/// why it is not one.
pub fn normalise(input: &str) -> Result<String, String> {
    let digits: String = input
        .trim()
        .chars()
        .filter(|c| !is_digit_separator(*c))
        .map(|c| ascii_digit(c).unwrap_or(c))
        .collect();
    if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "NHS number {:?} should be 10 digits, e.g. 943 476 5919",
            input.trim()
        ));
    }
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.iter().all(|x| *x == d[0]) {
        return Err(format!(
            "NHS number {} is not valid (all digits the same)",
            spaced(&digits)
        ));
    }
    let sum: u32 = d.iter().take(9).enumerate().map(|(i, x)| x * (10 - i as u32)).sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => {
            return Err(format!(
                "NHS number {} is not valid (no check digit fits)",
                spaced(&digits)
            ));
        }
        c => c,
    };
    if check != d[9] {
        return Err(format!(
            "NHS number {} fails its check digit: please check it against the adult's record",
            spaced(&digits)
        ));
    }
    Ok(digits)
}

/// `9434765919` as `943 476 5919`.
pub fn spaced(digits: &str) -> String {
    if digits.len() == 10 && digits.is_ascii() {
        format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..]) // byte-slice: ten ASCII digits, checked above
    } else {
        digits.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_test_range_numbers() {
        for n in ["999 000 0018", "9990000018", "999-000-0026", "9990001189"] {
            assert!(normalise(n).is_ok(), "{n}: {:?}", normalise(n));
        }
    }

    #[test]
    fn rejects_bad_numbers() {
        assert!(normalise("9990000019").is_err()); // wrong check digit
        assert!(normalise("1111111111").is_err()); // all one digit
        assert!(normalise("99900000").is_err()); // too short
        assert!(normalise("99900000AB").is_err());
    }

    #[test]
    fn reads_numbers_however_pasted() {
        for n in [
            "999\u{202f}000\u{202f}0018",
            "999\u{2009}000\u{2009}0018",
            "999\u{a0}000\u{a0}0018",
            "999.000.0018",
            "999\t000\t0018",
            "９９９ ０００ ００１８",
            "999\u{2013}000\u{2013}0018",
        ] {
            assert_eq!(normalise(n).as_deref(), Ok("9990000018"), "{n:?}");
        }
    }
}
