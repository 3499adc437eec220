//! The canonical form of a JSON body (keys sorted at every depth, ignored paths left
//! out, compact), written in one pass without building a DOM.
//!
//! A `serde_json::Value` of a 14 MB JSON array takes ten times that in memory, and the
//! key of every request body up to the keep-whole limit (16 MiB) is computed from its
//! canonical form. Here each scalar is re-serialized as it is read, arrays go straight
//! to the output, and an object holds only its members' canonical text until it can
//! sort them: memory stays near the size of the body. The text is byte for byte what
//! serializing the sorted `Value` gave, so keys of older recordings still match.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::rules::{JsonPath, PathStep};

/// A body's canonical JSON, and whether its top level names a model (for its kind).
pub struct CanonicalJson {
    pub text: Box<RawValue>,
    pub names_model: bool,
}

/// Canonicalizes `body`; `None` when it is not one JSON value (trailing bytes included).
pub fn canonicalize(body: &[u8], ignore: &[JsonPath]) -> Option<CanonicalJson> {
    canonicalize_with(body, ignore, false)
}

/// [`canonicalize`], leaving out, with `drop_rpc_ids`, the `id` of a JSON-RPC message
/// (an object with `jsonrpc` at the top level, or each such object of a top-level batch
/// array): a faithful rerun numbers its requests anew, and replay answers with the
/// client's own ids.
pub fn canonicalize_with(
    body: &[u8],
    ignore: &[JsonPath],
    drop_rpc_ids: bool,
) -> Option<CanonicalJson> {
    let mut ctx = Ctx {
        ignore,
        path: Vec::new(),
        names_model: false,
        drop_rpc_ids,
        top_is_array: false,
    };
    let mut out = Vec::with_capacity(body.len().min(1 << 20));
    let mut de = serde_json::Deserializer::from_slice(body);
    Canon {
        out: &mut out,
        ctx: &mut ctx,
        depth: 0,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let text = String::from_utf8(out).ok()?;
    Some(CanonicalJson {
        text: RawValue::from_string(text).ok()?,
        names_model: ctx.names_model,
    })
}

/// One step of the path to the value being read.
enum Seg {
    Key(String),
    Index(usize),
}

struct Ctx<'i> {
    ignore: &'i [JsonPath],
    path: Vec<Seg>,
    names_model: bool,
    drop_rpc_ids: bool,
    top_is_array: bool,
}

impl Ctx<'_> {
    /// Whether an ignore path names exactly the value at the current path. Paths are
    /// matched against the body as received (a removal does not shift later indices).
    fn ignored(&self) -> bool {
        self.ignore.iter().any(|p| {
            p.steps.len() == self.path.len()
                && p.steps
                    .iter()
                    .zip(&self.path)
                    .all(|(step, seg)| match (step, seg) {
                        (PathStep::Any, _) => true,
                        (PathStep::Key(k), Seg::Key(s)) => k == s,
                        (PathStep::Index(i), Seg::Index(j)) => i == j,
                        // A numeric step names an object key too (`/items/0` on `{"0": ..}`).
                        (PathStep::Index(i), Seg::Key(s)) => s.parse::<usize>().ok() == Some(*i),
                        (PathStep::Key(_), Seg::Index(_)) => false,
                    })
        })
    }
}

struct Canon<'a, 'i> {
    out: &'a mut Vec<u8>,
    ctx: &'a mut Ctx<'i>,
    depth: usize,
}

impl Canon<'_, '_> {
    fn write<T: serde::Serialize + ?Sized>(self, v: &T) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, v);
    }
}

impl<'de> DeserializeSeed<'de> for Canon<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As `Value` does: a float JSON cannot hold becomes null.
        match serde_json::Number::from_f64(v) {
            Some(n) => self.write(&n),
            None => self.out.extend_from_slice(b"null"),
        }
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.write(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Canon { out, ctx, depth } = self;
        if depth == 0 {
            ctx.top_is_array = true;
        }
        out.push(b'[');
        let mut first = true;
        for i in 0.. {
            let track = !ctx.ignore.is_empty();
            if track {
                ctx.path.push(Seg::Index(i));
            }
            let more = if track && ctx.ignored() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                let mark = out.len();
                if !first {
                    out.push(b',');
                }
                let element = Canon {
                    out: &mut *out,
                    ctx: &mut *ctx,
                    depth: depth + 1,
                };
                let more = seq.next_element_seed(element)?.is_some();
                if more {
                    first = false;
                } else {
                    out.truncate(mark);
                }
                more
            };
            if track {
                ctx.path.pop();
            }
            if !more {
                break;
            }
        }
        out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Canon { out, ctx, depth } = self;
        // Sorted, and a repeated key keeps its last value, as `Value` does.
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let track = !ctx.ignore.is_empty();
            let model = depth == 0 && key == "model";
            if track {
                ctx.path.push(Seg::Key(key.clone()));
            }
            let ignored = track && ctx.ignored();
            if ignored && !model {
                map.next_value::<IgnoredAny>()?;
            } else {
                let mut text = Vec::new();
                map.next_value_seed(Canon {
                    out: &mut text,
                    ctx: &mut *ctx,
                    depth: depth + 1,
                })?;
                if model {
                    ctx.names_model = text.first() == Some(&b'"');
                }
                if !ignored {
                    members.insert(key, text);
                }
            }
            if track {
                ctx.path.pop();
            }
        }
        let message = depth == 0 || (depth == 1 && ctx.top_is_array);
        if ctx.drop_rpc_ids && message && members.contains_key("jsonrpc") {
            members.remove("id");
        }
        out.push(b'{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *out, k);
            out.push(b':');
            out.extend_from_slice(v);
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the key was computed from before: the sorted `Value` with paths removed.
    fn by_value(body: &str, ignore: &[JsonPath]) -> String {
        let mut v: Value = serde_json::from_str(body).unwrap();
        for p in ignore {
            p.remove(&mut v);
        }
        serde_json::to_string(&crate::exchange::canonical::sort_keys(&v)).unwrap()
    }

    #[test]
    fn same_text_as_the_sorted_value() {
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi é \u00e9 \/ \n"}],"t":1}"#,
            r#"{ "b" : 1.0, "a" : [1e2, -0, 0.1000, 12345678901234567890, -5, 1.5e-7, true, null, false] }"#,
            r#"[{"z":{"y":{"x":[[],{}]}}}, "s", 3]"#,
            r#"{"dup":1,"dup":{"b":2,"a":1},"k\"ey":"v"}"#,
            r#""just a string""#,
            "  42  ",
            r#"{"metadata":{"request_id":"1","keep":2},"items":[{"ts":1,"v":1},{"ts":2,"v":2}],"0":{"ts":3}}"#,
        ];
        let paths: Vec<JsonPath> = ["$.metadata.request_id", "/items/*/ts", "/0/ts", "$.t"]
            .iter()
            .map(|p| JsonPath::parse(p).unwrap())
            .collect();
        for body in bodies {
            for ignore in [&[][..], &paths[..]] {
                let got = canonicalize(body.as_bytes(), ignore).unwrap();
                assert_eq!(got.text.get(), by_value(body, ignore), "{body}");
            }
        }
    }

    #[test]
    fn ignoring_whole_containers_and_indices_matches_value_removal() {
        let body = r#"{"a":[1,2,3],"b":{"c":1,"d":2},"model":"gpt"}"#;
        for p in ["/a/*", "/b/*", "/a/1", "$.model", "/b"] {
            let ignore = [JsonPath::parse(p).unwrap()];
            let got = canonicalize(body.as_bytes(), &ignore).unwrap();
            assert_eq!(got.text.get(), by_value(body, &ignore), "{p}");
            assert!(
                got.names_model,
                "the kind reads the body before ignore rules"
            );
        }
    }

    #[test]
    fn not_json_is_none_and_the_model_is_read_from_the_top_level() {
        assert!(canonicalize(b"{\"a\":1} trailing", &[]).is_none());
        let rpc = |b: &str| {
            canonicalize_with(b.as_bytes(), &[], true)
                .unwrap()
                .text
                .get()
                .to_string()
        };
        assert_eq!(
            rpc(r#"{"jsonrpc":"2.0","id":7,"method":"m"}"#),
            r#"{"jsonrpc":"2.0","method":"m"}"#
        );
        assert_eq!(
            rpc(r#"[{"jsonrpc":"2.0","id":1},{"jsonrpc":"2.0","id":2,"p":{"id":3}}]"#),
            r#"[{"jsonrpc":"2.0"},{"jsonrpc":"2.0","p":{"id":3}}]"#
        );
        assert_eq!(rpc(r#"{"id":7,"x":1}"#), r#"{"id":7,"x":1}"#);
        assert!(canonicalize(b"{\"a\":", &[]).is_none());
        assert!(canonicalize(b"", &[]).is_none());
        assert!(canonicalize(br#"{"model":"m"}"#, &[]).unwrap().names_model);
        assert!(!canonicalize(br#"{"model":1}"#, &[]).unwrap().names_model);
        assert!(
            !canonicalize(br#"{"x":{"model":"m"}}"#, &[])
                .unwrap()
                .names_model
        );
        assert!(
            !canonicalize(br#"[{"model":"m"}]"#, &[])
                .unwrap()
                .names_model
        );
    }

    #[test]
    fn a_large_array_costs_about_its_own_size() {
        let mut body = b"[".to_vec();
        for i in 0..200_000 {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(format!(r#"{{"id":{i},"name":"n{i}"}}"#).as_bytes());
        }
        body.push(b']');
        let got = canonicalize(&body, &[]).unwrap();
        assert_eq!(got.text.get().len(), body.len());
    }
}
