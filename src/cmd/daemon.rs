//! Running the proxy: as a daemon until SIGINT/SIGTERM, or around `-- CMD`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{msg, CmdError};
use crate::ca::Ca;
use crate::proxy::{Handler, Proxy, ProxyOptions};
use crate::record::InFlight;
use crate::shutdown;
use crate::store::{DaemonInfo, SledStore};

pub struct ServeOptions {
    pub listen: Option<String>,
    pub cmd: Vec<String>,
    pub mode: &'static str,
    pub proxy: ProxyOptions,
    /// Run as the stop begins (the web viewer ends its live streams here).
    pub on_stop: Option<Box<dyn FnOnce() + Send>>,
}

/// How long a stop waits for exchanges in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until CMD exits (returning its code) or a signal arrives (returning 0).
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    ca: Arc<Ca>,
    opts: ServeOptions,
    store: Option<&SledStore>,
    inflight: Arc<InFlight>,
    banner: impl FnOnce(SocketAddr),
) -> Result<i32, CmdError> {
    let listen = match (&opts.listen, opts.cmd.is_empty()) {
        (Some(l), _) => l.clone(),
        (None, true) => "127.0.0.1:8080".to_string(),
        (None, false) => "127.0.0.1:0".to_string(),
    };
    let listener = TcpListener::bind(&listen).await.map_err(|e| {
        msg(format!(
            "cannot listen on {listen}: {e} (choose another address with --listen)"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| msg(format!("cannot read the listen address: {e}")))?;
    if !addr.ip().is_loopback() {
        tracing::warn!("listening on {addr}, which is not loopback: anyone who can reach it can use this proxy");
    }
    if let Some(s) = store {
        let _ = s.write_daemon_info(&DaemonInfo {
            pid: std::process::id(),
            listen: addr.to_string(),
            mode: opts.mode.to_string(),
        });
    }
    banner(addr);
    let (trigger, stop) = shutdown::channel();
    let proxy = Proxy::new(handler, ca.clone(), opts.proxy.clone());
    let connections = proxy.connections.clone();
    let server = tokio::spawn(proxy.serve(listener, stop));

    let code = if opts.cmd.is_empty() {
        wait_for_signal().await;
        tracing::info!("stopping: waiting for exchanges in flight");
        0
    } else {
        let bundle: PathBuf = ca.write_trust_bundle()?;
        let url = format!("http://{addr}");
        let env = crate::child::environment(&url, &bundle);
        crate::child::run(&opts.cmd, &env).await?
    };
    trigger.fire();
    if let Some(f) = opts.on_stop {
        f();
    }
    let _ = server.await;
    let started = tokio::time::Instant::now();
    let left = inflight.drain(DRAIN).await;
    if left > 0 {
        tracing::warn!(
            "{left} exchanges were still in flight after {}s; stopping anyway",
            DRAIN.as_secs()
        );
    }
    // Every response in progress is written out before the process goes.
    let limit = DRAIN
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let open = connections.drain(limit).await;
    if open > 0 {
        tracing::debug!("{open} client connections still open at exit");
    }
    if let Some(s) = store {
        s.remove_daemon_info();
    }
    Ok(code)
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
