//! What the fuzz targets share: how one fuzz input is cut into the fields of a target.
//!
//! A target that needs several inputs (a URL, headers, a body, ...) reads them from one
//! byte string split on `0xFF`, a byte that never occurs in UTF-8 text. Seeds stay
//! readable (real JSON bodies and SSE streams joined by `\xff`), and libFuzzer's
//! mutations can still reach every field.

/// The byte that separates the fields of one input.
pub const SEP: u8 = 0xFF;

/// The first `n` fields of `data`; missing fields are empty, the last takes the rest
/// (separators included), so every input maps to some value of every field.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.iter().position(|b| *b == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => {
                out.push(rest);
                rest = &[];
            }
        }
    }
    out.push(rest);
    out
}

/// A field as text (lossy: invalid UTF-8 becomes U+FFFD).
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

/// `name: value` lines as header pairs (lines without a colon are skipped).
pub fn header_lines(field: &[u8]) -> Vec<(String, String)> {
    text(field)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The header pairs that `http` accepts, as a map (as hyper would hand them over).
pub fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.append(n, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pad_and_keep_the_rest() {
        assert_eq!(fields(b"a\xffb", 3), vec![&b"a"[..], b"b", b""]);
        assert_eq!(
            fields(b"a\xffb\xffc\xffd", 2),
            vec![&b"a"[..], b"b\xffc\xffd"]
        );
        assert_eq!(fields(b"", 1), vec![&b""[..]]);
    }
}
