//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy
//! removes them, together with every header the `Connection` header names.

use http::header::{HeaderMap, HeaderName, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};

/// The request header that carries a daemon's control token (see [`crate::LocalApi`]).
pub const CONTROL_TOKEN_HEADER: &str = "x-tapedeck-token";

const HOP: &[&str] = &[
    // The control API's token is for this daemon only, never for an upstream (nor, via
    // an upstream that is this daemon, for its control API).
    CONTROL_TOKEN_HEADER,
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Whether a header is hop-by-hop whatever `Connection` says: recorded headers (a
/// replayed response's) are checked by name with this, live ones go through [`strip`].
/// `TE` counts, though `strip` lets `TE: trailers` through.
pub fn is_hop_by_hop(name: &str) -> bool {
    [CONNECTION, TRANSFER_ENCODING, UPGRADE, TE]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
        || HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Removes the hop-by-hop headers of a live message, and those its `Connection` names.
pub fn strip(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    headers.remove(CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
    for h in HOP {
        headers.remove(*h);
    }
    // `TE: trailers` is the one TE value that may cross a hop (and h2 requires it be the only one).
    let keep_te = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    if !keep_te {
        headers.remove(TE);
    }
}

/// Whether a response with `status` may carry a `Content-Length` header. A 1xx or 204 may
/// not (RFC 9110, 8.6); an upstream that sends one anyway would have HTTP/2 clients reset
/// the stream (nghttp2 and curl refuse it), so it is not passed on.
pub fn may_carry_length(status: http::StatusCode) -> bool {
    !(status.is_informational() || status == http::StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_headers_and_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        h.insert("x-tapedeck-token", "t0k".parse().unwrap());
        h.insert("te", "gzip".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
        let mut h = HeaderMap::new();
        h.insert("te", "trailers".parse().unwrap());
        strip(&mut h);
        assert!(h.contains_key("te"));
    }

    #[test]
    fn a_204_or_1xx_never_carries_a_length_and_other_answers_may() {
        for code in [100, 101, 103, 204] {
            let status = http::StatusCode::from_u16(code).unwrap();
            assert!(!may_carry_length(status), "{code}");
        }
        // A 304 and a HEAD's answer may say the length of the body they leave out.
        for code in [200, 205, 206, 304, 404, 502] {
            let status = http::StatusCode::from_u16(code).unwrap();
            assert!(may_carry_length(status), "{code}");
        }
    }

    #[test]
    fn recorded_headers_are_judged_by_the_same_list() {
        for h in [
            "Connection",
            "keep-alive",
            "Proxy-Authenticate",
            "x-tapedeck-token",
        ] {
            assert!(is_hop_by_hop(h), "{h}");
        }
        // `Trailer` names the fields after the body end to end (RFC 9110 6.6.2): an
        // HTTP/1.1 server (hyper) sends only the trailers it names.
        for h in ["content-type", "content-length", "set-cookie", "trailer"] {
            assert!(!is_hop_by_hop(h), "{h}");
        }
    }
}
