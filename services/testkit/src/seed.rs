//! The proof of concept's contract (`docs/proof-of-concept-contract.md`) as data. Its examples
//! are JSON, or the looser notation of its data flows (`{ uid, email, role }`,
//! `state: "active" | "suspended"`, `{ child_id } | null`); both are read into a [`Shape`] that
//! a real message is checked against, or that becomes a request body.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

/// Where the contract is kept.
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/proof-of-concept-contract.md")
}

/// The contract's text.
pub fn document() -> String {
    let path = path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What an example says a value is.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `{ name: shape, … }`, in the example's order.
    Object(Vec<(String, Shape)>),
    /// `[shape]`.
    Array(Vec<Shape>),
    /// A string, with the example's value.
    Text(String),
    /// A number, as written (so `1` and `1.0` differ).
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A name without a value (`{ session_id }`, `N`): present, of any type.
    Present,
    /// `a | b`.
    OneOf(Vec<Shape>),
}

/// The text of the section whose heading line starts with `heading` (`### 4.3`), up to the next
/// heading of the same or a higher level.
pub fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .match_indices(heading)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || doc[..at].ends_with('\n'))
        .unwrap_or_else(|| panic!("no section {heading:?} in the contract"));
    let level = heading.chars().take_while(|&c| c == '#').count();
    let body = &doc[start + heading.len()..];
    let end = body
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .find(|&at| {
            let line = &body[at..];
            let hashes = line.chars().take_while(|&c| c == '#').count();
            (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
        })
        .unwrap_or(body.len());
    &body[..end]
}

/// The example that opens at the first `{` after `marker` in the section: its text and shape.
pub fn example(doc: &str, heading: &str, marker: &str) -> (String, Shape) {
    let text = section(doc, heading);
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in section {heading:?} of the contract"));
    let rest = &text[at + marker.len()..];
    let open = rest.find('{').unwrap_or_else(|| panic!("no example after {marker:?}"));
    let example = balanced(&rest[open..]);
    let shape = parse(example).unwrap_or_else(|e| panic!("{heading} {marker}: {e}\n{example}"));
    (example.to_owned(), shape)
}

/// The rest of the line after `marker` in the section, trimmed (a URL or a byte layout).
pub fn line_after<'a>(doc: &'a str, heading: &str, marker: &str) -> &'a str {
    let text = section(doc, heading);
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in section {heading:?}"));
    let rest = &text[at + marker.len()..];
    rest[..rest.find('\n').unwrap_or(rest.len())].trim()
}

/// The `{…}` that `text` opens with, braces inside strings aside.
fn balanced(text: &str) -> &str {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[..=at];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced example: {text}")
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Punct(char),
    Text(String),
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' | '}' | '[' | ']' | ':' | ',' | '|' => {
                out.push(Token::Punct(c));
                chars.next();
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => text.push(chars.next().ok_or("a string ends in \\")?),
                        Some(c) => text.push(c),
                        None => return Err("an unterminated string".into()),
                    }
                }
                out.push(Token::Text(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "{}[]:,|\"".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Reads an example.
pub fn parse(text: &str) -> Result<Shape, String> {
    let tokens = tokens(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let shape = parser.value()?;
    match parser.tokens.get(parser.at) {
        None => Ok(shape),
        Some(extra) => Err(format!("unexpected {extra:?} after the example")),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Result<Token, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("the example ends early")?;
        self.at += 1;
        Ok(token)
    }

    fn peek_is(&self, c: char) -> bool {
        self.tokens.get(self.at) == Some(&Token::Punct(c))
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next()? {
            Token::Punct(found) if found == c => Ok(()),
            other => Err(format!("expected {c:?}, found {other:?}")),
        }
    }

    fn value(&mut self) -> Result<Shape, String> {
        let mut options = vec![self.single()?];
        while self.peek_is('|') {
            self.next()?;
            options.push(self.single()?);
        }
        Ok(if options.len() == 1 { options.remove(0) } else { Shape::OneOf(options) })
    }

    fn single(&mut self) -> Result<Shape, String> {
        match self.next()? {
            Token::Punct('{') => self.object(),
            Token::Punct('[') => {
                let mut items = Vec::new();
                while !self.peek_is(']') {
                    items.push(self.value()?);
                    if !self.peek_is(']') {
                        self.expect(',')?;
                    }
                }
                self.expect(']')?;
                Ok(Shape::Array(items))
            }
            Token::Text(text) => Ok(Shape::Text(text)),
            Token::Word(word) => Ok(match word.as_str() {
                "true" => Shape::Bool(true),
                "false" => Shape::Bool(false),
                "null" => Shape::Null,
                number if number.parse::<f64>().is_ok() => Shape::Number(number.to_owned()),
                _ => Shape::Present,
            }),
            Token::Punct(c) => Err(format!("unexpected {c:?}")),
        }
    }

    fn object(&mut self) -> Result<Shape, String> {
        let mut members = Vec::new();
        while !self.peek_is('}') {
            let name = match self.next()? {
                Token::Text(name) | Token::Word(name) => name,
                Token::Punct(c) => return Err(format!("expected a field name, found {c:?}")),
            };
            let shape = if self.peek_is(':') {
                self.next()?;
                self.value()?
            } else {
                Shape::Present
            };
            members.push((name, shape));
            if !self.peek_is('}') {
                self.expect(',')?;
            }
        }
        self.expect('}')?;
        Ok(Shape::Object(members))
    }
}

/// Checks real values against examples. Fields named in `fixed` must have the example's value
/// (`mode: "companion"`, `"version": "4.0"`); the others its type. A string that looks like a
/// time must be one.
pub struct Checker {
    fixed: &'static [&'static str],
    /// Fields checked so far.
    pub fields: usize,
}

impl Checker {
    /// A checker that holds the fields in `fixed` to the example's values.
    pub fn new(fixed: &'static [&'static str]) -> Self {
        Self { fixed, fields: 0 }
    }

    /// Every difference between `value` and the example, as `path: what`.
    pub fn differences(&mut self, value: &Value, shape: &Shape) -> Vec<String> {
        let mut found = Vec::new();
        self.walk(value, shape, "", "$", &mut found);
        found
    }

    fn walk(
        &mut self,
        value: &Value,
        shape: &Shape,
        key: &str,
        path: &str,
        found: &mut Vec<String>,
    ) {
        self.fields += 1;
        let fixed = self.fixed.contains(&key);
        let mut differ = |what: String| found.push(format!("{path}: {what} (got {value})"));
        match shape {
            Shape::Present if value.is_null() => differ("missing or null".into()),
            Shape::Present => {}
            Shape::Null if !value.is_null() => differ("should be null".into()),
            Shape::Null => {}
            Shape::Bool(b) => match value.as_bool() {
                None => differ("should be a boolean".into()),
                Some(v) if fixed && v != *b => differ(format!("should be {b}")),
                Some(_) => {}
            },
            Shape::Number(n) => {
                let whole = !n.contains(['.', 'e', 'E']);
                if !value.is_number() {
                    differ("should be a number".into());
                } else if whole && !(value.is_i64() || value.is_u64()) {
                    differ("should be a whole number".into());
                } else if fixed && value.as_f64() != n.parse::<f64>().ok() {
                    differ(format!("should be {n}"));
                }
            }
            Shape::Text(t) => match value.as_str() {
                None => differ("should be a string".into()),
                // `"..."` stands for any value, even of a fixed field.
                Some(v) if fixed && t != "..." && v != t => differ(format!("should be {t:?}")),
                Some(v) if looks_like_time(t) && !looks_like_time(v) => {
                    differ("should be an RFC 3339 UTC time".into())
                }
                Some(_) => {}
            },
            Shape::Object(members) => match value.as_object() {
                None => differ("should be an object".into()),
                Some(object) => {
                    for (name, shape) in members {
                        let path = format!("{path}.{name}");
                        match object.get(name) {
                            None => found.push(format!("{path}: missing")),
                            Some(v) => self.walk(v, shape, name, &path, found),
                        }
                    }
                }
            },
            Shape::Array(items) => match value.as_array() {
                None => differ("should be an array".into()),
                Some(values) => {
                    if let Some(item) = items.first() {
                        if values.is_empty() {
                            differ("should not be empty here, to check its items".into());
                        }
                        for (i, v) in values.iter().enumerate() {
                            self.walk(v, item, key, &format!("{path}[{i}]"), found);
                        }
                    }
                }
            },
            Shape::OneOf(options) => {
                let matches = options.iter().any(|option| {
                    let mut strict = Checker { fixed: self.fixed, fields: 0 };
                    let mut inner = Vec::new();
                    match option {
                        // The alternatives of a string are its values.
                        Shape::Text(t) => value.as_str() == Some(t.as_str()),
                        other => {
                            strict.walk(value, other, key, path, &mut inner);
                            inner.is_empty()
                        }
                    }
                });
                if matches {
                    // Count the fields of the alternative that matched.
                    if let Some(option) = options.iter().find(|o| !matches!(o, Shape::Text(_))) {
                        let mut ignored = Vec::new();
                        self.walk(value, option, key, path, &mut ignored);
                    }
                } else {
                    differ(format!("should be one of {options:?}"));
                }
            }
        }
    }
}

fn looks_like_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && text.ends_with('Z')
}

/// The example as a request body: placeholders replaced by `values` (a string value such as
/// `"child_xxx"` by its entry, a bare name such as `{ child_id }` by the entry of its name).
pub fn request(shape: &Shape, values: &HashMap<&str, String>) -> Value {
    fill(shape, "", values)
}

fn fill(shape: &Shape, key: &str, values: &HashMap<&str, String>) -> Value {
    match shape {
        Shape::Object(members) => Value::Object(
            members.iter().map(|(name, shape)| (name.clone(), fill(shape, name, values))).collect(),
        ),
        Shape::Array(items) => Value::Array(items.iter().map(|s| fill(s, key, values)).collect()),
        Shape::Text(text) => Value::String(values.get(text.as_str()).unwrap_or(text).clone()),
        Shape::Number(n) => serde_json::from_str(n).expect("a number"),
        Shape::Bool(b) => Value::Bool(*b),
        Shape::Null => Value::Null,
        Shape::Present => Value::String(
            values.get(key).unwrap_or_else(|| panic!("no value for the field {key:?}")).clone(),
        ),
        Shape::OneOf(options) => fill(&options[0], key, values),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_loose_notation_reads_like_json() {
        let shape = parse(
            r#"{ success: true, data: { token: "<JWT>", user: { uid, role }, n: 3,
                 children: [{ child_id }], state: "active" | "suspended", x: { a } | null } }"#,
        )
        .unwrap();
        let Shape::Object(top) = &shape else { panic!("{shape:?}") };
        assert_eq!(top[0], ("success".into(), Shape::Bool(true)));
        let Shape::Object(data) = &top[1].1 else { panic!() };
        assert_eq!(data[0], ("token".into(), Shape::Text("<JWT>".into())));
        assert_eq!(
            data[1].1,
            Shape::Object(vec![("uid".into(), Shape::Present), ("role".into(), Shape::Present)])
        );
        assert_eq!(data[2].1, Shape::Number("3".into()));
        assert_eq!(
            data[4].1,
            Shape::OneOf(vec![Shape::Text("active".into()), Shape::Text("suspended".into())])
        );
        assert!(matches!(&data[5].1, Shape::OneOf(o) if o[1] == Shape::Null));
        assert_eq!(
            parse(r#"{ "a": [1, 2.5], "b": null }"#).unwrap(),
            Shape::Object(vec![
                (
                    "a".into(),
                    Shape::Array(vec![Shape::Number("1".into()), Shape::Number("2.5".into())])
                ),
                ("b".into(), Shape::Null),
            ])
        );
        assert!(parse("{ a: }").is_err());
        assert!(parse("{ a } }").is_err());
    }

    #[test]
    fn values_are_checked_by_type_and_fixed_fields_by_value() {
        let shape = parse(
            r#"{ "mode": "companion", "id": "sess_1", "ttl": 3600, "at": "2026-05-24T10:00:00Z",
                 "score": 0.5, "state": "a" | "b", "kids": [{ id }], "me": { id } | null }"#,
        )
        .unwrap();
        let mut checker = Checker::new(&["mode", "ttl"]);
        let good = json!({"mode": "companion", "id": "x", "ttl": 3600, "extra": 1,
            "at": "2026-12-03T09:00:00.123Z", "score": 1, "state": "b", "kids": [{"id": 4}],
            "me": null});
        assert_eq!(checker.differences(&good, &shape), Vec::<String>::new());
        assert!(checker.fields > 10);
        let bad = json!({"mode": "conversation", "id": 7, "ttl": 3601,
            "at": "yesterday", "score": "high", "state": "c", "kids": [], "me": {"id": null}});
        let found = checker.differences(&bad, &shape);
        for path in ["$.mode", "$.id", "$.ttl", "$.at", "$.score", "$.state", "$.kids", "$.me"] {
            assert!(found.iter().any(|f| f.starts_with(&format!("{path}:"))), "{path}: {found:#?}");
        }
        assert_eq!(found.len(), 8, "{found:#?}");
        let missing = checker.differences(&json!({}), &parse("{ a, b: 1 }").unwrap());
        assert_eq!(missing, ["$.a: missing", "$.b: missing"]);
        assert_eq!(
            checker.differences(&json!({"n": 1.5}), &parse("{ n: 2 }").unwrap()),
            ["$.n: should be a whole number (got 1.5)"]
        );
        // A placeholder holds a fixed field to its type only.
        let placeholder = parse(r#"{ "mode": "..." }"#).unwrap();
        assert!(checker.differences(&json!({"mode": "anything"}), &placeholder).is_empty());
        assert_eq!(checker.differences(&json!({"mode": 1}), &placeholder).len(), 1);
    }

    #[test]
    fn examples_become_requests_with_their_placeholders_filled() {
        let shape = parse(r#"{ type: "request", payload: { session_id: "sess_xxx", child_id } }"#);
        let values = HashMap::from([("sess_xxx", "s-1".to_owned()), ("child_id", "c-1".into())]);
        assert_eq!(
            request(&shape.unwrap(), &values),
            json!({"type": "request", "payload": {"session_id": "s-1", "child_id": "c-1"}})
        );
    }

    #[test]
    fn examples_are_found_in_their_sections() {
        let doc = "## 4. Flows\n### 4.1 One\nBody: { a }\nResponse: {\n  b: \"}\" ,\n c: [1]\n}\n\
                   ### 4.2 Two\nResponse: { d }\n## 5. Next\n";
        let (text, shape) = example(doc, "### 4.1", "Response:");
        assert_eq!(text, "{\n  b: \"}\" ,\n c: [1]\n}");
        assert!(matches!(shape, Shape::Object(m) if m.len() == 2));
        assert_eq!(example(doc, "### 4.2", "Response:").0, "{ d }");
        assert!(section(doc, "## 4.").contains("### 4.2"));
        assert!(!section(doc, "### 4.1").contains("{ d }"));
        assert_eq!(line_after(doc, "### 4.1", "Body:"), "{ a }");
    }
}
