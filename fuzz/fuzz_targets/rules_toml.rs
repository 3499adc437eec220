//! `tapedeck.toml`: any text is either refused (a parse error names the line) or gives
//! rules that every use of them survives: fingerprint, kind and tool-name patterns, JSON
//! paths removed from real request bodies, redaction and keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_model::exchange::canonical::{identify, KeyBody};
use tapedeck_model::exchange::redact::{self, Secrets};
use tapedeck_model::rules::{RuleArgs, Rules, RulesError};

/// Real requests the rules are applied to: method, URL, content type, body.
const REQUESTS: &[(&str, &str, &str, &[u8])] = &[
    (
        "POST",
        "https://api.openai.com/v1/chat/completions?api-version=1&ts=5",
        "application/json",
        br#"{"model":"gpt-4o-mini","metadata":{"request_id":"r-1"},"messages":[{"role":"user","content":"hi"}],"user":"u","tools":[{"type":"function","function":{"name":"get_weather"}}]}"#,
    ),
    (
        "GET",
        "https://api.weather.test/weather?city=Paris&sig=abcdefgh12",
        "",
        b"",
    ),
    (
        "POST",
        "https://tools.internal/oauth/token",
        "application/x-www-form-urlencoded",
        b"grant_type=password&password=hunter2-secret&client_secret=cs-12345678",
    ),
    (
        "POST",
        "http://127.0.0.1:11434/api/chat",
        "application/json",
        br#"[{"a":[1,2,{"b":null}]},{"password":"p-12345678"}]"#,
    ),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match Rules::from_toml(text, &RuleArgs::default()) {
        Ok(r) => r,
        Err(e @ RulesError::Parse { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("line"),
                "a tapedeck.toml parse error must name the line: {message}"
            );
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = rules.match_fingerprint();
    for (method, url, ct, body) in REQUESTS {
        let mut secrets = Secrets::default();
        let url = redact::url(url, &rules, &mut secrets);
        let ct = (!ct.is_empty()).then_some(*ct);
        let (stored, _) = redact::stored_body(body, ct, 1 << 20, &rules, &mut secrets);
        let headers: Vec<(String, String)> = ct
            .map(|c| vec![("content-type".to_string(), c.to_string())])
            .unwrap_or_default();
        let (kind, key) = identify(method, &url, &headers, KeyBody::Whole(&stored), &rules);
        assert_eq!(
            (kind, key),
            identify(method, &url, &headers, KeyBody::Whole(&stored), &rules),
            "a key depends only on the request and the rules"
        );
        let parts = tapedeck_model::exchange::canonical::UrlParts::parse(&url);
        let _ = rules.tool_name(method, &parts.host, &parts.path);
        let _ = rules.is_redacted_header("x-tenant-token");
        let _ = rules.redacts_query(&parts.host, "sig", "a-value-of-some-length");
    }
});
