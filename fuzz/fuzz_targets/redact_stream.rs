//! The redaction scrubber on a streamed body, differentially: the same body cut into
//! pieces at fuzzer-chosen points and fed piece by piece must give exactly the bytes
//! (and the collected secret values) that scrubbing it whole gives. Record streams a
//! body into the store while replay scrubs the same body whole to key it, so any
//! difference is a stored secret or a replay miss.
//!
//! Input fields (split on 0xFF): content type, extra field names (comma-separated,
//! added to the defaults), secret values (one per line, as header values), body, and
//! the cut points (each byte is the length of the next piece; what remains after the
//! last is one piece). When the cut points are odd in number, the body is scrubbed as
//! the answer to a Gemini stream request (a JSON answer read an array element at a time).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_fuzz::{fields, text};
use tapedeck_model::exchange::canonical::{multipart_body_parts, MultipartDigest};
use tapedeck_model::exchange::redact::{
    BodyScrubber, FieldNames, Secrets, MAX_SCRUB_LEN, MIN_SCRUB_LEN,
};
use tapedeck_model::rules::{RuleArgs, Rules, REDACTED};

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 5);
    let ct = text(f[0]);
    let ct = (!ct.is_empty()).then_some(ct.as_str());
    let names: Vec<String> = text(f[1])
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string)
        .collect();
    let rules = Rules::from_toml(
        "",
        &RuleArgs {
            redact_json_fields: names,
            ..Default::default()
        },
    )
    .expect("field names alone always make rules");
    let mut secrets = Secrets::default();
    for line in text(f[2]).lines() {
        secrets.add(line);
    }
    let body = f[3];
    let cuts = f[4];

    const STREAM: &str = "/v1beta/models/m:streamGenerateContent";
    let answer = cuts.len() % 2 == 1;
    let (whole, found_whole) = if answer {
        BodyScrubber::run_answer(body, ct, &rules, &secrets, STREAM)
    } else {
        BodyScrubber::run(body, ct, &rules, &secrets)
    };

    let mut s = if answer {
        let fields = FieldNames::of(&rules);
        BodyScrubber::for_answer(ct, fields, &secrets, STREAM)
    } else {
        BodyScrubber::new(ct, &rules, &secrets)
    };
    let mut streamed = Vec::new();
    let mut rest = body;
    for &c in cuts {
        let n = (c as usize).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        streamed.extend_from_slice(s.feed(piece));
        rest = tail;
    }
    streamed.extend_from_slice(s.feed(rest));
    let (tail, found_streamed) = s.finish();
    streamed.extend_from_slice(&tail);

    assert!(
        streamed == whole,
        "cut at {cuts:?}, the stored body differs from the whole body's\nwhole:    {:?}\nstreamed: {:?}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&streamed)
    );
    // No secret survives: a value known before the body (a header's API key) is not in
    // what is stored, whatever the body's type or shape. Checked for the first five
    // lines (each adds at most about fifty forms of itself, under the 256 a list keeps),
    // and for values that hold no bracket: the marker's own brackets could otherwise
    // join what surrounds it into a value (`x]abcdefg` after `[REDACTED`).
    for v in text(f[2]).lines().take(5).map(str::trim) {
        let checked = (MIN_SCRUB_LEN..=MAX_SCRUB_LEN).contains(&v.len())
            && !v.contains(['[', ']'])
            && !REDACTED.contains(v);
        assert!(
            !checked || !contains(&whole, v.as_bytes()),
            "the secret {v:?} is still in the stored body: {:?}",
            String::from_utf8_lossy(&whole)
        );
    }
    let mut a = found_whole.into_values();
    let mut b = found_streamed.into_values();
    a.sort();
    b.sort();
    assert_eq!(a, b, "cut at {cuts:?}, the collected secret values differ");

    // A multipart body past what is kept whole is keyed by its parts read as it streams
    // (record's segments, replay's reader): the parts the whole body has, at any cut.
    if let Some(mut d) = ct.and_then(|t| MultipartDigest::new(Some(t), &rules)) {
        let mut rest = body;
        for &c in cuts {
            let n = (c as usize).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            d.feed(piece);
            rest = tail;
        }
        d.feed(rest);
        let whole = ct.and_then(|t| multipart_body_parts(body, t, &rules));
        assert_eq!(d.finish(), whole, "cut at {cuts:?}, the parts differ");
    }
});

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
