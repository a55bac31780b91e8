//! The protocol's names for other languages: the browser console loads them as a script the
//! gateway generates from this crate, so it never spells an action itself.

use crate::client::ClientRequest;
use crate::frame::{HEADER_LEN, MAGIC, VERSION};
use crate::server::{ResumeReason, ServerEvent};

/// The JavaScript identifier of a wire name: `ai_response.chunk` → `AI_RESPONSE_CHUNK`.
pub fn js_key(wire: &str) -> String {
    wire.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect()
}

fn object<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let fields: Vec<String> =
        names.into_iter().map(|name| format!("    {}: {name:?},", js_key(name))).collect();
    format!("Object.freeze({{\n{}\n  }})", fields.join("\n"))
}

/// A script defining the frozen global `VOICE`: `VOICE.server` (every server action),
/// `VOICE.request` (every client action), `VOICE.resumeReason` and `VOICE.frame` (the v4
/// header).
pub fn javascript() -> String {
    let server = object(ServerEvent::CATALOGUE.iter().map(|(_, action)| *action));
    let request = object(ClientRequest::ACTIONS.iter().copied());
    let reasons = object(ResumeReason::ALL.iter().map(|r| r.as_str()));
    format!(
        "// The voice socket's names (docs/ws-messages.md), generated from the protocol crate.\n\
         \"use strict\";\n\
         const VOICE = Object.freeze({{\n  \
         server: {server},\n  \
         request: {request},\n  \
         resumeReason: {reasons},\n  \
         frame: Object.freeze({{ MAGIC: {MAGIC}, VERSION: {VERSION}, HEADER_LEN: {HEADER_LEN} }}),\n\
         }});\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_every_action() {
        let script = javascript();
        assert!(script.contains("AI_RESPONSE_CHUNK: \"ai_response.chunk\","), "{script}");
        assert!(script.contains("TURN_END: \"turn.end\","), "{script}");
        assert!(script.contains("MAGIC: 177, VERSION: 4, HEADER_LEN: 22"), "{script}");
    }
}
