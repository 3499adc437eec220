//! Running the proxy: as a daemon until SIGINT/SIGTERM, or around `-- CMD`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{msg, CmdError};
use crate::cli::ListenArgs;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::auth::ProxyAuth;
use tapedeck_proxy::ca::Ca;
use tapedeck_proxy::shutdown;
use tapedeck_proxy::shutdown::Tracker as InFlight;
use tapedeck_proxy::{Handler, Proxy, ProxyOptions};
use tapedeck_store::{DaemonInfo, SledStore};

pub struct ServeOptions {
    pub listen: Option<String>,
    /// `--allow-remote`: a non-loopback listen address is allowed (with credentials).
    pub allow_remote: bool,
    pub cmd: Vec<String>,
    pub mode: &'static str,
    pub proxy: ProxyOptions,
    /// Run as the stop begins (the web viewer ends its live streams here).
    pub on_stop: Option<Box<dyn FnOnce() + Send>>,
    /// The control API (and viewer) this daemon answers under `/_tapedeck/`.
    pub control: Option<Arc<crate::control::Control>>,
    /// Ports an ephemeral listen port (`:0`) must not be: the loopback ports a replayed
    /// recording calls (see `Replayer::loopback_ports`).
    pub avoid_ports: Vec<u16>,
}

impl ServeOptions {
    /// The options the listen flags give: credentials read, timeouts and cap set.
    pub fn new(
        l: &ListenArgs,
        cmd: &[String],
        mode: &'static str,
        session: Option<SessionName>,
    ) -> Result<ServeOptions, CmdError> {
        let proxy_auth = match (&l.proxy_auth, &l.proxy_auth_file) {
            (Some(text), _) => Some(ProxyAuth::parse(text)?),
            (None, Some(path)) => Some(ProxyAuth::from_file(path)?),
            (None, None) => None,
        };
        Ok(ServeOptions {
            listen: l.listen.clone(),
            allow_remote: l.allow_remote,
            cmd: cmd.to_vec(),
            mode,
            proxy: ProxyOptions {
                session,
                proxy_auth,
                header_timeout: Duration::from_secs(l.header_timeout.max(1)),
                idle_timeout: Duration::from_secs(l.idle_timeout.max(1)),
                max_connections: l.max_connections.max(1),
                ..ProxyOptions::default()
            },
            on_stop: None,
            control: None,
            avoid_ports: Vec::new(),
        })
    }
}

/// Refuses a listen address others can reach unless it was asked for and guarded.
fn check_exposure(addr: SocketAddr, opts: &ServeOptions) -> Result<(), CmdError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !opts.allow_remote || opts.proxy.proxy_auth.is_none() {
        return Err(msg(format!(
            "{addr} is not a loopback address: anyone who can reach it could send traffic through this proxy \
             and into this machine's loopback. Listen on 127.0.0.1, or pass --allow-remote together with \
             --proxy-auth-file FILE (a USER:PASS line) or --proxy-auth USER:PASS"
        )));
    }
    tracing::warn!(
        "{addr} is not a loopback address: others can reach this daemon, and clients need the proxy credentials (--proxy-auth)"
    );
    Ok(())
}

/// Binds `listen`; when its port is 0 (the system picks), never one of `avoid`: the
/// listeners the system gave instead are held until one is not, so it picks another.
pub async fn bind_avoiding(listen: &str, avoid: &[u16]) -> std::io::Result<TcpListener> {
    let ephemeral = listen.rsplit_once(':').is_some_and(|(_, p)| p == "0");
    let avoid = if ephemeral { avoid } else { &[] };
    bind_until(avoid, || TcpListener::bind(listen)).await
}

/// Binds with `bind` until the port is not one of `avoid` (16 tries), holding the
/// listeners refused meanwhile so the system does not hand the same port back.
async fn bind_until<F, Fut>(avoid: &[u16], mut bind: F) -> std::io::Result<TcpListener>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpListener>>,
{
    let mut listener = bind().await?;
    let mut held = Vec::new();
    while held.len() < 16 && avoid.contains(&listener.local_addr()?.port()) {
        let next = bind().await?;
        held.push(std::mem::replace(&mut listener, next));
    }
    Ok(listener)
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
    // A daemon stops on a signal; with `-- CMD` the child's runner forwards them.
    let signals = opts.cmd.is_empty().then(StopSignals::catch);
    let listen = match (&opts.listen, opts.cmd.is_empty()) {
        (Some(l), _) => l.clone(),
        (None, true) => "127.0.0.1:8080".to_string(),
        (None, false) => "127.0.0.1:0".to_string(),
    };
    let listener = bind_avoiding(&listen, &opts.avoid_ports)
        .await
        .map_err(|e| {
            msg(format!(
                "cannot listen on {listen}: {e} (choose another address with --listen)"
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| msg(format!("cannot read the listen address: {e}")))?;
    check_exposure(addr, &opts)?;
    let proxy_opts = opts.proxy.clone();
    if let Some(s) = store {
        // The token first: a read command that finds daemon.json finds the token too.
        let token = crate::control::create_token(s.path(), addr)
            .map_err(|e| msg(format!("cannot write the control token: {e}")))?;
        if let Some(c) = &opts.control {
            c.set_token(token);
        }
        if let Err(e) = s.write_daemon_info(&DaemonInfo {
            pid: std::process::id(),
            listen: addr.to_string(),
            mode: opts.mode.to_string(),
        }) {
            tracing::warn!("read commands will not find this daemon: {e}");
        }
    }
    if opts.cmd.is_empty() {
        // The handshake warning and `tapedeck env` point a daemon's clients at it.
        tapedeck_proxy::trust::TrustBundle::plain(&ca)?;
    }
    banner(addr);
    let (trigger, stop) = shutdown::channel();
    let child_url = match &proxy_opts.proxy_auth {
        Some(auth) => format!("http://{}@{addr}", auth.userinfo()),
        None => format!("http://{addr}"),
    };
    let proxy = Proxy::new(handler, ca.clone(), proxy_opts);
    if let Some(c) = opts.control.clone() {
        proxy.set_local_api(c);
    }
    let connections = proxy.connections.clone();
    let server = tokio::spawn(proxy.serve(listener, stop));

    let code = if let Some(signals) = signals {
        signals.recv().await;
        tracing::info!("stopping: waiting for exchanges in flight");
        0
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        let trust = crate::child::trust_for_command(&ca, &cwd)?;
        let env = crate::child::environment(&child_url, &trust);
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
        crate::control::remove_token(s.path());
    }
    Ok(code)
}

/// SIGINT and SIGTERM, caught from the moment this is made: made before a daemon says
/// where it listens, so a signal sent as soon as it answers stops it cleanly (a handler
/// installed later left a window where SIGTERM killed it without its summary).
pub(super) struct StopSignals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(super) fn catch() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves on SIGINT or SIGTERM.
    pub(super) async fn recv(mut self) {
        async fn on(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => drop(s.recv().await),
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = on(&mut self.int) => {},
            _ = on(&mut self.term) => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ephemeral_port_a_recording_calls_is_passed_over() {
        // Three listeners the "system" hands out in turn; the first two are on ports the
        // replayed recording calls.
        let mut given = Vec::new();
        for _ in 0..3 {
            given.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let ports: Vec<u16> = given
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let mut queue = given.into_iter();
        let got = bind_until(&ports[..2], || {
            let next = queue.next();
            async move { next.ok_or_else(|| std::io::Error::other("no more")) }
        })
        .await
        .unwrap();
        assert_eq!(got.local_addr().unwrap().port(), ports[2]);
        // A fixed port is taken as asked, avoided or not.
        let fixed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = fixed.local_addr().unwrap().port();
        drop(fixed);
        let l = bind_avoiding(&format!("127.0.0.1:{port}"), &[port])
            .await
            .unwrap();
        assert_eq!(l.local_addr().unwrap().port(), port);
    }
}
