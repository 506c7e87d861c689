//! The two JQL queries the fake understands; anything else is a 400, as an unbounded or
//! unparsable query is for the real search [SPEC].

/// A query the issue search answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Jql {
    /// `assignee = <accountId> AND statusCategory != Done`: the open issues of an account.
    OpenAssignedTo(String),
    /// `key in (K1, K2, …)`.
    Keys(Vec<String>),
}

/// Keywords, field names and `Done` match in any case, as in JQL; an account id may be
/// quoted with `"`.
pub(super) fn parse(jql: &str) -> Option<Jql> {
    let tokens = tokens(jql)?;
    let words: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let is = |word: &str, expected: &str| word.eq_ignore_ascii_case(expected);
    match words.as_slice() {
        [field, "=", id, and, category, "!=", done]
            if is(field, "assignee")
                && is(and, "and")
                && is(category, "statusCategory")
                && is(done, "done") =>
        {
            Some(Jql::OpenAssignedTo((*id).to_owned()))
        }
        [field, keyword, "(", list @ .., ")"] if is(field, "key") && is(keyword, "in") => {
            keys(list).map(Jql::Keys)
        }
        _ => None,
    }
}

/// `K1 , K2 , …` without the parentheses: at least one key, commas between.
fn keys(list: &[&str]) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    for (n, word) in list.iter().enumerate() {
        let separator = n % 2 == 1;
        match (separator, *word) {
            (true, ",") => {}
            (false, key) if !matches!(key, "," | "(" | ")" | "=" | "!=") => {
                keys.push(key.to_owned());
            }
            _ => return None,
        }
    }
    (list.len() % 2 == 1).then_some(keys)
}

/// Words, quoted strings (unquoted), and the operators `=`, `!=`, `(`, `)`, `,`; `None` for
/// an unterminated quote or a lone `!`.
fn tokens(jql: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = jql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '=' | '(' | ')' | ',' => tokens.push(c.to_string()),
            '!' => {
                chars.next_if_eq(&'=')?;
                tokens.push("!=".to_owned());
            }
            '"' => {
                let mut quoted = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        c => quoted.push(c),
                    }
                }
                tokens.push(quoted);
            }
            c => {
                let mut word = c.to_string();
                while let Some(next) =
                    chars.next_if(|&c| !c.is_whitespace() && !"=()!,\"".contains(c))
                {
                    word.push(next);
                }
                tokens.push(word);
            }
        }
    }
    Some(tokens)
}
