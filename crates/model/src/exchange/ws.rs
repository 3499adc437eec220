//! WebSocket messages as an event holds them, and how two messages match.
//!
//! A WebSocket exchange is one event: the `GET` with `Upgrade: websocket` is its
//! request, the `101` its response, and every message either side sent afterwards is
//! one [`WsMessage`] in [`Event::ws`](super::Event::ws), in the order they crossed the
//! proxy, each with its offset from the upgrade. A payload is a body like any other:
//! content-addressed in the store, inline in a tape (JSON as JSON, text as text, binary
//! as base64), redacted by the same layer as HTTP bodies. Control frames are kept too
//! (close with its code; ping and pong), since a close code is part of what replay
//! reproduces.
//!
//! Matching a message is matching a body: the stored (redacted) payload, JSON with sorted
//! keys and the ignored paths removed, and by default without a top-level `event_id`
//! (a per-message id the client makes up, as JSON-RPC's `id` is for requests).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::{drop_message_ids, sort_keys};
use super::redact::{self, Secrets};
use super::BodyRef;
use crate::rules::Rules;

/// Which peer sent a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum WsSide {
    /// The agent (the side that sent the upgrade request).
    Client,
    Server,
}

impl WsSide {
    pub fn as_str(self) -> &'static str {
        match self {
            WsSide::Client => "client",
            WsSide::Server => "server",
        }
    }
}

/// What kind of message (RFC 6455 opcode), fragments already joined.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum WsOp {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl WsOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WsOp::Text => "text",
            WsOp::Binary => "binary",
            WsOp::Close => "close",
            WsOp::Ping => "ping",
            WsOp::Pong => "pong",
        }
    }

    /// The frame opcode.
    pub fn code(self) -> u8 {
        match self {
            WsOp::Text => 0x1,
            WsOp::Binary => 0x2,
            WsOp::Close => 0x8,
            WsOp::Ping => 0x9,
            WsOp::Pong => 0xA,
        }
    }

    pub fn from_code(code: u8) -> Option<WsOp> {
        match code {
            0x1 => Some(WsOp::Text),
            0x2 => Some(WsOp::Binary),
            0x8 => Some(WsOp::Close),
            0x9 => Some(WsOp::Ping),
            0xA => Some(WsOp::Pong),
            _ => None,
        }
    }

    pub fn is_data(self) -> bool {
        matches!(self, WsOp::Text | WsOp::Binary)
    }
}

/// One message of a WebSocket exchange. `B` is how its payload is held (see
/// [`super::Event`]). For a close, the payload is the reason and `code` the close code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WsMessage<B = BodyRef> {
    pub from: WsSide,
    pub op: WsOp,
    /// Milliseconds from the upgrade (the `101` reaching the proxy) to the message's last byte.
    pub at_ms: f64,
    pub body: B,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// The messages of a WebSocket exchange, in the order they crossed the proxy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WsRecord<B = BodyRef> {
    pub messages: Vec<WsMessage<B>>,
}

impl<B> WsRecord<B> {
    pub fn map_bodies<C, E>(self, mut f: impl FnMut(B) -> Result<C, E>) -> Result<WsRecord<C>, E> {
        let mut messages = Vec::with_capacity(self.messages.len());
        for m in self.messages {
            messages.push(WsMessage {
                from: m.from,
                op: m.op,
                at_ms: m.at_ms,
                body: f(m.body)?,
                code: m.code,
            });
        }
        Ok(WsRecord { messages })
    }
}

/// The stored form of a payload: text is read as a body kept whole (a message is in
/// memory anyway: JSON fields redacted, every secret value seen in the upgrade
/// scrubbed), binary only scrubbed. Record and replay both call this, so a client
/// message is matched in the form it was stored in.
pub fn stored_payload(op: WsOp, payload: &[u8], rules: &Rules, secrets: &mut Secrets) -> Vec<u8> {
    match op {
        WsOp::Text => redact::stored_body(payload, None, usize::MAX, rules, secrets).0,
        _ => secrets.scrub(payload).unwrap_or_else(|| payload.to_vec()),
    }
}

/// What two messages must share to match: opcode, and the payload as JSON (sorted keys,
/// ignored paths and message ids removed) or as bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKey {
    Json(WsOp, Value),
    Bytes(WsOp, blake3::Hash),
}

/// The key of a stored payload under `rules`.
pub fn message_key(op: WsOp, stored: &[u8], rules: &Rules) -> MessageKey {
    if op == WsOp::Text {
        if let Ok(mut v) = serde_json::from_slice::<Value>(stored) {
            if v.is_object() || v.is_array() {
                for p in &rules.ignore_json_paths {
                    p.remove(&mut v);
                }
                if !rules.match_message_ids {
                    drop_message_ids(&mut v, &["event_id"]);
                }
                return MessageKey::Json(op, sort_keys(&v));
            }
        }
    }
    MessageKey::Bytes(op, blake3::hash(stored))
}

/// A close frame's payload: the code (when there is one) and the reason.
pub fn split_close(payload: &[u8]) -> (Option<u16>, &[u8]) {
    match payload {
        [a, b, rest @ ..] => (Some(u16::from_be_bytes([*a, *b])), rest),
        _ => (None, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_ignore_key_order_and_event_ids_unless_told() {
        let rules = Rules::default();
        let a = message_key(
            WsOp::Text,
            br#"{"type":"response.create","event_id":"evt_1","response":{"a":1,"b":2}}"#,
            &rules,
        );
        let b = message_key(
            WsOp::Text,
            br#"{"response":{"b":2,"a":1},"type":"response.create","event_id":"evt_2"}"#,
            &rules,
        );
        assert_eq!(a, b);
        let c = message_key(WsOp::Text, br#"{"type":"response.cancel"}"#, &rules);
        assert_ne!(a, c);
        assert_ne!(
            message_key(WsOp::Text, b"hi", &rules),
            message_key(WsOp::Binary, b"hi", &rules)
        );
        let strict = Rules {
            match_message_ids: true,
            ..Rules::default()
        };
        assert_ne!(
            message_key(WsOp::Text, br#"{"event_id":"1"}"#, &strict),
            message_key(WsOp::Text, br#"{"event_id":"2"}"#, &strict)
        );
    }

    #[test]
    fn payloads_are_redacted_like_bodies() {
        let rules = Rules::default();
        let mut secrets = Secrets::default();
        secrets.add("Bearer sk-live-0123456789abcdef");
        let text = stored_payload(
            WsOp::Text,
            br#"{"type":"x","api_key":"k-123456789","echo":"sk-live-0123456789abcdef"}"#,
            &rules,
            &mut secrets,
        );
        let text = String::from_utf8(text).unwrap();
        assert!(
            !text.contains("k-123456789") && !text.contains("sk-live"),
            "{text}"
        );
        let bin = stored_payload(
            WsOp::Binary,
            b"\x00sk-live-0123456789abcdef\x01",
            &rules,
            &mut secrets,
        );
        assert!(!bin.windows(7).any(|w| w == b"sk-live"));
    }

    #[test]
    fn close_payloads_split_into_code_and_reason() {
        assert_eq!(split_close(b"\x03\xe8bye"), (Some(1000), &b"bye"[..]));
        assert_eq!(split_close(b""), (None, &b""[..]));
    }
}
