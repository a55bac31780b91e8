//! The REST contract as an OpenAPI 3.1 document, generated from the handlers and their types
//! (`utoipa`), served at `/openapi.json` and as a readable page at `/docs`.
//!
//! Handlers declare the `data` of their success responses; the envelope every response shares
//! (`{success, data, meta}` or `{success, error, meta}`) is added here, once, so the document
//! describes exactly what is on the wire.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::envelope::ErrorCode;
use crate::routes;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Blob API",
        version = "4.0",
        description = "The REST API of Blob, a voice companion for young children. Every response \
                       is an envelope: `{success: true, data, meta}` or `{success: false, error: \
                       {code, message, details?}, meta}`. The voice socket is described in \
                       docs/ws-messages.md."
    ),
    components(schemas(crate::envelope::Meta, ErrorCode)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Signing in"),
        (name = "users", description = "The signed-in parent"),
        (name = "children", description = "Children, their access and their data"),
        (name = "progress", description = "Lesson progress"),
        (name = "lessons", description = "The lessons catalogue"),
        (name = "sessions", description = "Voice sessions"),
        (name = "conversations", description = "What was said"),
        (name = "health", description = "Liveness and dependencies"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The backend token from /api/v1/auth/token-exchange"))
                    .build(),
            ),
        );
    }
}

/// Every error code: HTTP statuses and when it is used.
pub const ERROR_CODES: &[(ErrorCode, &str, &str)] = &[
    (ErrorCode::TokenExpired, "401", "the token has expired: sign in again or refresh"),
    (ErrorCode::TokenInvalid, "401", "token missing, malformed, forged or for another audience"),
    (ErrorCode::Forbidden, "403", "signed in, but the family link does not allow this"),
    (ErrorCode::NotFound, "404", "no such resource, or another family's (indistinguishable)"),
    (
        ErrorCode::ValidationError,
        "400, 405, 413, 415, 422",
        "bad request: a field's value, wrong method, body too large, not JSON, wrong types",
    ),
    (ErrorCode::Conflict, "409", "the state does not allow this, or an Idempotency-Key reused"),
    (ErrorCode::RateLimited, "429", "too many requests: retry after Retry-After seconds"),
    (ErrorCode::SessionPaused, "409", "the session is paused"),
    (ErrorCode::ServiceUnavailable, "503, 504", "a service is down or slow: retry with backoff"),
    (ErrorCode::FirestoreUnavailable, "503", "the durable store is unreachable: retry"),
    (ErrorCode::Internal, "500", "our fault: quote meta.request_id"),
];

/// The document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The answers every operation of a kind can give, described once: `(status, description)`.
/// Signed-in operations are authenticated and throttled; every `/api/v1` operation depends on
/// the services behind the gateway and has a deadline.
const SIGNED_IN_ERRORS: [(&str, &str); 2] =
    [("401", "TOKEN_EXPIRED or TOKEN_INVALID"), ("429", "RATE_LIMITED, with Retry-After")];
const API_ERRORS: [(&str, &str); 2] = [
    ("503", "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
    ("504", "SERVICE_UNAVAILABLE: the request took too long"),
];

fn build() -> Value {
    // The operations come from the same routers the server is made of.
    let mut api = ApiDoc::openapi();
    api.merge(routes::api().into_openapi());
    api.merge(routes::health::router().into_openapi());
    let mut doc = serde_json::to_value(api).expect("the document serialises");
    add_common_errors(&mut doc);
    let codes: Vec<String> = ERROR_CODES
        .iter()
        .map(|(code, status, when)| format!("| `{}` | {status} | {when} |", code_name(*code)))
        .collect();
    let description = doc["info"]["description"].as_str().unwrap_or_default().to_owned();
    doc["info"]["description"] = Value::String(format!(
        "{description}\n\n| error code | HTTP | when |\n|---|---|---|\n{}",
        codes.join("\n")
    ));
    doc["info"]["x-error-codes"] = ERROR_CODES
        .iter()
        .map(|(code, status, when)| json!({"code": code_name(*code), "http": status, "when": when}))
        .collect();
    let schemas = &mut doc["components"]["schemas"];
    schemas["ErrorEnvelope"] = json!({
        "type": "object",
        "required": ["success", "error", "meta"],
        "properties": {
            "success": {"const": false},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"$ref": "#/components/schemas/ErrorCode"},
                    "message": {"type": "string"},
                    "details": {"description": "Structured detail, e.g. {field}"}
                }
            },
            "meta": {"$ref": "#/components/schemas/Meta"}
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in
            paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut())
        {
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let success = status.starts_with('2');
                let data = response["content"]["application/json"]["schema"].take();
                let schema = if success {
                    json!({
                        "type": "object",
                        "required": ["success", "data", "meta"],
                        "properties": {
                            "success": {"const": true},
                            "data": if data.is_null() { json!({}) } else { data },
                            "meta": {"$ref": "#/components/schemas/Meta"}
                        }
                    })
                } else {
                    json!({"$ref": "#/components/schemas/ErrorEnvelope"})
                };
                response["content"] = json!({"application/json": {"schema": schema}});
            }
        }
    }
    // `/health` also carries the proof of concept's top-level `"status": "ok"`.
    let health = &mut doc["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    health["properties"]["status"] = json!({ "const": "ok" });
    if let Some(required) = health["required"].as_array_mut() {
        required.push(json!("status"));
    }
    doc
}

/// Adds the shared error answers to each operation that can give them (an operation's own
/// description of a status wins).
fn add_common_errors(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        for operation in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let signed_in = operation["security"]
                .as_array()
                .is_some_and(|schemes| schemes.iter().any(|s| s.get("bearer").is_some()));
            let mut common = Vec::new();
            if signed_in {
                common.extend(SIGNED_IN_ERRORS);
            }
            if path.starts_with("/api/v1/") {
                common.extend(API_ERRORS);
            }
            let Some(responses) = operation["responses"].as_object_mut() else { continue };
            for (status, description) in common {
                responses.entry(status).or_insert_with(|| json!({ "description": description }));
            }
        }
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document().to_string()).into_response()
}

/// `GET /docs`: the document as a page, readable without any script or network access.
pub async fn docs_page() -> Response {
    (StatusCode::OK, Html(render(document()))).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn render(doc: &Value) -> String {
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Blob API</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}\
         h3{margin-bottom:.2rem}.m{font-weight:bold;text-transform:uppercase}</style></head><body>",
    );
    page.push_str("<h1>Blob API 4.0</h1><p>The machine-readable contract: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1). Every response is an envelope: <code>{success, data, meta}</code> or <code>{success, error: {code, message, details?}, meta}</code>.</p>");
    page.push_str("<h2>Error codes</h2><table><tr><th>code</th><th>HTTP</th><th>when</th></tr>");
    for (code, status, when) in ERROR_CODES {
        page.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            code_name(*code),
            escape(status),
            escape(when)
        ));
    }
    page.push_str("</table><h2>Endpoints</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                page.push_str(&format!(
                    "<h3><span class=\"m\">{}</span> <code>{}</code></h3><p>{}</p><ul>",
                    escape(method),
                    escape(path),
                    escape(operation["summary"].as_str().unwrap_or_default())
                ));
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    page.push_str(&format!(
                        "<li><code>{}</code> {}</li>",
                        escape(status),
                        escape(response["description"].as_str().unwrap_or_default())
                    ));
                }
                page.push_str("</ul>");
            }
        }
    }
    page.push_str("</body></html>");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route_and_error_code() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let paths = doc["paths"].as_object().unwrap();
        let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(operations, 28);
        let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().unwrap();
        assert_eq!(codes.len(), ERROR_CODES.len(), "every code is described once");
        for (code, _, _) in ERROR_CODES {
            assert!(codes.contains(&Value::String(code_name(*code))));
        }
        let create = &doc["paths"]["/api/v1/children"]["post"]["responses"]["201"];
        let schema = &create["content"]["application/json"]["schema"];
        assert_eq!(schema["properties"]["data"]["$ref"], "#/components/schemas/ChildView");
    }
}
