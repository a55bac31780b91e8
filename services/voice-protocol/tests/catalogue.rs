//! The catalogue (`docs/ws-messages.md`) and the browser console (`gateway/console/console.js`)
//! checked against the protocol crate: a message, code or name added, renamed or dropped on one
//! side and not the other fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use blob_voice_protocol::catalogue::{javascript, js_key};
use blob_voice_protocol::{ClientRequest, CloseCode, ErrorCode, ServerEvent, ServerMessage};

fn workspace_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|err| panic!("{}: {err}", file.display()))
}

/// The document's section under `heading` (up to the next heading of the same level).
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc.find(heading).unwrap_or_else(|| panic!("no section {heading:?}"));
    let level = heading.split(' ').next().unwrap();
    let body = &doc[start + heading.len()..];
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

/// The first table in `text`.
fn first_table(text: &str) -> String {
    let lines = text.lines().skip_while(|l| !l.starts_with('|'));
    lines.take_while(|l| l.starts_with('|')).collect::<Vec<_>>().join("\n")
}

/// The first cell of every table row in `text` (header and separator rows left out).
fn first_cells(text: &str) -> Vec<String> {
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    let mut cells = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let is_header = rows.get(i + 1).is_some_and(|next| next.starts_with("|---"));
        if is_header || row.starts_with("|---") {
            continue;
        }
        cells.push(row.split('|').nth(1).unwrap_or_default().trim().to_owned());
    }
    cells
}

/// The words in backticks in `cell`.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_catalogue_lists_every_server_message_with_its_type() {
    let doc = workspace_file("docs/ws-messages.md");
    let listed: BTreeSet<(String, String)> = first_cells(section(&doc, "## Server → client"))
        .iter()
        .filter_map(|cell| match quoted(cell).as_slice() {
            [kind, action] => Some((kind.clone(), action.clone())),
            _ => None,
        })
        .collect();
    let typed: BTreeSet<(String, String)> = ServerEvent::CATALOGUE
        .iter()
        .filter(|(_, action)| {
            !matches!(*action, "pause" | "resume" | "playback.progress" | "turn.end")
        })
        .map(|(kind, action)| (kind.as_str().to_owned(), (*action).to_owned()))
        .collect();
    assert_eq!(listed, typed, "docs/ws-messages.md \"Server → client\" against ServerEvent");
}

#[test]
fn the_catalogue_lists_every_client_request_and_its_answer() {
    let doc = workspace_file("docs/ws-messages.md");
    let table = first_table(section(&doc, "## Client → server"));
    let listed: BTreeSet<String> =
        first_cells(&table).iter().flat_map(|cell| quoted(cell)).collect();
    let typed: BTreeSet<String> = ClientRequest::ACTIONS.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(listed, typed, "docs/ws-messages.md \"Client → server\" against ClientRequest");
    // The answers the table names are typed responses.
    for row in table.lines().filter(|l| l.contains("`response`")) {
        let answer =
            row.split("`response` `").nth(1).and_then(|r| r.split(['`', ' ']).next()).unwrap();
        let entry = ServerEvent::CATALOGUE.iter().find(|(_, action)| *action == answer);
        assert!(
            entry.is_some_and(|(kind, _)| kind.as_str() == "response"),
            "the answer {answer:?} is not a typed response"
        );
    }
}

#[test]
fn the_catalogue_lists_every_error_code() {
    let doc = workspace_file("docs/ws-messages.md");
    let mut listed = BTreeSet::new();
    for table in doc.split("\n\n").filter(|block| block.starts_with("| error code |")) {
        listed.extend(first_cells(table).iter().flat_map(|cell| quoted(cell)));
    }
    let typed: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(listed, typed, "docs/ws-messages.md error code tables against ErrorCode");
}

#[test]
fn the_catalogue_lists_every_close_code() {
    let doc = workspace_file("docs/ws-messages.md");
    let handshake = section(&doc, "## Handshake and close codes");
    let listed: BTreeSet<u16> = handshake
        .lines()
        .filter(|l| l.starts_with('|'))
        .flat_map(quoted)
        .filter_map(|word| word.parse().ok())
        .filter(|code| *code >= 1000)
        .collect();
    let typed: BTreeSet<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(listed, typed, "docs/ws-messages.md close codes against CloseCode");
}

#[test]
fn the_example_turn_is_typed_messages() {
    let doc = workspace_file("docs/ws-messages.md");
    let example = section(&doc, "## A turn, in order");
    let mut checked = 0;
    for line in example.lines().filter_map(|l| l.strip_prefix("← ")) {
        let mut words = line.splitn(3, ' ');
        let (kind, action) = (words.next().unwrap(), words.next().unwrap());
        let rest = words.next().unwrap_or_default().trim();
        let payload = if rest.starts_with('{') {
            serde_json::from_str(rest).unwrap_or_else(|e| panic!("{line}: {e}"))
        } else if action == "conversation.state" {
            serde_json::json!({ "state": rest.split(' ').next().unwrap() })
        } else {
            continue; // `audio_ack …`: elided
        };
        let message = serde_json::json!({
            "type": kind, "action": action, "payload": payload,
            "meta": { "session_id": "s", "timestamp": "t" },
        });
        ServerMessage::from_value(message).unwrap_or_else(|e| panic!("{line}: {e}"));
        checked += 1;
    }
    assert!(checked >= 8, "the example turn was read: {checked} messages");
}

#[test]
fn the_console_uses_only_the_generated_names() {
    let script = workspace_file("gateway/console/console.js");
    let generated = javascript();
    // Every `VOICE.group.NAME` the console uses is generated.
    let mut used = 0;
    for (i, _) in script.match_indices("VOICE.") {
        let reference: String = script[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let parts: Vec<&str> = reference.split('.').collect();
        assert_eq!(parts.len(), 3, "VOICE.group.NAME: {reference}");
        let group_start = generated
            .find(&format!("  {}: Object.freeze(", parts[1]))
            .unwrap_or_else(|| panic!("no group {reference} in the generated script"));
        let group = &generated[group_start..];
        let group = &group[..group.find(")").unwrap()];
        assert!(group.contains(&format!("{}:", parts[2])), "{reference} is not generated");
        used += 1;
    }
    assert!(used >= 15, "the console takes its names from VOICE ({used} uses)");
    // And it spells no action itself.
    let actions = ServerEvent::CATALOGUE
        .iter()
        .map(|(_, action)| *action)
        .chain(ClientRequest::ACTIONS.iter().copied());
    for action in actions {
        for quote in ['"', '\''] {
            let literal = format!("{quote}{action}{quote}");
            assert!(
                !script.contains(&literal),
                "console.js spells {literal}: use VOICE.*.{}",
                js_key(action)
            );
        }
    }
}
