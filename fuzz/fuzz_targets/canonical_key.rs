//! The canonical request and its key, computed as replay computes it for a live
//! request (URL, headers and body redacted, then `identify`), compared with the two
//! other ways the same key is made:
//!
//! - `canonical(..).key()` for a body kept whole (the function `identify` inlines);
//! - `Recording::identify` on the event record would have stored (what replay does for
//!   every recorded event when the rules differ from the recording's): record and
//!   replay must agree, or a recorded call misses;
//!
//! and a JSON body with its object keys in another order keys the same. The body is also
//! read as a replay miss shows a multipart form (`multipart_view`), which must not panic.
//!
//! Input fields (split on 0xFF): method, URL, header lines, body, `tapedeck.toml` (used
//! when it parses, else the default rules).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tapedeck_fuzz::{fields, header_lines, header_map, text};
use tapedeck_model::exchange::canonical::{canonical, identify, sort_keys, CanonicalBody, KeyBody};
use tapedeck_model::credential::NameKind;
use tapedeck_model::exchange::redact::{self, Secrets, MAX_SCRUB_LEN, MIN_SCRUB_LEN};
use tapedeck_model::exchange::{header, BodyRef, Event, Kind, RequestRecord, Timing};
use tapedeck_model::rules::{RuleArgs, Rules, REDACTED};
use tapedeck_store::recording::Recording;
use tapedeck_store::tape::{Tape, TapeHeader, TAPE_VERSION};

/// Object keys in reverse order, at every depth.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 5);
    let method = text(f[0]);
    let url = text(f[1]);
    let map = header_map(&header_lines(f[2]));
    let body = f[3];
    // A replay miss shows a multipart body part by part: any body reads as one or not.
    if let Some(v) = tapedeck_model::exchange::canonical::multipart_view(body) {
        assert!(v.is_object());
    }
    let rules = std::str::from_utf8(f[4])
        .ok()
        .and_then(|t| Rules::from_toml(t, &RuleArgs::default()).ok())
        .unwrap_or_default();

    // The live request in its stored form, as replay makes it.
    let mut secrets = Secrets::default();
    let mut url = redact::url(&url, &rules, &mut secrets);
    let mut headers = redact::headers(&map, NameKind::Header, &rules, &mut secrets);
    redact::scrub_url(&mut url, &rules, &mut secrets);
    let ct = header(&headers, "content-type").map(str::to_string);
    let limit = tapedeck_store::keep_limit(ct.as_deref());
    let (stored, whole) = redact::stored_body(body, ct.as_deref(), limit, &rules, &mut secrets);
    redact::scrub_headers(&mut headers, &secrets);
    redact::scrub_url(&mut url, &rules, &mut secrets);
    let b3 = blake3::hash(&stored).to_hex().to_string();

    // No API key is stored: the credential of an `Authorization` or `X-Api-Key` header
    // the rules redact is nowhere in the stored URL, headers or body (an agent that also
    // sends its key in a path, `/v1/keys/<key>/usage`, or echoes it in a prompt). Values
    // that hold a bracket are left out: the marker's brackets could join what surrounds
    // it into one (`x]abcdefg` after `[REDACTED`).
    for (name, value) in map.iter() {
        let named = ["authorization", "x-api-key"].contains(&name.as_str());
        let raw = String::from_utf8_lossy(value.as_bytes());
        let redacted = headers.iter().any(|(n, v)| n == name.as_str() && v.contains(REDACTED));
        if !named || !redacted {
            continue;
        }
        let raw = raw.trim();
        let credential = raw.split_once(' ').map(|(_, c)| c.trim());
        for v in std::iter::once(raw).chain(credential) {
            if !(MIN_SCRUB_LEN..=MAX_SCRUB_LEN).contains(&v.len())
                || v.contains(['[', ']'])
                || REDACTED.contains(v)
            {
                continue;
            }
            assert!(!url.contains(v), "the key {v:?} is in the stored URL {url:?}");
            for (n, h) in &headers {
                assert!(!h.contains(v), "the key {v:?} is in the stored header {n}: {h:?}");
            }
            assert!(
                !stored.windows(v.len()).any(|w| w == v.as_bytes()),
                "the key {v:?} is in the stored body {:?}",
                String::from_utf8_lossy(&stored)
            );
        }
    }
    let key_body = if whole {
        KeyBody::Whole(&stored)
    } else {
        KeyBody::Large(&b3)
    };
    let (kind, key) = identify(&method, &url, &headers, key_body, &rules);

    let mut is_json = false;
    if whole {
        let c = canonical(&method, &url, &headers, &stored, &rules);
        is_json = matches!(c.body, CanonicalBody::Json(_));
        assert_eq!(c.key(), key, "identify and canonical().key() disagree");
    }

    // The same request as a recorded event, keyed as replay keys recorded events.
    let ev = Event {
        step: 1,
        kind: Kind::Other,
        key: String::new(),
        rules: None,
        agent: None,
        request: RequestRecord {
            method: method.clone(),
            url: url.clone(),
            version: "HTTP/1.1".into(),
            headers: headers.clone(),
            body: BodyRef::of(b3.clone(), stored.len() as u64),
        },
        response: None,
        timing: Timing::default(),
        error: None,
        ws: None,
        injected: None,
    };
    let rec = Recording::from_tape(
        Tape {
            header: TapeHeader {
                tapedeck_tape: TAPE_VERSION,
                session: "fuzz".into(),
                events: 1,
                exit_code: None,
            },
            events: vec![ev.clone()],
            bodies: [(b3.clone(), Bytes::from(stored.clone()))]
                .into_iter()
                .collect(),
            files: Default::default(),
        },
        "fuzz".into(),
    );
    let recorded = rec
        .identify(&ev, &rules)
        .expect("the body is in the recording");
    assert_eq!(
        recorded,
        (kind, key.clone()),
        "a recorded request and the same request live get different keys"
    );

    // Object key order does not matter (floats that do not survive a re-parse aside).
    if is_json {
        if let Ok(v) = serde_json::from_slice::<Value>(&stored) {
            if let Ok(other) = serde_json::to_vec(&reversed(&v)) {
                let same_value = serde_json::from_slice::<Value>(&other)
                    .map(|o| sort_keys(&o) == sort_keys(&v))
                    .unwrap_or(false);
                if same_value {
                    let (_, k2) = identify(&method, &url, &headers, KeyBody::Whole(&other), &rules);
                    assert_eq!(k2, key, "the key depends on the order of JSON object keys");
                }
            }
        }
    }
});
