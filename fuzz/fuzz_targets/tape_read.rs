//! The tape reader (`import`, `replay --tape`, every read command given a tape file).
//!
//! Any bytes are either refused with an error or read. A tape that is read writes back
//! (export) and reads again to the same header, events and bodies, and that second
//! export is byte-identical to the first: export → import → export is a promise.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tapedeck_store::tape::{
    each_of, read_from, write_run, Run, RunShape, Tape, TapeHeader, TAPE_VERSION,
};
use tapedeck_store::StoreError;

fn export(t: &Tape) -> Vec<u8> {
    let mut out = Vec::new();
    write_run(
        &mut out,
        Run {
            session: &t.header.session,
            exit_code: t.header.exit_code,
            shape: RunShape::of(&t.events),
        },
        |each| each_of(&t.events, each),
        |r, sink| match (t.bodies.get(&r.b3), t.files.get(&r.b3)) {
            (Some(b), _) => sink(b),
            (None, Some(f)) => sink(&f.read_all()?),
            (None, None) => Err(StoreError::MissingBody(r.b3.clone()).into()),
        },
        None,
        |_| {},
    )
    .expect("a tape that was read writes back");
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(tape) = read_from(Cursor::new(data), Path::new("fuzz.jsonl")) else {
        return;
    };
    let first = export(&tape);
    let again = match read_from(Cursor::new(&first), Path::new("export.jsonl")) {
        Ok(t) => t,
        Err(e) => panic!(
            "tapedeck refuses a tape it wrote itself: {e}\n{}",
            String::from_utf8_lossy(&first)
        ),
    };
    // Written in the oldest format that holds its events (tapes without WebSocket
    // messages stay readable by older tapedecks), whatever number it was read with.
    assert!(again.header.tapedeck_tape <= TAPE_VERSION);
    let header = TapeHeader {
        tapedeck_tape: again.header.tapedeck_tape,
        ..tape.header.clone()
    };
    assert_eq!(again.header, header);
    assert_eq!(again.events, tape.events);
    assert_eq!(again.bodies, tape.bodies);
    let second = export(&again);
    assert!(
        second == first,
        "export → import → export is not byte-identical:\n{}\n---\n{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
});
