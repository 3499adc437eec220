//! `tapedeck replay`: serve a recording offline, rejecting every unrecorded call.

use std::sync::Arc;
use std::time::Instant;

use super::daemon::{serve, ServeOptions};
use super::whatif;
use super::{msg, CmdResult};
use crate::cli::{rule_args, ReplayArgs};
use crate::recording::{self, Recording, StoreAccess};
use crate::viewer::{Source, Viewer};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::ca::Ca;
use tapedeck_replay::{ReplayOptions, Replayer};
use tapedeck_store::{SledStore, Store};

/// Exit status when CMD succeeded but the replay did not (misses, or unused events with
/// `--fail-on-unused`).
pub const EXIT_REPLAY_FAILED: i32 = 3;

pub async fn run(a: ReplayArgs) -> CmdResult {
    let loading = Instant::now();
    // Replay's serving threads answer from what is read ahead: one that runs out of work
    // looks for the client's next request a moment before it sleeps (see
    // `tapedeck_proxy::shards`).
    tapedeck_proxy::shards::spin_before_park(std::time::Duration::from_micros(30));
    let memory = Loading::start();
    let source = source_of(&a)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut args = rule_args(&a.matching, &a.redact);
    args.stateful_hosts = a.stateful_hosts.clone();
    args.inject = a.inject.clone();
    let rules = Arc::new(Rules::load(&cwd, &args)?);
    let what_if = whatif::asked(&a, &rules);
    let held = held_store(&a, what_if)?;
    // A what-if run of a tape records its fork into --store.
    let fork_store = match (&held, what_if) {
        (_, false) => None,
        (Some(s), true) => Some(s.clone()),
        (None, true) => Some(Arc::new(SledStore::open(&a.store.store)?)),
    };
    let rec = read_recording(&a, &source, held.as_ref(), what_if).await?;
    super::refuse_damaged(
        &rec,
        a.allow_damaged,
        "replay would serve a recording with a hole in it, so it does not start",
        "or pass --allow-damaged to replay the rest",
    )?;
    let (ca, _) = Ca::load_or_create(&a.certs.certs)?;
    let session = rec.session.clone();
    let (hybrid, run) = match fork_store {
        Some(store) => {
            let (h, r) = whatif::start(&a, &rules, &session, store)?;
            (Some(h), Some(r))
        }
        None => (None, None),
    };
    let replayer = Replayer::new(
        rec,
        rules.clone(),
        ReplayOptions {
            order: a.order.into(),
            pace: a.pace.into(),
            allow_live: a.allow_live.clone(),
            max_body: a.max_body,
            hybrid,
            held_open: std::time::Duration::from_secs(a.listen.idle_timeout.max(1)),
        },
    )?;
    drop(memory);
    let outbound = outbound_line(run.as_ref().map(|r| r.outbound.clone()), &replayer);
    let recorded = replayer.summary().recorded;
    let load_ms = loading.elapsed().as_secs_f64() * 1000.0;
    let serve_opts = serve_options(&a, &replayer, held.as_ref(), &rules)?;
    let viewer_line = held.is_some().then(|| a.store.store.clone());
    let code = serve(
        replayer.clone(),
        Arc::new(ca),
        serve_opts,
        held.as_deref(),
        replayer.inflight.clone(),
        |addr| {
            tracing::info!(
                "replay listening on {addr}: session {session} ({recorded} events, ready in {load_ms:.0} ms); {outbound}"
            );
            if let Some(dir) = &viewer_line {
                tracing::info!("{}", super::ui::daemon_viewer_line(addr, dir));
            }
        },
    )
    .await?;
    let summary = replayer.summary();
    eprintln!("tapedeck: {}", summary.line(&session));
    if let Some(line) = summary.reorder_line() {
        eprintln!("tapedeck: {line}");
    }
    let mut incomplete = false;
    if let Some(run) = run {
        let ran = (!a.cmd.is_empty()).then_some(code);
        let (line, partial) = run.finish(replayer.recording(), &rules, ran).await?;
        eprintln!("tapedeck: {line}");
        incomplete = partial;
    }
    let code = exit_code(&a, &summary, code);
    // As record does: a fork that lacks what the agent got is not the run it was, and
    // a run that would otherwise end well says so by its status.
    if incomplete && code == 0 {
        eprintln!("tapedeck: exiting 2: the what-if fork is incomplete");
        return Ok(2);
    }
    Ok(code)
}

/// What is replayed: the tape's path, or the session's name (checked). Flags that do not
/// belong to replay are refused here, saying which to use.
fn source_of(a: &ReplayArgs) -> Result<String, super::CmdError> {
    if let Some(host) = a.passthrough.first() {
        return Err(msg(format!(
            "--passthrough is a record flag: replay opens no outbound connection unless told to. \
             To send {host}'s tunnels out live and untouched, use --allow-live {host} (port 443) or --allow-live {host}:PORT"
        )));
    }
    tapedeck_replay::live::check(&a.allow_live).map_err(|e| msg(e.to_string()))?;
    match (&a.tape, &a.session) {
        (Some(t), _) => Ok(t.display().to_string()),
        (None, Some(s)) => {
            SessionName::new(s)?;
            Ok(s.clone())
        }
        (None, None) => Err(msg(
            "replay needs --session NAME (from the store) or --tape FILE",
        )),
    }
}

/// The store this replay holds open, if it replays one of its sessions and no daemon
/// holds it. From the store, bodies are read as they are served (a long session need not
/// fit in memory) and the store stays open, so read commands ask this daemon meanwhile.
fn held_store(a: &ReplayArgs, what_if: bool) -> Result<Option<Arc<SledStore>>, super::CmdError> {
    if a.tape.is_some() {
        return Ok(None);
    }
    match recording::access_store(&a.store.store) {
        Ok(StoreAccess::Open(s)) => Ok(Some(s)),
        Ok(StoreAccess::Daemon { pid, listen }) if what_if => Err(msg(format!(
            "a what-if run records a fork into the store at {}, which tapedeck pid {pid} ({listen}) holds; stop it, or replay a tape (--tape) with another --store",
            a.store.store.display()
        ))),
        _ => Ok(None),
    }
}

/// The recording to serve. A long session stays in the store: the replay reads each
/// event back when it serves it. A what-if run reads the recorded events as it goes:
/// they stay.
async fn read_recording(
    a: &ReplayArgs,
    source: &str,
    held: Option<&Arc<SledStore>>,
    what_if: bool,
) -> Result<Recording, super::CmdError> {
    Ok(match held {
        Some(store)
            if !what_if
                && store
                    .session(source)?
                    .is_some_and(|i| i.events > tapedeck_replay::KEEP_EVENTS_UP_TO as u64) =>
        {
            Recording::from_store_by_step(store.clone(), source)?
        }
        Some(store) => Recording::from_store(store.clone(), source)?,
        None => recording::load(source, &a.store.store).await?,
    })
}

/// What the ready line says goes out: a what-if run's own account, the hosts
/// `--allow-live` lets through, or nothing.
fn outbound_line(what_if: Option<String>, replayer: &Replayer) -> String {
    let live = replayer.live_allowed();
    match what_if {
        Some(o) => o,
        None if live.is_empty() => "no outbound connections".to_string(),
        None => format!(
            "LIVE: CONNECTs to {} go out to the real host, untouched; nothing else goes out",
            live.join(", ")
        ),
    }
}

/// The daemon's options: its control API (the replay's status), and, holding the store,
/// the viewer of the session it replays (and only that one), behind the control API's
/// rule; a tape replay holds no store and has neither (`tapedeck ui TAPE` shows a tape).
fn serve_options(
    a: &ReplayArgs,
    replayer: &Arc<Replayer>,
    held: Option<&Arc<SledStore>>,
    rules: &Arc<Rules>,
) -> Result<ServeOptions, super::CmdError> {
    let session = replayer.session().to_string();
    let mut control =
        crate::control::Control::new(held.cloned().map(|s| s as Arc<dyn Store>), "replay")
            .serving_only(&session);
    let r = replayer.clone();
    control.status = Some(Arc::new(move || r.status_json()));
    let mut serve_opts =
        ServeOptions::new(&a.listen, &a.cmd, "replay", SessionName::new(&session).ok())?;
    if let Some(store) = held {
        let viewer = Viewer::new(
            Source::Session(store.clone() as Arc<dyn Store>, session.clone()),
            rules.clone(),
            "replay",
            format!("replaying session {session} of {}", a.store.store.display()),
        );
        control.set_viewer(viewer.clone());
        serve_opts.on_stop = Some(Box::new(move || viewer.close()));
    }
    serve_opts.control = Some(Arc::new(control));
    serve_opts.avoid_ports = replayer.loopback_ports().to_vec();
    Ok(serve_opts)
}

/// CMD's exit status, or [`EXIT_REPLAY_FAILED`] when CMD succeeded but the replay did
/// not (misses, or recorded events never used under `--fail-on-unused`).
fn exit_code(a: &ReplayArgs, summary: &tapedeck_replay::ReplaySummary, code: i32) -> i32 {
    let failed = summary.miss_count() > 0
        || !summary.damaged.is_empty()
        || !summary.read_on.is_empty()
        || (a.fail_on_unused && !summary.unused.is_empty());
    if !failed || code != 0 || a.cmd.is_empty() {
        return code;
    }
    eprintln!(
        "tapedeck: replay failed{}: exit {EXIT_REPLAY_FAILED}",
        if summary.miss_count() > 0 {
            " with misses"
        } else if !summary.damaged.is_empty() {
            ": recorded bodies failed their check (run `tapedeck fsck`)"
        } else if !summary.read_on.is_empty() {
            ": the agent read on where the recorded one hung up"
        } else {
            ": recorded events were never used (--fail-on-unused)"
        }
    );
    EXIT_REPLAY_FAILED
}

/// Reading a session to build the index allocates and frees as much again as the index
/// keeps, and mimalloc holds freed pages for a while (10 ms, and until it next looks)
/// before it hands them back. While this lives, freed pages go back at once; when it is
/// dropped, what is still held goes back too and serving gets the delay back (a 53,000-
/// event session: 62-63 MB resident once ready against 67-69 MB, 90 MB at the peak against
/// 101 MB; the read-mostly store's smaller cache takes it to 53-54 MB and 81-84 MB). The
/// one place tapedeck uses `unsafe`: the `mimalloc` crate wraps no safe call for these.
struct Loading {
    purge_delay: std::ffi::c_long,
}

/// mimalloc's `mi_option_purge_delay` (the 16th of its header's options in v2 and v3),
/// which `libmimalloc-sys` does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[allow(unsafe_code)]
impl Loading {
    fn start() -> Loading {
        // SAFETY: option calls take no pointers; mimalloc reads the option at each purge.
        let purge_delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
        Loading { purge_delay }
    }
}

#[allow(unsafe_code)]
impl Drop for Loading {
    fn drop(&mut self) {
        // SAFETY: mi_collect takes no pointers; it only frees memory no allocation uses.
        unsafe { libmimalloc_sys::mi_collect(true) };
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, self.purge_delay) };
    }
}
