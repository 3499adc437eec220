//! Store integrity: damage in a real sled store in a temp dir, found by searching for a
//! marker string, then `tapedeck fsck`, `show` and `replay` run against it.

use crate::support;

use std::path::Path;

use support::harness::{client, Daemon, Dirs};
use support::upstream::Upstream;

/// Records sessions `alpha` and `beta`, three exchanges each, marked `MARK-{session}-{i}`.
async fn two_sessions(dirs: &Dirs, up: &Upstream) {
    let ca = up.ca_path.to_str().unwrap().to_string();
    for session in ["alpha", "beta"] {
        let d = Daemon::start(
            dirs,
            &["record", "--session", session, "--upstream-ca", &ca],
        );
        let c = client(&d, dirs);
        for i in 1..=3 {
            let url = up.url(&format!("/json?m=MARK-{session}-{i}"));
            assert_eq!(c.get(url).send().await.unwrap().status(), 200);
        }
        let (code, err) = d.stop();
        assert_eq!(code, 0, "{err}");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Flips bytes of the value that holds `marker`, inside sled (so sled's own checks pass
/// and only tapedeck's per-event checksum can see it).
fn damage_event_below_sled(store: &Path, marker: &str) {
    let db = sled::open(store.join("db")).unwrap();
    let events = db.open_tree("events").unwrap();
    let mut hit = 0;
    for item in events.iter() {
        let (k, v) = item.unwrap();
        if let Some(&at) = find(&v, marker.as_bytes()).first() {
            let mut v = v.to_vec();
            v[at + 1] ^= 0x01;
            events.insert(k, v).unwrap();
            hit += 1;
        }
    }
    assert_eq!(hit, 1, "exactly one event holds {marker}");
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_event_is_named_by_fsck_and_the_rest_stays_readable() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    two_sessions(&dirs, &up).await;
    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 0, "a sound store: {out}{err}");
    assert!(out.contains("no damage found"), "{out}");

    damage_event_below_sled(&dirs.store, "MARK-alpha-2");

    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("alpha: DAMAGED"), "{out}");
    assert!(
        out.contains("step 2: the event does not match its checksum"),
        "{out}"
    );
    assert!(out.contains("beta: 3 events, sound"), "{out}");
    let (_, json, _) = dirs.run(&["fsck", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sound"], false);
    assert_eq!(v["sessions"][0]["session"], "alpha");
    assert_eq!(v["sessions"][0]["damaged"][0]["step"], 2);

    // The undamaged session reads as before; the damaged one shows the rest and says why.
    let (code, out, err) = dirs.run(&["show", "beta"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("MARK-beta-2") || out.contains("/json"),
        "{out}"
    );
    let (code, _, err) = dirs.run(&["show", "alpha"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("step 2") && err.contains("fsck"), "{err}");

    // Replay refuses to start on a recording with a hole, naming the step...
    let (code, _, err) = dirs.run(&["replay", "--session", "alpha", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("step 2") && err.contains("--allow-damaged"),
        "{err}"
    );
    // ...unless told otherwise; and a sound session replays as usual.
    let (code, _, err) = dirs.run(&[
        "replay",
        "--session",
        "alpha",
        "--allow-damaged",
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = dirs.run(&["replay", "--session", "beta", "--", "true"]);
    assert_eq!(code, 0, "{err}");
}

/// A small request body is kept inside its event's value (store format 3): damage to it
/// is not the event's (its JSON is sound) but the body's, and fsck, export and replay
/// each name it instead of handing on wrong bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_body_inside_its_event_is_named_by_fsck_and_refused_by_export() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "inl", &[]);
    let c = client(&d, &dirs);
    for i in 1..=3 {
        let body = format!(r#"{{"note":"BODYMARK-{i}"}}"#);
        let resp = c.post(up.url("/echo")).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // A streamed answer (SSE), kept whole for redaction, goes the same way.
    let sse = c.get(up.url("/sse?n=3&gap_ms=10")).send().await.unwrap();
    assert!(sse.text().await.unwrap().contains("[DONE]"));
    d.stop();
    let db = sled::open(dirs.store.join("db")).unwrap();
    let bodies = db.open_tree("bodies").unwrap();
    assert_eq!(
        bodies.len(),
        0,
        "no small body is stored under its blake3: {:?}",
        bodies.iter().keys().collect::<Vec<_>>()
    );
    assert_eq!(db.open_tree("events").unwrap().len(), 4);
    drop((bodies, db));
    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 0, "a sound store: {out}{err}");
    let tape = dirs.root.path().join("inl.jsonl");
    let tape = tape.to_str().unwrap();
    let (code, _, err) = dirs.run(&["export", "inl", "-o", tape]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(tape).unwrap();
    assert!(text.contains("BODYMARK-2"), "the body reads back: {text}");

    damage_event_below_sled(&dirs.store, "BODYMARK-2");

    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("inl: DAMAGED"), "{out}");
    assert!(
        out.contains("step 2: its request body") && out.contains("damaged"),
        "{out}"
    );
    let again = dirs.root.path().join("again.jsonl");
    let (code, _, err) = dirs.run(&["export", "inl", "-o", again.to_str().unwrap()]);
    assert_ne!(code, 0, "export hands on no damaged body");
    assert!(err.contains("damaged"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_body_file_is_named_by_session_and_step() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    damage_a_large_body(&dirs, &up, 300_000).await;

    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("big: DAMAGED"), "{out}");
    assert!(
        out.contains("step 2: its response body") && out.contains("damaged"),
        "{out}"
    );
}

/// A recorded body whose part fails its check goes out cut, never with wrong bytes, and
/// replay says so: the step, on stderr at once and in the summary, and a replay around a
/// command fails (exit 3) even when the command shrugs it off. A part that is gone is a
/// hole in the recording: replay does not start without `--allow-damaged`.
#[tokio::test(flavor = "multi_thread")]
async fn replay_names_a_recorded_body_that_fails_its_check_and_refuses_a_missing_one() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let victim = damage_a_large_body(&dirs, &up, 3_000_000).await;

    let (code, out, err) = dirs.run(&["show", "big"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("big"), "{out}");
    assert!(
        err.contains("step 2: its response body cannot be read") && err.contains("tapedeck fsck"),
        "show says why step 2 looks empty: {err}"
    );

    let r = Daemon::start(&dirs, &["replay", "--session", "big"]);
    let c = client(&r, &dirs);
    assert_eq!(c.get(up.url("/json")).send().await.unwrap().status(), 200);
    let got = c.get(up.url("/big?bytes=3000000")).send().await.unwrap();
    let status = got.status();
    let body = got.bytes().await;
    assert_eq!(status, 200, "the head goes out before the part is read");
    assert!(body.is_err(), "a cut answer, never wrong bytes");
    let (_, stderr) = r.stop();
    assert!(
        stderr.contains("step 2: its recorded response body failed its check"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 recorded body failed its check and went out cut (run `tapedeck fsck`)"),
        "{stderr}"
    );
    let fetch = |path: &str| format!("curl -s {} > /dev/null", up.url(path));
    let shrugs = format!(
        "{}; {}; exit 0",
        fetch("/json"),
        fetch("/big?bytes=3000000")
    );
    let (code, _, err) = dirs.run(&["replay", "--session", "big", "--", "sh", "-c", &shrugs]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("recorded bodies failed their check"), "{err}");

    std::fs::remove_file(&victim).unwrap();
    let (code, _, err) = dirs.run(&["replay", "--session", "big", "--", "true"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("session big has damaged events (step 2: its bodies were not stored"),
        "{err}"
    );
    let (code, _, err) = dirs.run(&[
        "replay",
        "--session",
        "big",
        "--allow-damaged",
        "--",
        "sh",
        "-c",
        &fetch("/json"),
    ]);
    assert_eq!(code, 0, "{err}");
}

/// sled's own `conf` file damaged: the store is named damaged, with fsck to run, as for
/// damage inside sled's log (not sled's word about versions older than 0.29).
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_sled_conf_is_named_as_a_damaged_store() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    two_sessions(&dirs, &up).await;
    std::fs::write(dirs.store.join("db").join("conf"), b"\xff\xfe garbage\n").unwrap();
    let (code, _, err) = dirs.run(&["sessions"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is damaged and sled cannot open it") && err.contains("tapedeck fsck"),
        "{err}"
    );
}

/// Records session `big` (a small exchange, then a body of `bytes` from `/big`, step 2)
/// and flips the byte in the middle of the body (in the pack under `blobs/`, which holds
/// only this body); returns that file.
async fn damage_a_large_body(dirs: &Dirs, up: &Upstream, bytes: usize) -> std::path::PathBuf {
    let d = Daemon::record(dirs, up, "big", &[]);
    let c = client(&d, dirs);
    c.get(up.url("/json")).send().await.unwrap();
    let resp = c
        .get(up.url(&format!("/big?bytes={bytes}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().len(), bytes);
    d.stop();
    let mut parts: Vec<_> = walk(&dirs.store.join("blobs"));
    parts.sort();
    let victim = parts.first().expect("a body part file").clone();
    let mut data = std::fs::read(&victim).unwrap();
    // The middle of the body: in a part the answer reaches after its head went out.
    data[bytes / 2] ^= 0xff;
    std::fs::write(&victim, data).unwrap();
    victim
}

/// An export that fails part way (here the second large body fails its check) writes no
/// tape, and takes back the body files it had written: before, `NAME.bodies/` kept the
/// first body, named by no tape. A sound file an earlier export of the same tape left is
/// checked and kept, so exporting that tape again does not need the damaged copy.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_export_leaves_no_body_files_behind() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "mix", &[]);
    let c = client(&d, &dirs);
    let blobs = dirs.store.join("blobs");
    let mut seen = Vec::new();
    for n in [200_000, 300_000] {
        let resp = c
            .get(up.url(&format!("/big?bytes={n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.bytes().await.unwrap().len(), n);
        seen.push(walk(&blobs));
    }
    d.stop();
    // Both bodies went to the store's one pack, the second after the first.
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    assert_eq!(seen[0], seen[1], "{seen:?}");
    let pack = &seen[0][0];
    let first_end = 200_000;
    assert!(std::fs::metadata(pack).unwrap().len() > first_end);

    let root = dirs.root.path();
    let export = |tape: &str| {
        let out = root.join(format!("{tape}.jsonl"));
        dirs.run(&["export", "mix", "-o", out.to_str().unwrap()])
    };
    let (code, _, err) = export("a");
    assert_eq!(code, 0, "{err}");
    let first_export = walk(&root.join("a.bodies"));
    assert_eq!(first_export.len(), 2, "{first_export:?}");

    let mut data = std::fs::read(pack).unwrap();
    data[first_end as usize + 100] ^= 0xff;
    std::fs::write(pack, data).unwrap();

    let (code, _, err) = export("b");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("damaged"), "{err}");
    assert!(!root.join("b.jsonl").exists());
    assert!(
        !root.join("b.bodies").exists(),
        "the first body's file went with the tape that would have named it: {:?}",
        walk(&root.join("b.bodies"))
    );

    let (code, _, err) = export("a");
    assert_eq!(
        code, 0,
        "the sound copy the earlier export left is the body's, checked, and kept: {err}"
    );
    assert_eq!(walk(&root.join("a.bodies")), first_export);
    let (code, _, err) = dirs.run(&[
        "import",
        root.join("a.jsonl").to_str().unwrap(),
        "--session",
        "again",
    ]);
    assert_eq!(code, 0, "the earlier tape still reads whole: {err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bytes flipped in sled's own file: sled 0.34 recovers its log only up to the damaged
/// record. Where a snapshot points past it, sled refuses the whole store; elsewhere it
/// silently drops everything from that record on. Either way tapedeck must say so: fsck
/// names the lost session and steps from its journal, and what was written before the
/// damage stays readable (in place, or in the `--salvage` copy).
#[tokio::test(flavor = "multi_thread")]
async fn bytes_flipped_in_the_sled_file_are_named_and_the_rest_salvaged() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    two_sessions(&dirs, &up).await;
    flip_in_sled_file(&dirs.store, "MARK-beta-2");

    let (code, _, err) = dirs.run(&["sessions"]);
    let refused = code != 0;
    if refused {
        assert!(
            err.contains("damaged") && err.contains("tapedeck fsck"),
            "{err}"
        );
    }

    let salvage = dirs.path("salvaged");
    let (code, out, err) = dirs.run(&["fsck", "--salvage", salvage.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("alpha: 3 events, sound"), "{out}");
    assert!(out.contains("beta: DAMAGED"), "{out}");
    assert!(
        out.contains("step 2: it is gone from the store"),
        "fsck names the lost step: {out}"
    );
    let readable = if refused {
        assert!(err.contains("sled cannot open the store"), "{err}");
        assert!(out.contains("salvage copy"), "{out}");
        salvage
    } else {
        dirs.store.clone()
    };
    let (code, out, err) = dirs.run(&["show", "alpha", "--store", readable.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
}

/// sled's log cut short where session beta's second event begins, with no snapshot to
/// say there was more (a crash of the disk, not of the process): sled opens the store and
/// gives back what comes before, without a word. The journal says what it had flushed, so
/// the read commands name the lost steps, and replay refuses a session with a hole in it
/// instead of serving what is left and blaming the agent for the calls it cannot find.
#[tokio::test(flavor = "multi_thread")]
async fn events_sled_lost_without_a_word_are_named_and_replay_refuses_the_session() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    two_sessions(&dirs, &up).await;
    let db = dirs.store.join("db");
    let file = db.join("db");
    let data = std::fs::read(&file).unwrap();
    let at = *find(&data, b"MARK-beta-2")
        .first()
        .expect("beta's second event");
    std::fs::write(&file, &data[..at]).unwrap();
    for e in std::fs::read_dir(&db).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let (code, out, err) = dirs.run(&["sessions"]);
    assert_eq!(code, 0, "sled opens what is left: {err}");
    assert!(out.contains("alpha"), "{out}");
    assert!(
        err.contains("session beta: 2 of the 3 events the journal lists as flushed are gone"),
        "sessions says the count is short: {out}{err}"
    );
    assert!(!err.contains("session alpha"), "{err}");
    let (code, _, err) = dirs.run(&["show", "beta"]);
    assert_eq!(code, 0, "sled opens what is left: {err}");
    assert!(
        err.contains("session beta, step 2: it is gone from the store"),
        "{err}"
    );
    let (code, _, err) = dirs.run(&["replay", "--session", "beta", "--", "true"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("session beta has damaged events (step 2: it is gone from the store"),
        "{err}"
    );
    let (code, _, err) = dirs.run(&["replay", "--session", "alpha", "--", "true"]);
    assert_eq!(code, 0, "a sound session replays: {err}");
}

/// Flips four bytes at every place `marker` appears in sled's own file.
fn flip_in_sled_file(store: &Path, marker: &str) {
    let file = store.join("db").join("db");
    let mut data = std::fs::read(&file).unwrap();
    let hits = find(&data, marker.as_bytes());
    assert!(!hits.is_empty(), "{marker} is in the sled file");
    for at in hits {
        for b in &mut data[at..at + 4] {
            *b ^= 0xff;
        }
    }
    std::fs::write(&file, data).unwrap();
}

/// Damage early in the log, before the snapshot the last clean stop wrote: sled refuses
/// the store. tapedeck says what happened and what to run; fsck salvages and names
/// every event sled cannot give back.
#[tokio::test(flavor = "multi_thread")]
async fn damage_before_sleds_snapshot_is_a_clear_error_and_fsck_names_what_is_lost() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    two_sessions(&dirs, &up).await;
    flip_in_sled_file(&dirs.store, "MARK-alpha-2");

    let (code, _, err) = dirs.run(&["show", "beta"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is damaged and sled cannot open it") && err.contains("tapedeck fsck"),
        "{err}"
    );
    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("sled cannot open the store"), "{err}");
    // How much of the log before the damaged record sled gives back depends on where its
    // buffers and page rewrites fell (step 1 survives, or goes with step 2): either way
    // every lost step is named, and nothing after the damage is counted sound.
    let alpha = out
        .lines()
        .find(|l| l.trim_start().starts_with("alpha: DAMAGED: "))
        .unwrap_or_else(|| panic!("alpha is reported damaged: {out}"));
    let sound: u64 = alpha
        .trim_start()
        .trim_start_matches("alpha: DAMAGED: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{alpha}"));
    assert!(sound <= 1, "{out}");
    let alpha_lost: Vec<&str> = out
        .split("alpha: DAMAGED")
        .nth(1)
        .and_then(|rest| rest.split("beta:").next())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(": it is gone"))
        .collect();
    assert_eq!(
        alpha_lost.len() as u64,
        3 - sound,
        "each lost step is named: {out}"
    );
    assert!(out.contains("step 2: it is gone"), "{out}");
    assert!(out.contains("beta: DAMAGED: 0 of 3 events sound"), "{out}");
}

/// A disk with less free space than the store keeps (`--min-free`, here more than any
/// disk has): every answer still reaches the agent whole, nothing of it is written but the
/// mark of where the session stopped being stored, the recorder says so when it stops,
/// fsck names that step and replay refuses the session. Without the floor, a disk that
/// filled under sled's log left a recorder that never ended (deaf to Ctrl-C) and a
/// session that read as sound but ended early.
#[tokio::test(flavor = "multi_thread")]
async fn a_disk_under_the_stores_floor_passes_traffic_unstored_and_the_session_is_marked_where_it_stopped(
) {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--session",
            "low",
            "--upstream-ca",
            &ca,
            "--min-free",
            "1000TiB",
        ],
    );
    let c = client(&d, &dirs);
    // The mark is the event as record built it: scrubbed of the key like any other.
    let key = "sk-proj-MarkNeverHoldsThis0123456789abcdefXYZ";
    for n in [10, 3_000_000, 2_000_000, 1_500_000] {
        let got = c
            .get(up.url(&format!("/big?bytes={n}")))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(
            got.bytes().await.unwrap().len(),
            n,
            "the agent got it whole"
        );
    }
    // While the daemon holds the store, the read commands go through it: its tape of the
    // session leaves the mark out, and says so.
    let tape = dirs.path("through-daemon.jsonl");
    let (code, _, err) = dirs.run(&["export", "low", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("step 1: it could not be stored whole")
            && err.contains("once the daemon stops"),
        "{err}"
    );
    assert!(!tape.exists());
    let (code, err) = d.stop();
    assert_eq!(code, 2, "an incomplete recording is a failed one: {err}");
    assert!(
        err.contains("4 exchanges went through to the agent but could not be stored (the first: low#1: the disk of the store at"),
        "{err}"
    );
    assert!(
        err.contains("exiting 2: the recording is incomplete"),
        "{err}"
    );
    assert!(
        err.contains("would take it under the 1000.0 TiB the store keeps free"),
        "{err}"
    );
    assert_eq!(
        err.matches("cannot store low#").count(),
        1,
        "said once, not once per exchange: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("ERROR") && l.contains("store write failed"))
            .count(),
        1,
        "a body the store refused is said once, not once per body: {err}"
    );
    let blobs = dirs.store.join("blobs");
    assert!(
        !blobs.exists() || std::fs::read_dir(&blobs).unwrap().next().is_none(),
        "no body was written"
    );

    refused_at(
        &dirs,
        "low",
        "step 1: it could not be stored whole when it was recorded (store write failed: the disk of the store at",
    );
    // The store, the tape export --allow-damaged wrote, and what record said.
    assert!(
        dirs.files_containing(key.as_bytes()).is_empty(),
        "{:?}",
        dirs.files_containing(key.as_bytes())
    );
    assert!(!err.contains(key), "{err}");
}

/// Recording around a command: a run whose command succeeded but whose recording lost
/// exchanges exits 2, so a CI job that records does not go green with a recording that
/// is not what the agent saw; a command that failed keeps its own status; and with
/// nothing lost, the command's 0 stays 0.
#[tokio::test(flavor = "multi_thread")]
async fn record_around_a_command_fails_when_the_recording_is_incomplete() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let run = |session: &str, floor: &str, exit: u8| {
        let script = format!("curl -s -f -o /dev/null {} && exit {exit}", up.url("/json"));
        dirs.run(&[
            "record",
            "--session",
            session,
            "--upstream-ca",
            &ca,
            "--min-free",
            floor,
            "--",
            "sh",
            "-c",
            &script,
        ])
    };
    let (code, _, err) = run("lost", "1000TiB", 0);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("1 exchange went through to the agent but could not be stored")
            && err.contains("exiting 2: the recording is incomplete"),
        "{err}"
    );
    let (code, _, err) = run("lost-too", "1000TiB", 7);
    assert_eq!(code, 7, "the command's failure is the one told: {err}");
    assert!(!err.contains("exiting 2"), "{err}");
    let (code, _, err) = run("whole", "0", 0);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("could not be stored"), "{err}");
}

/// fsck names `step` (`step N: ...`, the line's start) and exits 1; replay, export and
/// gen-test refuse `session`, naming the step (export writes no tape; it writes one with
/// `--allow-damaged`).
fn refused_at(dirs: &Dirs, session: &str, step: &str) {
    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(step), "{out}");
    let named = step.split(':').next().unwrap();
    let tape = dirs.path("damaged.jsonl");
    let case = dirs.path("case");
    for args in [
        vec!["replay", "--session", session, "--", "true"],
        vec!["export", session, "-o", tape.to_str().unwrap()],
        vec![
            "gen-test",
            session,
            "--cmd",
            "true",
            "-o",
            case.to_str().unwrap(),
        ],
    ] {
        let (code, _, err) = dirs.run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(named) && err.contains("could not be stored"),
            "{args:?}: {err}"
        );
    }
    assert!(!tape.exists(), "no tape with a hole in it");
    assert!(!case.join("case.toml").exists(), "no case");
    let (code, _, err) = dirs.run(&[
        "export",
        session,
        "-o",
        tape.to_str().unwrap(),
        "--allow-damaged",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(tape.exists());
}

/// A body the store cannot take (a full disk; here every blob directory turned into a
/// file, so each segment's write fails) went through to the agent whole, but the store
/// holds less: the recorder says so when it stops, fsck names the step, and replay
/// refuses the session instead of serving an empty answer for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_store_could_not_take_is_reported_and_never_replayed_as_empty() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &["record", "--session", "full", "--upstream-ca", &ca],
    );
    let c = client(&d, &dirs);
    // Past what is kept whole (1 MiB of bytes): written in segments as it streams.
    let n = 3_000_000;
    let ok = c
        .get(up.url(&format!("/big?bytes={n}")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.bytes().await.unwrap().len(), n);

    let blobs = dirs.store.join("blobs");
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
            std::fs::write(&p, b"not a directory").unwrap();
        }
    }
    let got = c
        .get(up.url(&format!("/big?bytes={}", n + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.bytes().await.unwrap().len(),
        n + 1,
        "the agent got it whole"
    );
    let (code, err) = d.stop();
    assert_eq!(code, 2, "an incomplete recording is a failed one: {err}");
    assert!(
        err.contains("1 exchange went through to the agent but could not be stored whole"),
        "{err}"
    );

    refused_at(
        &dirs,
        "full",
        "step 2: it could not be stored whole when it was recorded (store write failed",
    );
}
