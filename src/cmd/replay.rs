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
    if let Some(host) = a.passthrough.first() {
        return Err(msg(format!(
            "--passthrough is a record flag: replay opens no outbound connection unless told to. \
             To send {host}'s tunnels out live and untouched, use --allow-live {host} (port 443) or --allow-live {host}:PORT"
        )));
    }
    tapedeck_replay::live::check(&a.allow_live).map_err(|e| msg(e.to_string()))?;
    let source = match (&a.tape, &a.session) {
        (Some(t), _) => t.display().to_string(),
        (None, Some(s)) => {
            SessionName::new(s)?;
            s.clone()
        }
        (None, None) => {
            return Err(msg(
                "replay needs --session NAME (from the store) or --tape FILE",
            ))
        }
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut args = rule_args(&a.matching, &a.redact);
    args.stateful_hosts = a.stateful_hosts.clone();
    args.inject = a.inject.clone();
    let rules = Arc::new(Rules::load(&cwd, &args)?);
    let what_if = whatif::asked(&a, &rules);
    // From the store, bodies are read as they are served (a long session need not fit in
    // memory) and the store stays open, so read commands ask this daemon meanwhile.
    let held: Option<Arc<SledStore>> = match &a.tape {
        Some(_) => None,
        None => match recording::access_store(&a.store.store) {
            Ok(StoreAccess::Open(s)) => Some(s),
            Ok(StoreAccess::Daemon { pid, listen }) if what_if => {
                return Err(msg(format!(
                    "a what-if run records a fork into the store at {}, which tapedeck pid {pid} ({listen}) holds; stop it, or replay a tape (--tape) with another --store",
                    a.store.store.display()
                )))
            }
            _ => None,
        },
    };
    // A what-if run of a tape records its fork into --store.
    let fork_store = match (&held, what_if) {
        (_, false) => None,
        (Some(s), true) => Some(s.clone()),
        (None, true) => Some(Arc::new(SledStore::open(&a.store.store)?)),
    };
    let rec = match &held {
        // A long session stays in the store: the replay reads each event back when it
        // serves it. A what-if run reads the recorded events as it goes: they stay.
        Some(store)
            if !what_if
                && store
                    .session(&source)?
                    .is_some_and(|i| i.events > tapedeck_replay::KEEP_EVENTS_UP_TO as u64) =>
        {
            Recording::from_store_by_step(store.clone(), &source)?
        }
        Some(store) => Recording::from_store(store.clone(), &source)?,
        None => recording::load(&source, &a.store.store).await?,
    };
    if !rec.damaged.is_empty() && !a.allow_damaged {
        let steps: Vec<String> = rec.damaged.iter().map(|d| d.to_string()).collect();
        return Err(msg(format!(
            "session {} has damaged events ({}); replay would serve a recording with a hole in it, so it does not start. Run `tapedeck fsck` to see the damage, or pass --allow-damaged to replay the rest",
            rec.session,
            steps.join("; ")
        )));
    }
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
        },
    )?;
    return_freed_memory();
    let outbound_what_if = run.as_ref().map(|r| r.outbound.clone());
    let live = replayer.live_allowed();
    let recorded = replayer.summary().recorded;
    let load_ms = loading.elapsed().as_secs_f64() * 1000.0;
    let mut control =
        crate::control::Control::new(held.clone().map(|s| s as Arc<dyn Store>), "replay")
            .serving_only(&session);
    let r = replayer.clone();
    control.status = Some(Arc::new(move || r.status_json()));
    let mut serve_opts =
        ServeOptions::new(&a.listen, &a.cmd, "replay", SessionName::new(&session).ok())?;
    // Holding the store, the daemon shows the session it replays (and only that one)
    // in the viewer, behind its control API's rule; a tape replay holds no store and has
    // neither (`tapedeck ui TAPE` shows a tape).
    if let Some(store) = &held {
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
    let viewer_line = held.is_some().then(|| a.store.store.clone());
    let code = serve(
        replayer.clone(),
        Arc::new(ca),
        serve_opts,
        held.as_deref(),
        replayer.inflight.clone(),
        |addr| {
            let outbound = if let Some(o) = outbound_what_if {
                o
            } else if live.is_empty() {
                "no outbound connections".to_string()
            } else {
                format!(
                    "LIVE: CONNECTs to {} go out to the real host, untouched; nothing else goes out",
                    live.join(", ")
                )
            };
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
    if let Some(run) = run {
        let ran = (!a.cmd.is_empty()).then_some(code);
        let line = run.finish(replayer.recording(), &rules, ran).await?;
        eprintln!("tapedeck: {line}");
    }
    let failed = summary.miss_count() > 0 || (a.fail_on_unused && !summary.unused.is_empty());
    if failed && code == 0 && !a.cmd.is_empty() {
        eprintln!(
            "tapedeck: replay failed{}: exit {EXIT_REPLAY_FAILED}",
            if summary.miss_count() > 0 {
                " with misses"
            } else {
                ": recorded events were never used (--fail-on-unused)"
            }
        );
        return Ok(EXIT_REPLAY_FAILED);
    }
    Ok(code)
}

/// Reading a session to build the index allocates and frees as much again as the index
/// keeps, and mimalloc would hold the freed pages for later: this hands them back to the
/// system (60-68 MB resident for a 53,000-event session against 80-85 MB). The one
/// `unsafe` block in tapedeck: the `mimalloc` crate wraps no safe call for it.
#[allow(unsafe_code)]
fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it only frees memory no allocation uses.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
