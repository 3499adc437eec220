//! Tapes: the portable, git-friendly form of one session.
//!
//! JSON lines: a header line, then one event per line, in step order. Bodies are inline:
//! JSON bodies as JSON (so a diff reads well), text as text, binary as base64, each with
//! its blake3, which is checked on reading. A tape that is corrupt, truncated or from a
//! newer format is refused whole, naming the file and line: nothing is served from a
//! half-read tape.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::exchange::{BodyRef, Event};

pub const TAPE_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum TapeError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TapeHeader {
    /// Format version of the tape.
    pub tapedeck_tape: u32,
    pub session: String,
    pub events: u64,
}

/// A tape read into memory: events and their bodies by blake3.
pub struct Tape {
    pub header: TapeHeader,
    pub events: Vec<Event>,
    pub bodies: HashMap<String, Bytes>,
}

/// The inline form of a body.
fn inline(body: &BodyRef, data: &[u8]) -> Value {
    let mut v = json!({"b3": body.b3, "len": body.len});
    if let Some(e) = &body.encoding {
        v["encoding"] = json!(e);
    }
    let trimmed_start = data.iter().position(|b| !b.is_ascii_whitespace());
    if matches!(trimmed_start.map(|i| data[i]), Some(b'{') | Some(b'[')) {
        if let Ok(parsed) = serde_json::from_slice::<Value>(data) {
            for style in ["compact", "pretty", "compact\n", "pretty\n"] {
                if render_json(&parsed, style) == data {
                    v["json"] = parsed;
                    if style != "compact" {
                        v["style"] = json!(style);
                    }
                    return v;
                }
            }
        }
    }
    match std::str::from_utf8(data) {
        Ok(text) => v["text"] = json!(text),
        Err(_) => v["base64"] = json!(base64::engine::general_purpose::STANDARD.encode(data)),
    }
    v
}

fn render_json(v: &Value, style: &str) -> Vec<u8> {
    let mut out = if style.starts_with("pretty") {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .unwrap_or_default();
    if style.ends_with('\n') {
        out.push(b'\n');
    }
    out
}

/// Turns an inline body back into bytes and a [`BodyRef`], checking its blake3.
fn materialize(v: &Value) -> Result<(BodyRef, Vec<u8>), String> {
    let b3 = v
        .get("b3")
        .and_then(Value::as_str)
        .ok_or("a body has no \"b3\"")?
        .to_string();
    let len = v
        .get("len")
        .and_then(Value::as_u64)
        .ok_or("a body has no \"len\"")?;
    let data = if let Some(j) = v.get("json") {
        let style = v.get("style").and_then(Value::as_str).unwrap_or("compact");
        render_json(j, style)
    } else if let Some(t) = v.get("text").and_then(Value::as_str) {
        t.as_bytes().to_vec()
    } else if let Some(b) = v.get("base64").and_then(Value::as_str) {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("bad base64 body: {e}"))?
    } else {
        return Err("a body has none of \"json\", \"text\", \"base64\"".into());
    };
    let actual = blake3::hash(&data).to_hex().to_string();
    if actual != b3 || data.len() as u64 != len {
        return Err(format!(
            "body {b3} does not match its content (blake3 {actual}, {} bytes; the tape was edited or damaged)",
            data.len()
        ));
    }
    let encoding = v
        .get("encoding")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((BodyRef { b3, len, encoding }, data))
}

/// Writes a session as a tape. `body` returns a body's bytes by blake3.
pub fn write<W: Write>(
    out: &mut W,
    session: &str,
    events: &[Event],
    mut body: impl FnMut(&BodyRef) -> Result<Vec<u8>, String>,
    mut progress: impl FnMut(usize),
) -> Result<(), String> {
    let header = TapeHeader {
        tapedeck_tape: TAPE_VERSION,
        session: session.to_string(),
        events: events.len() as u64,
    };
    let io = |e: std::io::Error| e.to_string();
    serde_json::to_writer(&mut *out, &header).map_err(|e| e.to_string())?;
    out.write_all(b"\n").map_err(io)?;
    for (i, ev) in events.iter().enumerate() {
        let mut v = serde_json::to_value(ev).map_err(|e| e.to_string())?;
        let req = body(&ev.request.body)?;
        v["request"]["body"] = inline(&ev.request.body, &req);
        if let Some(r) = &ev.response {
            let data = body(&r.body)?;
            v["response"]["body"] = inline(&r.body, &data);
        }
        serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(io)?;
        progress(i + 1);
    }
    out.flush().map_err(io)
}

/// Reads a whole tape, or refuses it.
pub fn read(path: &Path) -> Result<Tape, TapeError> {
    let file = std::fs::File::open(path).map_err(|e| TapeError::File {
        path: path.to_path_buf(),
        message: format!("cannot open: {e}"),
    })?;
    read_from(std::io::BufReader::with_capacity(1 << 20, file), path)
}

pub fn read_from<R: BufRead>(reader: R, path: &Path) -> Result<Tape, TapeError> {
    let line_err = |line: usize, message: String| TapeError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = reader.split(b'\n');
    let first = match lines.next() {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Err(line_err(1, format!("cannot read: {e}"))),
        None => {
            return Err(TapeError::File {
                path: path.to_path_buf(),
                message: "empty file: not a tapedeck tape".into(),
            })
        }
    };
    let head: Value = serde_json::from_slice(&first)
        .map_err(|e| line_err(1, format!("not a tapedeck tape header: {e}")))?;
    let version = head
        .get("tapedeck_tape")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            line_err(
                1,
                "not a tapedeck tape header (no \"tapedeck_tape\" version)".into(),
            )
        })?;
    if version > TAPE_VERSION as u64 {
        return Err(line_err(
            1,
            format!(
                "tape format {version} was written by a newer tapedeck; this one reads format {TAPE_VERSION} (upgrade tapedeck)"
            ),
        ));
    }
    let header: TapeHeader =
        serde_json::from_value(head).map_err(|e| line_err(1, format!("bad header: {e}")))?;
    crate::session::SessionName::new(&header.session).map_err(|e| line_err(1, e.to_string()))?;
    let mut events = Vec::with_capacity(header.events.min(1 << 20) as usize);
    let mut bodies: HashMap<String, Bytes> = HashMap::new();
    let mut last_step = 0u64;
    let mut n = 1usize;
    for line in lines {
        n += 1;
        let line = line.map_err(|e| line_err(n, format!("cannot read: {e}")))?;
        if line.is_empty() {
            continue;
        }
        let mut v: Value = serde_json::from_slice(&line)
            .map_err(|e| line_err(n, format!("not valid JSON: {e}")))?;
        let mut take_body = |slot: &mut Value| -> Result<(), String> {
            let (r, data) = materialize(slot)?;
            bodies
                .entry(r.b3.clone())
                .or_insert_with(|| Bytes::from(data));
            *slot = serde_json::to_value(&r).map_err(|e| e.to_string())?;
            Ok(())
        };
        match v.get_mut("request").and_then(|r| r.get_mut("body")) {
            Some(slot) => take_body(slot).map_err(|m| line_err(n, m))?,
            None => return Err(line_err(n, "event has no request body".into())),
        }
        if let Some(slot) = v.get_mut("response").and_then(|r| r.get_mut("body")) {
            take_body(slot).map_err(|m| line_err(n, m))?;
        }
        let ev: Event = serde_json::from_value(v)
            .map_err(|e| line_err(n, format!("not a tapedeck event: {e}")))?;
        if ev.step <= last_step {
            return Err(line_err(
                n,
                format!(
                    "step {} after step {last_step}: events must be in step order",
                    ev.step
                ),
            ));
        }
        last_step = ev.step;
        events.push(ev);
    }
    if events.len() as u64 != header.events {
        return Err(TapeError::File {
            path: path.to_path_buf(),
            message: format!(
                "truncated or padded: the header says {} events, the file holds {} (line {n} is the last)",
                header.events,
                events.len()
            ),
        });
    }
    Ok(Tape {
        header,
        events,
        bodies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_inline_as_json_only_when_bytes_round_trip() {
        let compact = br#"{"b":1,"a":[1,2]}"#;
        let r = BodyRef {
            b3: blake3::hash(compact).to_hex().to_string(),
            len: compact.len() as u64,
            encoding: None,
        };
        let v = inline(&r, compact);
        assert!(v.get("json").is_some());
        assert_eq!(materialize(&v).unwrap().1, compact);

        let odd = b"{\"a\":  1}";
        let r2 = BodyRef {
            b3: blake3::hash(odd).to_hex().to_string(),
            len: odd.len() as u64,
            encoding: None,
        };
        let v = inline(&r2, odd);
        assert!(v.get("text").is_some(), "odd spacing must stay text: {v}");
        assert_eq!(materialize(&v).unwrap().1, odd);

        let bin = [0u8, 159, 146, 150];
        let r3 = BodyRef {
            b3: blake3::hash(&bin).to_hex().to_string(),
            len: 4,
            encoding: None,
        };
        let v = inline(&r3, &bin);
        assert!(v.get("base64").is_some());
        assert_eq!(materialize(&v).unwrap().1, bin);
    }

    #[test]
    fn an_edited_body_is_refused() {
        let data = b"hello";
        let r = BodyRef {
            b3: blake3::hash(data).to_hex().to_string(),
            len: 5,
            encoding: None,
        };
        let mut v = inline(&r, data);
        v["text"] = json!("hellO");
        assert!(materialize(&v).unwrap_err().contains("does not match"));
    }
}
