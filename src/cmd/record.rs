//! `tapedeck record`: the recording proxy.

use std::sync::Arc;
use std::time::Duration;

use super::daemon::{serve, ServeOptions};
use super::{msg, CmdResult};
use crate::cli::{rule_args, RecordArgs};
use crate::viewer::{Source, Viewer};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::ca::Ca;
use tapedeck_record::upstream::Upstream;
use tapedeck_record::{EventSink, Recorder};
use tapedeck_store::{RunInfo, SledStore, Store, StoreError};
use tapedeck_trace::live::counted;
use tapedeck_trace::live::LiveExporter;
use tapedeck_trace::otlp::{resolve_endpoint, Pusher};
use tapedeck_trace::spans::TraceOptions;

pub async fn run(a: RecordArgs) -> CmdResult {
    let session = a.session.as_deref().map(SessionName::new).transpose()?;
    let mut serve_opts = ServeOptions::new(&a.listen, &a.cmd, "record", session.clone())?;
    serve_opts.proxy.session_secret = super::session_token::session_secret(&a.secret)?;
    if session.is_some() && serve_opts.proxy.session_secret.is_some() {
        return Err(msg(
            "--session-secret guards the sessions clients name; with --session every client records into that one session, so give one or the other",
        ));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut args = rule_args(&a.matching, &a.redact);
    args.inject = a.inject.clone();
    let rules = Arc::new(Rules::load(&cwd, &args)?);
    let store = Arc::new(SledStore::open(&a.store.store)?);
    store.set_min_free(a.min_free);
    let (ca, _) = Ca::load_or_create(&a.certs.certs)?;
    let ca = Arc::new(ca);
    let upstream = Upstream::new(&a.upstream_ca, Duration::from_secs(a.upstream_timeout))?;
    let dyn_store: Arc<dyn Store> = store.clone();
    let live = live_exporter(&a, &dyn_store, &rules)?;
    let viewer = Viewer::new(
        Source::Store(dyn_store.clone()),
        rules.clone(),
        "record",
        format!("recording into {}", a.store.store.display()),
    );
    let control = Arc::new(crate::control::Control::new(
        Some(dyn_store.clone()),
        "record",
    ));
    control.set_viewer(viewer.clone());
    let (faults, tools) = super::inject::faults(&rules, dyn_store.clone())?;
    let recorder = Recorder::new(
        dyn_store,
        rules,
        upstream,
        &a.passthrough,
        Some(event_sink(&viewer, live.as_ref().map(|l| l.sink()), tools)),
        a.max_body,
        faults,
    )
    .map_err(|e| msg(e.to_string()))?;
    let fallback = serve_opts.proxy.fallback_session.clone();
    let store_dir = a.store.store.clone();
    let code = serve(
        recorder.clone(),
        ca,
        ServeOptions {
            on_stop: Some(Box::new(move || viewer.close())),
            control: Some(control),
            ..serve_opts
        },
        Some(&store),
        recorder.inflight.clone(),
        |addr| {
            let s = session.as_ref().unwrap_or(&fallback);
            tracing::info!(
                "record listening on {addr}: storing into {} (session {s}{})",
                store_dir.display(),
                if session.is_some() {
                    ""
                } else {
                    " unless the proxy user name names one"
                }
            );
            tracing::info!("{}", super::ui::daemon_viewer_line(addr, &store_dir));
        },
    )
    .await?;
    let recorded = recorder.sessions_recorded();
    // Caught from here on: the signal that stopped the proxy has been taken.
    let stop = super::daemon::StopSignals::catch();
    let mut trouble = None;
    if !a.cmd.is_empty() {
        // gen-test expects a replayed run to end as the recorded one did.
        for s in &recorded {
            if let Err(e) = store.put_run(s, &RunInfo { exit_code: code }) {
                trouble.get_or_insert(e);
            }
        }
    }
    // The last flush, which a user may interrupt and which gives up when sled never ends
    // it (see `COMMIT_PATIENCE`): either way the summary is said, and the process ends
    // without waiting for the store's threads, which may never finish.
    let closing = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.commit())
    };
    tokio::pin!(closing);
    // A first signal here is most often a second stop sent to a daemon already stopping
    // (a service manager, a test harness): it waits on. A second one leaves.
    let mut signals = 0;
    let mut stop = Some(stop);
    let interrupted = loop {
        let next = stop
            .take()
            .unwrap_or_else(super::daemon::StopSignals::catch);
        tokio::select! {
            done = &mut closing => {
                if let Err(e) = done.unwrap_or(Err(StoreError::CommitStopped)) {
                    trouble.get_or_insert(e);
                }
                break false;
            }
            () = next.recv() => {
                signals += 1;
                if signals == 2 {
                    break true;
                }
                eprintln!("tapedeck: waiting for the store to make its last writes durable (interrupt again to leave without them)");
            }
        }
    };
    if interrupted || trouble.is_some() {
        report(&recorder, &recorded, &a);
        match trouble {
            Some(e) if !interrupted => eprintln!("tapedeck: error: {e}"),
            _ => eprintln!(
                "tapedeck: interrupted while the store made its last writes durable: what was recorded in the last moments may not be; `tapedeck fsck --store {}` checks the store",
                a.store.store.display()
            ),
        }
        std::process::exit(if interrupted { 130 } else { 2 });
    }
    if let Some(live) = live {
        let st = live.finish().await;
        eprintln!(
            "tapedeck: live OTLP export: {} sent, {} dropped (queue full), {} failed",
            counted(st.exported, "span"),
            counted(st.dropped, "exchange"),
            counted(st.failed, "span")
        );
    }
    let incomplete = report(&recorder, &recorded, &a);
    // A recording that lost exchanges is not what the agent saw: a run that would
    // otherwise end well says so by its status (the command's own failure stays its).
    if incomplete && code == 0 {
        eprintln!("tapedeck: exiting 2: the recording is incomplete");
        return Ok(2);
    }
    Ok(code)
}

/// The live OTLP exporter `--otlp-endpoint` asks for.
fn live_exporter(
    a: &RecordArgs,
    store: &Arc<dyn Store>,
    rules: &Arc<Rules>,
) -> Result<Option<LiveExporter>, super::CmdError> {
    let Some(url) = &a.otlp_endpoint else {
        return Ok(None);
    };
    let (url, headers) = resolve_endpoint(Some(url)).map_err(|e| msg(e.to_string()))?;
    let pusher = Pusher::new(url.clone(), headers).map_err(|e| msg(e.to_string()))?;
    tracing::info!("exporting spans live to {url}");
    Ok(Some(LiveExporter::start(
        pusher,
        store.clone(),
        rules.clone(),
        TraceOptions {
            include_content: a.include_content,
        },
    )))
}

/// What was recorded, into which sessions; and, when a command ran and nothing was,
/// why that most likely is. True when an exchange went through that the store did not
/// take whole.
fn report(recorder: &Recorder, recorded: &[String], a: &RecordArgs) -> bool {
    let n = recorder
        .stats
        .exchanges
        .load(std::sync::atomic::Ordering::Relaxed);
    let errors = recorder
        .stats
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    let unstored = recorder
        .stats
        .unstored
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "tapedeck: recorded {} ({errors} without a complete response) into {} [{}]",
        counted(n, "exchange"),
        if recorded.is_empty() {
            "no session".to_string()
        } else {
            recorded.join(", ")
        },
        a.store.store.display()
    );
    if unstored > 0 {
        eprintln!(
            "tapedeck: {} went through to the agent but could not be stored whole (the store write failed: see the errors above; a full disk?): `tapedeck fsck` names them, and replay refuses the session until they are recorded again (or --allow-damaged leaves them out)",
            counted(unstored, "exchange")
        );
    }
    let (lost, first, unmarked) = recorder.lost();
    if let (1.., Some(first)) = (lost, first) {
        eprintln!(
            "tapedeck: {} went through to the agent but could not be stored (the first: {first}): {}",
            counted(lost, "exchange"),
            if unmarked == 0 {
                "`tapedeck fsck` names where each session stopped being stored, and replay refuses such a session until it is recorded again"
            } else {
                "where a session stopped being stored could not be marked either, so it reads as if it ended there (`--min-free` keeps room for that mark)"
            }
        );
    }
    if recorded.is_empty() && !a.cmd.is_empty() {
        why_nothing_was_recorded();
    }
    unstored > 0 || lost > 0
}

/// Nothing to replay, so no session was made: a replay of it would say there is no such
/// session. Most often the command's HTTP client did not use the proxy.
fn why_nothing_was_recorded() {
    let seen = &tapedeck_proxy::SEEN;
    let failed = seen.tls_failed.load(std::sync::atomic::Ordering::Relaxed);
    let came = seen.connections.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        eprintln!(
            "tapedeck: the command's client came through the proxy but ended {} before a request (see the warnings above: most often it does not trust tapedeck's CA), so no session was stored",
            counted(failed, "TLS connection")
        );
    } else if came > 0 {
        eprintln!(
            "tapedeck: the command's client opened {} to the proxy but completed no request through it, so no session was stored",
            counted(came, "connection")
        );
    } else {
        eprintln!(
            "tapedeck: the command made no HTTP call through the proxy, so no session was stored (a replay of it would find none). If it does call out, its HTTP client ignored HTTPS_PROXY and HTTP_PROXY: Node's built-in fetch does, and some SDKs take a proxy setting of their own"
        );
    }
}

/// Each stored exchange goes to the tool-call tracker of `--inject tool:` rules when
/// there is one, to the live viewer, then to live OTLP export when it is on.
fn event_sink(
    viewer: &Arc<Viewer>,
    otlp: Option<EventSink>,
    tools: Option<EventSink>,
) -> EventSink {
    let viewer = viewer.clone();
    Arc::new(move |session: &str, event| {
        if let Some(tools) = &tools {
            tools(session, event.clone());
        }
        viewer.notify(session, &event);
        if let Some(otlp) = &otlp {
            otlp(session, event);
        }
    })
}
