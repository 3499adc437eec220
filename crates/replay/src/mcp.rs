//! Replay, JSON-RPC and MCP: a replayed answer carries what the live client expects.
//!
//! JSON-RPC ids are left out of the key (see `canonical::drop_message_ids`), so a request
//! numbered differently from the recording still matches; its answer then carries the
//! client's own ids (a batch's too, paired by position), in a JSON body or in the
//! `data:` lines of an event stream. An MCP answer's `Mcp-Session-Id` is the one the
//! client sent, and an MCP listening stream (a `GET` answered by an event stream) stays
//! open until that session's `DELETE` has been served, as it did when recorded, instead
//! of ending at once and being reopened by the client.

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use tapedeck_model::exchange::Chunk;

pub const SESSION_HEADER: &str = "mcp-session-id";

/// What a replayed answer changes for the live request.
#[derive(Debug, Default)]
pub(super) struct Answer {
    /// (recorded id, live id) of each request message whose id differs.
    ids: Vec<(Value, Value)>,
    /// The MCP session id the client sent.
    pub session: Option<String>,
}

impl Answer {
    /// Pairs the recorded request's JSON-RPC ids with the live one's.
    pub fn new(recorded: &[u8], live: &[u8], headers: &http::HeaderMap) -> Answer {
        let session = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut ids = Vec::new();
        if memchr::memmem::find(live, b"\"jsonrpc\"").is_some() {
            if let (Ok(r), Ok(l)) = (
                serde_json::from_slice::<Value>(recorded),
                serde_json::from_slice::<Value>(live),
            ) {
                let list = |v: &Value| -> Vec<Option<Value>> {
                    match v {
                        Value::Array(items) => items.iter().map(|m| m.get("id").cloned()).collect(),
                        m => vec![m.get("id").cloned()],
                    }
                };
                for (a, b) in list(&r).into_iter().zip(list(&l)) {
                    if let (Some(a), Some(b)) = (a, b) {
                        if a != b {
                            ids.push((a, b));
                        }
                    }
                }
            }
        }
        Answer { ids, session }
    }

    /// The recorded body with the client's ids, and its chunks moved to match.
    pub fn body(&self, data: Bytes, chunks: Option<Vec<Chunk>>) -> (Bytes, Option<Vec<Chunk>>) {
        if self.ids.is_empty() {
            return (data, chunks);
        }
        let first = data.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{') | Some(b'[')) {
            if let Ok(mut v) = serde_json::from_slice::<Value>(&data) {
                if self.rewrite(&mut v) {
                    let mut out = serde_json::to_vec(&v).unwrap_or_default();
                    if data.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                    let chunks = chunks.map(|c| fit(c, out.len() as u64));
                    return (Bytes::from(out), chunks);
                }
            }
            return (data, chunks);
        }
        self.event_stream(data, chunks)
    }

    /// Rewrites the ids of responses (messages with a result or an error, no method).
    fn rewrite(&self, v: &mut Value) -> bool {
        match v {
            Value::Array(items) => {
                // Every answer of a batch, not only up to the first rewritten one.
                let mut changed = false;
                for m in items {
                    changed |= self.rewrite(m);
                }
                changed
            }
            Value::Object(m) => {
                let is_response = m.contains_key("jsonrpc")
                    && !m.contains_key("method")
                    && (m.contains_key("result") || m.contains_key("error"));
                let Some(id) = m.get_mut("id").filter(|_| is_response) else {
                    return false;
                };
                match self.ids.iter().find(|(r, _)| r == id) {
                    Some((_, live)) => {
                        *id = live.clone();
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    /// An event stream: each `data:` line holding a JSON-RPC message is rewritten; chunk
    /// boundaries move with the bytes before them.
    fn event_stream(&self, data: Bytes, chunks: Option<Vec<Chunk>>) -> (Bytes, Option<Vec<Chunk>>) {
        let mut out = Vec::with_capacity(data.len() + 16);
        // (end of a line in the recorded body, its end in the new one)
        let mut ends: Vec<(usize, usize)> = Vec::new();
        let mut changed = false;
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i + 1);
            let line = &data[start..end];
            let rewritten = line.strip_prefix(b"data:").and_then(|rest| {
                let body = rest.strip_prefix(b" ").unwrap_or(rest);
                let trimmed = body.trim_ascii_end();
                let mut v: Value = serde_json::from_slice(trimmed).ok()?;
                if !self.rewrite(&mut v) {
                    return None;
                }
                let mut l = line[..line.len() - body.len()].to_vec();
                l.extend_from_slice(&serde_json::to_vec(&v).ok()?);
                l.extend_from_slice(&body[trimmed.len()..]);
                Some(l)
            });
            match rewritten {
                Some(l) => {
                    changed = true;
                    out.extend_from_slice(&l);
                }
                None => out.extend_from_slice(line),
            }
            ends.push((end, out.len()));
            start = end;
        }
        if !changed {
            return (data, chunks);
        }
        let moved = chunks.map(|list| {
            let mut new_list = Vec::with_capacity(list.len());
            let (mut old_end, mut new_prev) = (0u64, 0u64);
            for c in list {
                old_end += c.len;
                let new_end = map_offset(old_end as usize, &ends, out.len()) as u64;
                new_list.push(Chunk {
                    at_ms: c.at_ms,
                    len: new_end.saturating_sub(new_prev),
                });
                new_prev = new_end.max(new_prev);
            }
            fit(new_list, out.len() as u64)
        });
        (Bytes::from(out), moved)
    }
}

/// Where a recorded offset falls in the rewritten body: after the last whole line before
/// it, plus how far into the next line it was (at most that line's new length).
fn map_offset(old: usize, ends: &[(usize, usize)], total: usize) -> usize {
    let i = ends.partition_point(|(e, _)| *e <= old);
    let (old_base, new_base) = if i == 0 { (0, 0) } else { ends[i - 1] };
    let next_end = ends.get(i).map_or(total, |(_, n)| *n);
    (new_base + (old - old_base)).min(next_end)
}

/// Chunk lengths that add up to `len`: the last chunk takes the difference.
fn fit(mut chunks: Vec<Chunk>, len: u64) -> Vec<Chunk> {
    let sum: u64 = chunks.iter().map(|c| c.len).sum();
    if let Some(last) = chunks.last_mut() {
        last.len = (last.len + len).saturating_sub(sum);
    }
    chunks
}

/// The MCP sessions whose `DELETE` replay has served, so their listening streams end.
#[derive(Default)]
pub(super) struct Sessions {
    ended: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Sessions {
    pub fn end(&self, session: &str) {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.to_string());
        self.changed.notify_waiters();
    }

    /// Resolves once `session` has ended.
    pub async fn ended(&self, session: &str) {
        loop {
            let notified = self.changed.notified();
            if self
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(session)
            {
                return;
            }
            notified.await;
        }
    }
}

/// Whether a request opens an MCP listening stream: a `GET` in an MCP session.
pub(super) fn is_listening_stream(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::GET && headers.contains_key(SESSION_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(recorded: &str, live: &str) -> Answer {
        Answer::new(
            recorded.as_bytes(),
            live.as_bytes(),
            &http::HeaderMap::new(),
        )
    }

    #[test]
    fn json_answers_and_batches_carry_the_live_ids() {
        let a = answer(
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#,
            r#"[{"jsonrpc":"2.0","id":"x-7","method":"a"},{"jsonrpc":"2.0","id":8,"method":"b"}]"#,
        );
        let (body, _) = a.body(
            Bytes::from_static(br#"[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":1,"error":{"code":-1}}]"#),
            None,
        );
        assert_eq!(
            &body[..],
            br#"[{"jsonrpc":"2.0","id":8,"result":{}},{"jsonrpc":"2.0","id":"x-7","error":{"code":-1}}]"#
        );
        // The same ids: the recorded bytes go out untouched.
        let same = answer(r#"{"jsonrpc":"2.0","id":1}"#, r#"{"jsonrpc":"2.0","id":1}"#);
        let raw = Bytes::from_static(br#"{"jsonrpc":"2.0", "id":1, "result":{}}"#);
        assert_eq!(same.body(raw.clone(), None).0, raw);
    }

    #[test]
    fn event_streams_carry_the_live_id_and_keep_their_chunks() {
        let a = answer(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1003,"method":"tools/call"}"#,
        );
        let stream = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"id\":3}\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}\r\n\r\n";
        let first = stream
            .find("event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\"")
            .unwrap() as u64;
        let chunks = vec![
            Chunk {
                at_ms: 1.0,
                len: first,
            },
            Chunk {
                at_ms: 2.0,
                len: stream.len() as u64 - first,
            },
        ];
        let (body, chunks) = a.body(Bytes::from(stream), Some(chunks));
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"id\":1003,\"result\""), "{text}");
        assert!(
            text.contains("\"method\":\"notifications/progress\",\"id\":3"),
            "a server request keeps its id: {text}"
        );
        let chunks = chunks.unwrap();
        assert_eq!(chunks[0].len, first);
        assert_eq!(chunks.iter().map(|c| c.len).sum::<u64>(), text.len() as u64);
        assert!(text[first as usize..].starts_with("event: message"));
    }
}
