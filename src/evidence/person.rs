//! Where a person's email and account id appear in free text (an event's detail, a stored
//! answer, an error). One scan finds them, so that the chain's canonical content (which
//! names them by tokens) and pseudonymization (which replaces them by pseudonyms) always
//! agree on where they are: replacing every place this scan finds by a pseudonym, then
//! scanning for the pseudonym, finds the same places.

/// What a person is called in a text, and what to write instead.
#[derive(Clone, Copy, Debug)]
pub struct Naming<'a> {
    pub email: &'a str,
    pub account_id: Option<&'a str>,
}

/// Replaces every place `naming` names the person in `text`: the email by `email`, the
/// account id by `account_id`. Matching ignores ASCII case (the store keeps emails
/// lower-cased, payloads and answers may not). At one place the longer of the two wins. With
/// `escape_braces`, a literal `{` is doubled, so that a token written in braces can never be
/// mistaken for text that happened to look like it.
pub fn replace(
    text: &str,
    naming: Naming<'_>,
    email: &str,
    account_id: &str,
    escape_braces: bool,
) -> String {
    let mut needles: Vec<(&str, &str)> = Vec::with_capacity(2);
    if !naming.email.is_empty() {
        needles.push((naming.email, email));
    }
    if let Some(id) = naming.account_id.filter(|id| !id.is_empty()) {
        needles.push((id, account_id));
    }
    needles.sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < bytes.len() {
        for (needle, replacement) in &needles {
            let end = i + needle.len();
            if end <= bytes.len()
                && text.is_char_boundary(end)
                && bytes[i..end].eq_ignore_ascii_case(needle.as_bytes())
            {
                out.push_str(replacement);
                i = end;
                continue 'scan;
            }
        }
        let c = text[i..].chars().next().expect("i is at a char boundary");
        if escape_braces && c == '{' {
            out.push('{');
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether `text` names the person at all.
pub fn names(text: &str, naming: Naming<'_>) -> bool {
    replace(text, naming, "\u{0}", "\u{0}", false) != text
}

#[cfg(test)]
mod tests {
    use super::*;

    const JANE: Naming = Naming {
        email: "jane@example.com",
        account_id: Some("5b10ac8d"),
    };

    #[test]
    fn every_casing_of_the_email_and_the_account_id_is_replaced() {
        let text = "Jane@Example.COM is 5b10ac8d; {x}";
        assert_eq!(
            replace(text, JANE, "{email}", "{account_id}", true),
            "{email} is {account_id}; {{x}"
        );
        assert_eq!(replace(text, JANE, "P", "A", false), "P is A; {x}");
    }

    #[test]
    fn a_literal_token_is_not_the_token() {
        let literal = replace("{email}", JANE, "{email}", "{account_id}", true);
        let named = replace("jane@example.com", JANE, "{email}", "{account_id}", true);
        assert_ne!(literal, named);
    }

    #[test]
    fn the_longer_name_wins_where_both_start() {
        let naming = Naming {
            email: "ab@example.com",
            account_id: Some("ab"),
        };
        assert_eq!(replace("ab@example.com ab", naming, "E", "A", false), "E A");
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(
            replace("für jane@example.com ü", JANE, "E", "A", false),
            "für E ü"
        );
        assert!(names("x JANE@example.com", JANE));
        assert!(!names("nobody", JANE));
    }
}
