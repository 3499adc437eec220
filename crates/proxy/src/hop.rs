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
    "trailer",
];

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
}
