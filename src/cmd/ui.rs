//! `tapedeck ui [--store DIR | TAPE...]`: the web viewer on a loopback port.
//!
//! The viewer reads a store this process opens, the store of a daemon that holds it
//! (through the daemon's control API), or tape files. While it holds a store it answers
//! that store's control API too, like a daemon, so `show`, `analyze` and the others keep
//! working beside it; a record started on the same store is told which process holds it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{msg, CmdResult};
use crate::control::Control;
use crate::recording::{access_store, Recording, StoreAccess};
use crate::viewer::{host_allowed, Source, Viewer};
use tapedeck_model::rules::Rules;
use tapedeck_proxy::body::ProxyBody;
use tapedeck_store::{DaemonInfo, SledStore, Store};

/// Where the viewer listens unless told otherwise (a free port when it is taken).
const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

pub struct UiOptions {
    pub store: PathBuf,
    pub tapes: Vec<PathBuf>,
    pub listen: Option<String>,
    pub open: bool,
}

pub async fn run(opts: UiOptions) -> CmdResult {
    let rules = Arc::new(Rules::from_working_dir()?);
    let (source, held, what) = open_source(&opts)?;
    let listener = bind(opts.listen.as_deref()).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| msg(format!("cannot read the listen address: {e}")))?;
    let viewer = Viewer::new(source, rules, "ui", what.clone());
    viewer.warm_up();
    let control = held.as_ref().map(|s| {
        let _ = s.write_daemon_info(&DaemonInfo {
            pid: std::process::id(),
            listen: addr.to_string(),
            mode: "ui".to_string(),
        });
        let store: Arc<dyn Store> = s.clone();
        Arc::new(Control::new(Some(store), "ui"))
    });
    let url = format!("http://{addr}/");
    tracing::info!("ui listening on {addr}: the viewer of {what} at {url} (Ctrl-C stops it)");
    println!("{url}");
    if opts.open {
        open_browser(&url);
    }
    let server = tokio::spawn(accept(listener, addr, viewer.clone(), control));
    super::daemon::wait_for_signal().await;
    viewer.close();
    server.abort();
    if let Some(s) = &held {
        s.remove_daemon_info();
    }
    Ok(0)
}

/// The sessions to show, the store this process then holds (if any), and a phrase for
/// the banner.
fn open_source(
    opts: &UiOptions,
) -> Result<(Source, Option<Arc<SledStore>>, String), super::CmdError> {
    if !opts.tapes.is_empty() {
        let mut tapes: Vec<Arc<Recording>> = Vec::new();
        for path in &opts.tapes {
            let mut rec = Recording::from_tape(
                tapedeck_store::tape::read(path)?,
                path.display().to_string(),
            );
            // Two tapes of one session stay apart: names address pages.
            let base = rec.session.clone();
            let mut n = 1;
            while tapes.iter().any(|t| t.session == rec.session) {
                n += 1;
                rec.session = format!("{base}-{n}");
            }
            tapes.push(Arc::new(rec));
        }
        let what = format!("{} tape file(s)", tapes.len());
        return Ok((Source::Tapes(tapes), None, what));
    }
    let dir = &opts.store;
    match access_store(dir)? {
        StoreAccess::Open(s) => {
            let store: Arc<dyn Store> = s.clone();
            Ok((
                Source::Store(store),
                Some(s),
                format!("the store at {}", dir.display()),
            ))
        }
        StoreAccess::Daemon { pid, listen } => {
            tracing::info!(
                "the store at {} is held by tapedeck pid {pid}: reading it through {listen} \
                 (that daemon serves a live viewer itself at http://{listen}/_tapedeck/ui/)",
                dir.display()
            );
            Ok((
                Source::Daemon(dir.clone()),
                None,
                format!("the store at {} (through pid {pid})", dir.display()),
            ))
        }
    }
}

/// Binds the listen address, which must be loopback: the viewer shows every body.
async fn bind(listen: Option<&str>) -> Result<TcpListener, super::CmdError> {
    let wanted = listen.unwrap_or(DEFAULT_LISTEN);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(wanted)
        .await
        .map_err(|e| msg(format!("--listen {wanted}: {e}")))?
        .collect();
    let Some(addr) = addrs.first().copied() else {
        return Err(msg(format!("--listen {wanted}: no address")));
    };
    if !addr.ip().is_loopback() {
        return Err(msg(format!(
            "--listen {wanted}: the viewer serves loopback only (it shows every recorded body); use 127.0.0.1:PORT"
        )));
    }
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if listen.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!("{DEFAULT_LISTEN} is in use; serving on a free port instead");
            TcpListener::bind((addr.ip(), 0))
                .await
                .map_err(|e| msg(format!("cannot listen on {}:0: {e}", addr.ip())))
        }
        Err(e) => Err(msg(format!(
            "cannot listen on {wanted}: {e} (choose another address with --listen)"
        ))),
    }
}

async fn accept(
    listener: TcpListener,
    local: SocketAddr,
    viewer: Arc<Viewer>,
    control: Option<Arc<Control>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let viewer = viewer.clone();
        let control = control.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let viewer = viewer.clone();
                let control = control.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(respond(req, local, &viewer, control).await)
                }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30));
            if let Err(e) = b.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!("viewer connection: {e}");
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    local: SocketAddr,
    viewer: &Viewer,
    control: Option<Arc<Control>>,
) -> Response<ProxyBody> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host_allowed(host, local) {
        return tapedeck_proxy::body::text(
            http::StatusCode::MISDIRECTED_REQUEST,
            &format!("this viewer answers only to http://{local}/"),
        );
    }
    if req.uri().path().starts_with("/_tapedeck/") {
        if let Some(c) = control {
            return c.serve(req).await;
        }
    }
    use http_body_util::BodyExt;
    viewer
        .serve(req, "")
        .await
        .map(|b| b.map_err(|e| match e {}).boxed_unsync())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("cannot open a browser ({opener}: {e}); open {url} yourself");
    }
}
