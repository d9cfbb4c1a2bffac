//! `docs/openapi.json` (served at `GET /openapi.json`) against the code: the
//! routes in `http.rs` are the document's operations, its error-code enum is
//! every code the service has, each operation documents a response for the
//! status of every code it lists, and a running service answers every
//! operation (unauthenticated, with an empty body) with a status and code the
//! document gives that operation. Schemathesis (`.ci/run`) checks the
//! responses' bodies under generated input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;

use attest_gate_verifier::{ErrorCode, OPENAPI_DOCUMENT};
use common::{code, repo, start, Options};
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(OPENAPI_DOCUMENT).expect("docs/openapi.json is JSON")
}

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// (METHOD, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// (METHOD, path) of every `.route(…)` in `http.rs`, read from its source
/// (axum keeps no list of its routes).
fn routed() -> BTreeSet<(String, String)> {
    let file = std::fs::read_to_string(repo().join("verifier/service/src/http.rs")).unwrap();
    // Not the unit tests' own routes.
    let source = file.split("#[cfg(test)]").next().unwrap();
    // A path named by a constant: its value, read from where it is defined.
    let constant = |file: &str, name: &str| -> String {
        let text = std::fs::read_to_string(repo().join("verifier/service/src/service").join(file))
            .unwrap();
        text.split(&format!("pub(crate) const {name}: &str = \""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{name} in {file}"))
            .to_string()
    };
    let exchange_path = constant("exchange.rs", "EXCHANGE_PATH");
    let jwt_svid_path = constant("jwt_svid.rs", "JWT_SVID_PATH");
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices(".route(") {
        // The call's text, to its closing parenthesis.
        let rest = &source[at + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let call = &rest[..end];
        let path = if call.contains("EXCHANGE_PATH") {
            exchange_path.clone()
        } else if call.contains("JWT_SVID_PATH") {
            jwt_svid_path.clone()
        } else {
            call.split('"').nth(1).unwrap().to_string()
        };
        let handlers = &call[call.find(',').unwrap()..];
        for method in METHODS {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if called {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(found.len() > 20, "read only {} routes", found.len());
    found
}

#[test]
fn every_route_is_documented_and_every_operation_routed() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(documented(&doc), routed());
}

#[test]
fn the_documented_codes_are_the_services_and_each_has_its_status() {
    let doc = document();
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = ErrorCode::all().map(ErrorCode::as_str).collect();
    assert_eq!(listed, all, "the Error schema's code enum");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let codes = operation["x-error-codes"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no x-error-codes"));
            for wire in codes {
                let wire = wire.as_str().unwrap();
                let code = ErrorCode::all()
                    .find(|c| c.as_str() == wire)
                    .unwrap_or_else(|| panic!("{method} {path}: unknown code {wire}"));
                let status = code.status().as_u16().to_string();
                assert!(
                    operation["responses"].get(&status).is_some(),
                    "{method} {path} lists {wire} but documents no {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_service_serves_the_document_and_answers_each_operation_as_documented() {
    let server = start(Options::default());
    let (status, served) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, OPENAPI_DOCUMENT);
    let doc = document();
    for (method, path) in documented(&doc) {
        let url = format!("{}{}", server.url, path.replace("{name}", "api-key"));
        let request = match method.as_str() {
            "GET" => server.client.get(&url),
            "POST" => server.client.post(&url),
            "PUT" => server.client.put(&url),
            _ => server.client.delete(&url),
        };
        let response = request
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let operation = &doc["paths"][&path][method.to_lowercase()];
        assert!(
            operation["responses"].get(status.to_string()).is_some(),
            "{method} {path}: {status} is not documented"
        );
        if status >= 400 {
            let body: Value = response.json().await.unwrap();
            let code = code(&body);
            assert!(
                operation["x-error-codes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == code),
                "{method} {path}: answered {code}, which it does not list"
            );
        }
    }
}
