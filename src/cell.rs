//! Text that offboard did not write (display names, emails, account ids, Atlassian's error
//! messages) as one cell of an output: a CSV cell that no spreadsheet runs as a formula, and a
//! table cell that no terminal runs as a control sequence (README, "Customer inventory").

use std::borrow::Cow;
use std::fmt::Write as _;

/// The characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV writer that neutralises every cell it writes: no column is left out because someone
/// thought its values safe (emails may begin with `=`, `+` or `-`).
pub struct CsvWriter<W: std::io::Write>(csv::Writer<W>);

impl<W: std::io::Write> CsvWriter<W> {
    pub fn new(out: W) -> Self {
        CsvWriter(csv::Writer::from_writer(out))
    }

    pub fn write_record<I, T>(&mut self, record: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for cell in record {
            self.0.write_field(to_csv(cell.as_ref()).as_bytes())?;
        }
        self.0.write_record(None::<&[u8]>)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A cell as written: behind a `'` when a spreadsheet would run it as a formula. A cell that
/// already begins with `'`s before such a character gets one more, so that [`from_csv`] gives
/// back every text exactly (`'=x` is written `''=x` and read back as `'=x`, never as `=x`).
pub fn to_csv(text: &str) -> Cow<'_, str> {
    if text.trim_start_matches('\'').starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A cell as read: the `'` that [`to_csv`] put before it taken off. A `'` before anything else
/// is the text's own.
pub fn from_csv(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.trim_start_matches('\'').starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

/// A cell of a table printed on a terminal, every control character shown escaped, never
/// raw: C0 (ESC, CR, BEL, …) and DEL as `\u{1b}` (`\t`, `\n`, `\r` as such), C1 (U+0080 to
/// U+009F, where U+009B opens a control sequence like `ESC [`), and the bidirectional
/// overrides, embeddings and isolates with the line and paragraph separators: they are not
/// control codes to the terminal, but they reorder or break what the rest of the line shows,
/// so a name could pose as another or hide the columns after it.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => shown.push_str("\\t"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            c if is_hidden(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Whether a terminal would act on `c` or let it rearrange the line, rather than show it.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' // ARABIC LETTER MARK
                | '\u{200e}'..='\u{200f}' // LRM, RLM
                | '\u{2028}'..='\u{2029}' // LINE and PARAGRAPH SEPARATOR
                | '\u{202a}'..='\u{202e}' // LRE, RLE, PDF, LRO, RLO
                | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_formula_start_is_neutralised_and_read_back() {
        for start in FORMULA_STARTS {
            let text = format!("{start}1+1@x");
            assert_eq!(to_csv(&text), format!("'{text}"));
            assert_eq!(from_csv(&to_csv(&text)), text);
        }
        for text in [
            "plain",
            "a=b",
            "'quoted",
            "'=already",
            "''+twice",
            "'",
            "",
            " =space",
        ] {
            assert_eq!(from_csv(&to_csv(text)), text, "{text:?}");
        }
        assert_eq!(to_csv("plain"), "plain");
        assert_eq!(
            to_csv("'quoted"),
            "'quoted",
            "a ' before text is the text's own"
        );
        assert_eq!(to_csv("'=already"), "''=already");
        assert_eq!(from_csv("'quoted"), "'quoted");
    }

    #[test]
    fn controls_are_shown_escaped() {
        for (text, shown) in [
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("a\rb\nc\td", "a\\rb\\nc\\td"),
            ("bell\u{7}", "bell\\u{7}"),
            ("\u{9b}2J", "\\u{9b}2J"),
            ("del\u{7f}", "del\\u{7f}"),
            ("\u{202e}gnp.exe", "\\u{202e}gnp.exe"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("Zoë Ørsted 山田", "Zoë Ørsted 山田"),
        ] {
            assert_eq!(for_terminal(text), shown, "{text:?}");
        }
    }
}
