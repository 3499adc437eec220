//! What the store's unit tests share.

use tapedeck_model::exchange::{BodyRef, Event, Kind, RequestRecord, Timing};

/// A bodiless GET event at `step`.
pub(crate) fn event(step: u64) -> Event {
    Event {
        step,
        kind: Kind::Tool,
        key: "k".into(),
        rules: None,
        agent: None,
        request: RequestRecord {
            method: "GET".into(),
            url: format!("http://t.test/{step}"),
            version: "HTTP/1.1".into(),
            headers: vec![],
            body: BodyRef::empty(),
        },
        response: None,
        timing: Timing::default(),
        error: None,
        ws: None,
        injected: None,
    }
}
