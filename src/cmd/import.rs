//! `tapedeck import FILE`: load a tape into the store.
//!
//! The tape is read twice, event by event, never whole in memory. The first pass checks
//! every line and every body file beside the tape, and stores each large one a part at a
//! time, so a tape with a body larger than memory imports; it counts how many events name
//! each small body. Only once the whole tape has been read and checked does the second pass
//! write the events, as record writes them: each event with its small request and
//! response bodies inside its value (one write, and one read when replayed). A tape
//! names a body once, with its first event; a small body that later events name again
//! is kept in memory until its last one is written. A WebSocket message's body is stored
//! under its blake3, as record stores it. So a bad tape leaves the store's sessions as
//! they were (the bodies stored by the first pass, content-addressed, are harmless). A
//! tape that changes between the passes (each takes the blake3 of the lines it reads) is
//! refused, and what the second pass wrote of it removed.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use super::{msg, CmdError, CmdResult};
use tapedeck_model::credential::NameKind;
use tapedeck_model::exchange::{header, BodyRef, Event};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_store::recording::identify_request;
use tapedeck_store::tape::{TapeBody, TapeReader};
use tapedeck_store::tape_files::{BodyFileError, FileBody};
use tapedeck_store::{
    store_whole, BodyWriter, RunInfo, SledStore, Store, StoreError, WrittenBody, INLINE_MAX,
    WHOLE_BODY_LIMIT,
};

pub fn run(file: &Path, rename: Option<&str>, replace: bool, dir: &Path) -> CmdResult {
    // The rules keys are checked under (see [`rekey_if_edited`]), read before anything
    // is changed.
    let rules = Rules::from_working_dir()?;
    let reader = TapeReader::open(file)?;
    let header = reader.header().clone();
    let name = match rename {
        Some(n) => SessionName::new(n)?,
        None => SessionName::new(&header.session)?,
    };
    let store = SledStore::open(dir)?;
    let exists = |store: &SledStore| store.session(name.as_str());
    if let Some(existing) = exists(&store)?.filter(|_| !replace) {
        return Err(msg(format!(
            "session {name} already exists in {} ({} events); pass --replace to overwrite it or --session NAME to import under another name",
            dir.display(),
            existing.events
        )));
    }
    let checked = check_tape(&store, reader.digest_lines(), &rules)?;
    if exists(&store)?.is_some() {
        store.delete_session(name.as_str())?;
    }
    if let Err(e) = write_events(
        &store,
        file,
        name.as_str(),
        checked.named,
        checked.digest,
        &rules,
    ) {
        store.delete_session(name.as_str())?;
        store.commit()?;
        return Err(msg(format!("{e}; session {name} was not imported")));
    }
    if let Some(exit_code) = header.exit_code {
        store.put_run(name.as_str(), &RunInfo { exit_code })?;
    }
    store.commit()?;
    eprintln!(
        "imported {} events from {} as session {name}",
        checked.events,
        file.display()
    );
    Ok(0)
}

/// What the first pass learned of the tape.
struct Checked {
    /// How many events name each small body.
    named: Named,
    events: usize,
    /// The blake3 of its lines, to tell that the second pass reads the same tape.
    digest: blake3::Hash,
}

/// The first pass: every line and body file of the tape checked, its large bodies
/// stored, its small ones counted.
fn check_tape(
    store: &SledStore,
    mut reader: TapeReader<std::io::BufReader<std::fs::File>>,
    rules: &Rules,
) -> Result<Checked, CmdError> {
    let mut named = Named::default();
    let mut events = 0usize;
    while let Some((ev, bodies)) = reader.next_event()? {
        for body in bodies {
            match body {
                // Goes inside its event in the second pass: only checked here.
                TapeBody::File(r, file) if r.len <= INLINE_MAX as u64 => {
                    read_file_body(&r, &file)?;
                }
                TapeBody::File(r, file) => {
                    refuse_secrets(&ev, &r, &file, rules)?;
                    store_file_body(store, &r, &file)?
                }
                TapeBody::Inline(..) => {}
            }
        }
        named.count(&ev);
        events += 1;
    }
    Ok(Checked {
        named,
        events,
        digest: reader.digest(),
    })
}

/// A small request or response body of `ev` (those an event's value holds).
fn small_bodies(ev: &Event) -> impl Iterator<Item = &BodyRef> {
    std::iter::once(&ev.request.body)
        .chain(ev.response.as_ref().map(|r| &r.body))
        .filter(|b| b.len <= INLINE_MAX as u64)
}

/// How many events name each small body as their request or response body.
#[derive(Default)]
struct Named(HashMap<[u8; 32], u32>);

impl Named {
    /// Counts `ev` once for each small body it names (a request and its answer may be
    /// the same bytes).
    fn count(&mut self, ev: &Event) {
        let mut hashes: Vec<[u8; 32]> = small_bodies(ev)
            .filter_map(|b| blake3::Hash::from_hex(&b.b3).ok())
            .map(|h| *h.as_bytes())
            .collect();
        hashes.dedup();
        for h in hashes {
            let c = self.0.entry(h).or_default();
            *c = c.saturating_add(1);
        }
    }

    /// One naming of `h` written: whether a later event still names it.
    fn named_again(&mut self, h: &blake3::Hash) -> bool {
        match self.0.get_mut(h.as_bytes()) {
            Some(c) if *c > 1 => {
                *c -= 1;
                true
            }
            _ => {
                self.0.remove(h.as_bytes());
                false
            }
        }
    }
}

/// The second pass: every event of the tape, read and checked again, written with its
/// small request and response bodies inside its value. An error if the tape's lines are
/// not those the first pass read (`digest`): what it wrote is then to be removed.
fn write_events(
    store: &SledStore,
    file: &Path,
    session: &str,
    mut named: Named,
    digest: blake3::Hash,
    rules: &Rules,
) -> Result<(), CmdError> {
    // The first pass read and checked it all: what this one cannot read was changed.
    let changed = |e: &dyn std::fmt::Display| {
        msg(format!(
            "{} changed while it was imported: {e}",
            file.display()
        ))
    };
    let mut reader = TapeReader::open(file)
        .map_err(|e| changed(&e))?
        .digest_lines();
    // Small bodies a later event names again (the tape gives them only once).
    let mut kept: HashMap<[u8; 32], Bytes> = HashMap::new();
    let mut inside = Vec::new();
    // Steps that held a secret in clear (see [`redact_event`]).
    let mut in_clear = Vec::new();
    while let Some((ev, bodies)) = reader.next_event().map_err(|e| changed(&e))? {
        // The bodies this line brings, by blake3.
        let mut new: HashMap<String, Bytes> = HashMap::new();
        for body in bodies {
            match body {
                TapeBody::Inline(r, data) => {
                    new.insert(r.b3, data);
                }
                // A larger one was stored by the first pass.
                TapeBody::File(r, file) if r.len <= INLINE_MAX as u64 => {
                    let data = read_file_body(&r, &file).map_err(|e| changed(&e))?;
                    new.insert(r.b3, data);
                }
                TapeBody::File(..) => {}
            }
        }
        inside.clear();
        for b in small_bodies(&ev) {
            let h = blake3::Hash::from_hex(&b.b3)
                .map_err(|_| changed(&format_args!("step {}: a body named {:?}", ev.step, b.b3)))?;
            if inside.iter().any(|(k, _)| *k == h) {
                continue;
            }
            let data = match new.get(&b.b3) {
                Some(d) => d.clone(),
                None => kept.get(h.as_bytes()).cloned().ok_or_else(|| {
                    changed(&format_args!(
                        "step {}: body {} is not one an earlier line gave",
                        ev.step, b.b3
                    ))
                })?,
            };
            if named.named_again(&h) {
                kept.insert(*h.as_bytes(), data.clone());
            } else {
                kept.remove(h.as_bytes());
            }
            inside.push((h, data));
        }
        // What goes under its blake3: a WebSocket message's body, a larger one inline.
        // One that a later event names as its request or response body is kept for it.
        for (b3, data) in new {
            let Ok(h) = blake3::Hash::from_hex(&b3) else {
                continue;
            };
            if inside.iter().any(|(k, _)| *k == h) {
                continue;
            }
            store_whole(store, &data)?;
            if named.0.contains_key(h.as_bytes()) {
                kept.insert(*h.as_bytes(), data);
            }
        }
        let mut ev = ev;
        if redact_event(&mut ev, &mut inside, rules) {
            in_clear.push(ev.step);
        }
        rekey_if_edited(store, &mut ev, &inside, rules)?;
        store.put_event_with(session, &ev, &inside)?;
    }
    if reader.digest() != digest {
        return Err(changed(&"its lines are not those first read"));
    }
    if !in_clear.is_empty() {
        let steps = in_clear
            .iter()
            .take(10)
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let more = match in_clear.len() {
            n if n > 10 => format!(" and {} more", n - 10),
            _ => String::new(),
        };
        tracing::warn!(
            "{}: step{} {steps}{more} held secrets in clear (a header, URL part or JSON field the redaction rules name): stored redacted, but the tape file still holds them",
            file.display(),
            if in_clear.len() == 1 { "" } else { "s" },
        );
    }
    Ok(())
}

/// A tape is a file people edit, and a secret written into it by hand (an
/// `Authorization` header pasted in, a key in a URL or a JSON field) must not reach the
/// store: the event is redacted under the rules in force as record redacts an
/// exchange, small bodies included (`inside`, updated with their new bytes). Whether
/// anything was redacted. A large body (stored by the first pass) is taken as it is.
fn redact_event(ev: &mut Event, inside: &mut Vec<(blake3::Hash, Bytes)>, rules: &Rules) -> bool {
    use tapedeck_model::exchange::redact;
    let mut secrets = redact::Secrets::default();
    let url = redact::url(&ev.request.url, rules, &mut secrets);
    let mut changed = url != ev.request.url;
    ev.request.url = url;
    changed |= redact::stored_headers(
        &mut ev.request.headers,
        NameKind::Header,
        rules,
        &mut secrets,
    );
    // The key its own headers carry, also in its path, as record scrubs it.
    changed |= redact::scrub_url(&mut ev.request.url, rules, &mut secrets).is_some();
    if let Some(r) = ev.response.as_mut() {
        changed |=
            redact::stored_headers(&mut r.headers, NameKind::AnswerHeader, rules, &mut secrets);
        changed |=
            redact::stored_headers(&mut r.trailers, NameKind::AnswerHeader, rules, &mut secrets);
    }
    // The request's body first, as record reads it, then the answer's.
    let mut bodies = Vec::with_capacity(2);
    let request_ct = header(&ev.request.headers, "content-type").map(str::to_string);
    bodies.push((&mut ev.request.body, request_ct, None));
    if let Some(r) = ev.response.as_mut() {
        let ct = header(&r.headers, "content-type").map(str::to_string);
        bodies.push((&mut r.body, ct, Some(ev.request.url.as_str())));
    }
    let mut redacted: Vec<(blake3::Hash, Bytes)> = Vec::with_capacity(2);
    for pass in 0..2 {
        for (body, ct, answer_to) in bodies.iter_mut() {
            let Some((_, data)) = inside.iter().find(|(h, _)| h.to_hex().as_str() == body.b3)
            else {
                continue;
            };
            let out = match pass {
                0 => {
                    let ct = ct.as_deref();
                    let limit = tapedeck_store::keep_limit(ct);
                    match answer_to {
                        Some(url) => {
                            redact::stored_answer(data, ct, limit, rules, &mut secrets, url).0
                        }
                        None => redact::stored_body(data, ct, limit, rules, &mut secrets).0,
                    }
                }
                // Every secret of the exchange known: scrubbed from both bodies.
                _ => match secrets.scrub(data) {
                    Some(out) => out,
                    None => continue,
                },
            };
            if out == data.as_ref() {
                continue;
            }
            changed = true;
            let hash = blake3::hash(&out);
            body.b3 = hash.to_hex().to_string();
            body.len = out.len() as u64;
            redacted.push((hash, Bytes::from(out)));
        }
        inside.append(&mut redacted);
    }
    if changed {
        let keep: Vec<String> = bodies.iter().map(|(b, _, _)| b.b3.clone()).collect();
        inside.retain(|(h, _)| keep.iter().any(|b| *b == h.to_hex().as_str()));
        inside.dedup_by_key(|(h, _)| *h);
        redact::scrub_headers(&mut ev.request.headers, &secrets);
        redact::scrub_url(&mut ev.request.url, rules, &mut secrets);
        if let Some(r) = ev.response.as_mut() {
            redact::scrub_headers(&mut r.headers, &secrets);
            redact::scrub_headers(&mut r.trailers, &secrets);
        }
        if let Some(e) = ev.error.as_mut() {
            e.message = secrets.scrub_str(&e.message).into_owned();
        }
    }
    // The bytes after a broken coding (see `CodingBroke`) are stored as bytes are.
    if let Some(b) = ev.response.as_mut().and_then(|r| r.broke.as_mut()) {
        let tail = b.tail_bytes();
        if let Some(clean) = secrets.scrub(&tail) {
            *b = tapedeck_model::exchange::CodingBroke::new(b.ended, &clean);
            changed = true;
        }
    }
    changed
}

/// A tape is a file people edit: an event keyed under the rules in force whose key is
/// not its request's (a body, URL or header changed by hand) gets its request's key, so
/// replay matches what the tape says, not what it said before the edit. An event keyed
/// under other rules is keyed again when replayed anyway.
fn rekey_if_edited(
    store: &SledStore,
    ev: &mut Event,
    inside: &[(blake3::Hash, Bytes)],
    rules: &Rules,
) -> Result<(), CmdError> {
    if ev.rules.as_deref() != Some(rules.match_fingerprint().as_str()) {
        return Ok(());
    }
    let body = |b: &BodyRef| -> Result<Bytes, StoreError> {
        if b.len == 0 {
            return Ok(Bytes::new());
        }
        if let Some((_, data)) = inside.iter().find(|(h, _)| h.to_hex().as_str() == b.b3) {
            return Ok(data.clone());
        }
        store
            .body_bytes(&b.b3)?
            .ok_or_else(|| StoreError::MissingBody(b.b3.clone()))
    };
    // A large body (imported already, in segments or whole) a piece at a time.
    let pieces = |b: &BodyRef, f: &mut dyn FnMut(&[u8])| -> Result<(), StoreError> {
        let missing = |h: &str| StoreError::MissingBody(h.to_string());
        match store.body_segments(&b.b3)? {
            Some(segments) => segments.iter().try_for_each(|h| {
                f(&store.get_body(h)?.ok_or_else(|| missing(h))?);
                Ok(())
            }),
            None => {
                f(&store.body_bytes(&b.b3)?.ok_or_else(|| missing(&b.b3))?);
                Ok(())
            }
        }
    };
    let (kind, key) = identify_request(ev, rules, body, pieces)?;
    if key != ev.key {
        tracing::debug!("step {}: its request was edited; keyed again", ev.step);
        ev.key = key;
        ev.kind = kind;
    }
    Ok(())
}

/// A large body file beside the tape (stored as it is, a part at a time, by the first
/// pass) must already be redacted: one holding a field the rules name, or a secret its
/// event's headers or URL carry, is refused before a byte of it is stored, with the step
/// and file named (a body written into a tape by hand; [`redact_event`] redacts the
/// small ones).
fn refuse_secrets(ev: &Event, r: &BodyRef, file: &FileBody, rules: &Rules) -> Result<(), CmdError> {
    use tapedeck_model::exchange::redact::{self, BodyScrubber, Secrets};
    let mut secrets = Secrets::default();
    redact::url(&ev.request.url, rules, &mut secrets);
    redact::stored_headers(
        &mut ev.request.headers.clone(),
        NameKind::Header,
        rules,
        &mut secrets,
    );
    let mut ct = None;
    let mut answer = false;
    if let Some(resp) = &ev.response {
        redact::stored_headers(
            &mut resp.headers.clone(),
            NameKind::AnswerHeader,
            rules,
            &mut secrets,
        );
        if resp.body.b3 == r.b3 {
            ct = header(&resp.headers, "content-type");
            answer = true;
        }
    }
    if ev.request.body.b3 == r.b3 {
        ct = header(&ev.request.headers, "content-type");
        answer = false;
    }
    let fields = redact::FieldNames::of(rules);
    let mut scrubber = if answer {
        BodyScrubber::for_answer(ct, fields, &secrets, &ev.request.url)
    } else {
        BodyScrubber::with_fields(ct, fields, &secrets)
    };
    let mut hasher = blake3::Hasher::new();
    let mut out = Vec::new();
    for i in 0..file.parts() {
        out.clear();
        let part = file.part(i).map_err(StoreError::from)?;
        scrubber.feed_into(&part, &mut out);
        hasher.update(&out);
    }
    let (rest, found) = scrubber.finish();
    hasher.update(&rest);
    if hasher.finalize().to_hex().as_str() == r.b3 && found.into_values().is_empty() {
        return Ok(());
    }
    Err(msg(format!(
        "step {}: the body file {} holds secrets in clear (a field the redaction rules name, or a value its headers or URL carry); tapedeck stores nothing of it. Redact the file, or export the session again, and import again",
        ev.step,
        file.path.display()
    )))
}

/// A small body kept in a file beside the tape, whole, checked against its blake3 as
/// [`store_file_body`] checks a larger one.
fn read_file_body(r: &BodyRef, file: &FileBody) -> Result<Bytes, StoreError> {
    let mut data = Vec::new();
    for i in 0..file.parts() {
        data.extend_from_slice(&file.part(i)?);
    }
    let actual = blake3::hash(&data);
    if actual.to_hex().as_str() != r.b3 {
        return Err(BodyFileError::Mismatch {
            path: file.path.clone(),
            actual: actual.to_hex().to_string(),
        }
        .into());
    }
    Ok(data.into())
}

/// Stores a large body of the tape (a file beside it) as recording would have: whole when
/// small enough, else in parts, a part at a time.
fn store_file_body(store: &SledStore, r: &BodyRef, file: &FileBody) -> Result<(), StoreError> {
    let mut w = BodyWriter::new(WHOLE_BODY_LIMIT);
    for i in 0..file.parts() {
        w.write(store, &file.part(i)?)?;
    }
    match w.finish(store)? {
        WrittenBody::Whole(data) => store_whole(store, &data).map(|_| ()),
        WrittenBody::Stored { hash, .. } if hash.to_hex().as_str() == r.b3 => Ok(()),
        WrittenBody::Stored { hash, .. } => Err(BodyFileError::Mismatch {
            path: file.path.clone(),
            actual: hash.to_hex().to_string(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tape of `events` exchanges, each answered `{"answer":"<answer>","step":N}`.
    fn write_tape(path: &Path, answer: &str, events: u64) {
        let mut out = std::fs::File::create(path).unwrap();
        writeln!(
            out,
            r#"{{"tapedeck_tape":1,"session":"t","events":{events}}}"#
        )
        .unwrap();
        let empty = blake3::hash(b"").to_hex();
        for step in 1..=events {
            let body = format!(r#"{{"answer":"{answer}","step":{step}}}"#);
            let b3 = blake3::hash(body.as_bytes()).to_hex();
            writeln!(
                out,
                r#"{{"step":{step},"kind":"other","key":"{empty}","request":{{"method":"GET","url":"http://api.test/{step}","version":"HTTP/1.1","headers":[],"body":{{"b3":"{empty}","len":0,"text":""}}}},"response":{{"status":200,"version":"HTTP/1.1","headers":[],"body":{{"b3":"{b3}","len":{},"json":{body}}},"complete":true}},"timing":{{"start_ns":0,"end_ns":1000,"start_unix_ns":0,"end_unix_ns":1000}}}}"#,
                body.len()
            )
            .unwrap();
        }
    }

    /// The tape rewritten between the two passes, to the same length and with its
    /// modification time set back: the second pass reads other lines than the first
    /// checked, and refuses them.
    #[test]
    fn a_tape_changed_between_the_passes_is_refused_though_its_length_and_mtime_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.jsonl");
        let store = SledStore::open(&dir.path().join("store")).unwrap();

        write_tape(&file, "a", 3);
        let checked = check_tape(
            &store,
            TapeReader::open(&file).unwrap().digest_lines(),
            &Rules::default(),
        )
        .unwrap();
        assert_eq!(checked.events, 3);
        let before = std::fs::metadata(&file).unwrap();
        write_tape(&file, "b", 3);
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        drop(f);
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(
            (after.len(), after.modified().unwrap()),
            (before.len(), before.modified().unwrap())
        );
        let err = write_events(
            &store,
            &file,
            "t",
            checked.named,
            checked.digest,
            &Rules::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("changed while it was imported"),
            "{err}"
        );

        // The same tape read twice is imported.
        let checked = check_tape(
            &store,
            TapeReader::open(&file).unwrap().digest_lines(),
            &Rules::default(),
        )
        .unwrap();
        write_events(
            &store,
            &file,
            "u",
            checked.named,
            checked.digest,
            &Rules::default(),
        )
        .unwrap();
        assert_eq!(store.session("u").unwrap().unwrap().events, 3);
    }
}
