//! Who a client is: `Proxy-Authorization` parsing and percent-decoding of the user name
//! and password (a client controls both), `--proxy-auth USER:PASS`, session tokens, and
//! `OTEL_EXPORTER_OTLP_HEADERS` (percent-decoded the same way). Any header value is
//! admitted or refused without a panic, and what tapedeck hands out is accepted back:
//! the user information it puts in a child's proxy URL, and the token
//! `tapedeck session-token` prints.
//!
//! Input fields (split on 0xFF): a `Proxy-Authorization` value, `--proxy-auth` text,
//! a session secret, a session name, an `OTEL_EXPORTER_OTLP_HEADERS` value.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tapedeck_fuzz::{fields, text};
use tapedeck_model::exchange::canonical::percent_decode;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::auth::{parse_basic, Access, ProxyAuth, SessionSecret};

fn basic(userinfo: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    let cred = base64::engine::general_purpose::STANDARD.encode(userinfo);
    if let Ok(v) = http::HeaderValue::from_str(&format!("Basic {cred}")) {
        h.insert(http::header::PROXY_AUTHORIZATION, v);
    }
    h
}

fn access(proxy_auth: Option<ProxyAuth>, session_secret: Option<SessionSecret>) -> Access {
    Access {
        proxy_auth,
        session_secret,
        fixed: None,
        fallback: SessionName::new("fallback").expect("a session name"),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 5);

    // Any header a client sends, under every configuration.
    let presented = text(f[0]);
    let _ = parse_basic(&presented);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(f[0]) {
        headers.insert(http::header::PROXY_AUTHORIZATION, v);
    }
    let auth = ProxyAuth::parse(&text(f[1])).ok();
    let secret = SessionSecret::new(&text(f[2])).ok();
    for a in [
        access(None, None),
        access(auth.clone(), None),
        access(None, secret.clone()),
        access(auth.clone(), secret.clone()),
    ] {
        let _ = a.admit(&headers);
    }

    // Percent-decoding inverts percent-encoding, whatever the text.
    let name = text(f[3]);
    let encoded = utf8_percent_encode(&name, NON_ALPHANUMERIC).to_string();
    assert_eq!(percent_decode(&encoded), name);
    let _ = percent_decode(&name);

    // The credentials tapedeck puts in a child's proxy URL are accepted.
    if let Some(auth) = &auth {
        if !auth.user.contains('+') {
            let id = access(Some(auth.clone()), None)
                .admit(&basic(&auth.userinfo()))
                .unwrap_or_else(|r| panic!("own userinfo {:?} refused: {r:?}", auth.userinfo()));
            assert_eq!(id.session.as_str(), "fallback");
        }
    }

    // A session's token opens that session.
    if let (Some(secret), Ok(session)) = (&secret, SessionName::new(&name)) {
        let token = secret.token(&session);
        let userinfo = format!(
            "{}+agent:{}",
            utf8_percent_encode(session.as_str(), NON_ALPHANUMERIC),
            token
        );
        let id = access(None, Some(secret.clone()))
            .admit(&basic(&userinfo))
            .unwrap_or_else(|r| panic!("session {session}'s own token refused: {r:?}"));
        assert_eq!(id.session, session);
        assert_eq!(id.agent.as_deref(), Some("agent"));
    }

    // OTEL_EXPORTER_OTLP_HEADERS: `k=v,k2=v2`, values percent-decoded.
    for (k, _) in tapedeck_trace::otlp::parse_headers(&text(f[4])) {
        assert!(!k.is_empty());
    }
    assert_eq!(
        tapedeck_trace::otlp::parse_headers(&format!("x-fuzz={encoded}")),
        vec![("x-fuzz".to_string(), name.clone())]
    );
});
