//! `tapedeck ui [--store DIR | TAPE...]`: the web viewer on a loopback port.
//!
//! The viewer shows a store this process opens, or tape files. It sits behind the same
//! access rule as a daemon's control API (see [`crate::control`]): the one line this
//! command prints on stdout is the link that lets a browser in, and `--open` hands it to
//! a browser. While it holds a store it is that store's holder like a daemon: it writes
//! the store's control token and answers the control API, so `show`, `analyze` and the
//! others keep working beside it, and a record started on the same store is told which
//! process holds it. A store a record or replay daemon holds is shown by that daemon's
//! own viewer, which updates live: then this command prints that viewer's link and ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{msg, CmdResult};
use crate::control::{self, Control, OPENER_FILE, VIEWER_PATH};
use crate::recording::{access_store, Recording, StoreAccess};
use crate::viewer::{Source, Viewer};
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

/// What the viewer shows.
enum Shown {
    /// Sessions this process reads (a store it now holds, or tapes), and a phrase for the banner.
    Here {
        source: Source,
        held: Option<Arc<SledStore>>,
        what: String,
    },
    /// A store a running daemon holds, whose own viewer shows it.
    Daemon { pid: u32, listen: String },
}

pub async fn run(opts: UiOptions) -> CmdResult {
    let rules = Arc::new(Rules::from_working_dir()?);
    let (source, held, what) = match open_source(&opts)? {
        Shown::Here { source, held, what } => (source, held, what),
        Shown::Daemon { pid, listen } => return hand_off(&opts, pid, &listen),
    };
    let signals = super::daemon::StopSignals::catch();
    let listener = bind(opts.listen.as_deref()).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| msg(format!("cannot read the listen address: {e}")))?;
    // A store's token is a file beside it (read commands send it); tapes need none on disk.
    let token = match &held {
        Some(s) => control::create_token(s.path(), addr)
            .map_err(|e| msg(format!("cannot write the control token: {e}")))?,
        None => control::new_token().map_err(|e| msg(e.to_string()))?,
    };
    let viewer = Viewer::new(source, rules, "ui", what.clone());
    viewer.warm_up();
    let control = Arc::new(Control::new(
        held.clone().map(|s| s as Arc<dyn Store>),
        "ui",
    ));
    control.set_viewer(viewer.clone());
    if let Some(s) = &held {
        if let Err(e) = s.write_daemon_info(&DaemonInfo {
            pid: std::process::id(),
            listen: addr.to_string(),
            mode: "ui".to_string(),
        }) {
            tracing::warn!("read commands will not find this viewer: {e}");
        }
    }
    let link = control::viewer_link(addr, &token);
    tracing::info!(
        "ui listening on {addr}: the viewer of {what}; the link on stdout lets a browser in (Ctrl-C stops it)"
    );
    println!("{link}");
    // Kept until the end: the browser may read the page after a while.
    let opener_dir = if opts.open {
        open(held.as_deref(), &link)
    } else {
        None
    };
    let server = tokio::spawn(accept(listener, addr, token, control));
    signals.recv().await;
    viewer.close();
    server.abort();
    if let Some(s) = &held {
        s.remove_daemon_info();
        control::remove_token(s.path());
    }
    drop(opener_dir);
    Ok(0)
}

/// The sessions to show: tape files, the store (now held by this process), or the daemon
/// that holds the store.
fn open_source(opts: &UiOptions) -> Result<Shown, super::CmdError> {
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
        return Ok(Shown::Here {
            source: Source::Tapes(tapes),
            held: None,
            what,
        });
    }
    let dir = &opts.store;
    Ok(match access_store(dir)? {
        StoreAccess::Open(s) => Shown::Here {
            source: Source::Store(s.clone() as Arc<dyn Store>),
            held: Some(s),
            what: format!("the store at {}", dir.display()),
        },
        StoreAccess::Daemon { pid, listen } => Shown::Daemon { pid, listen },
    })
}

/// A store a daemon holds: prints the link to that daemon's viewer (with its token).
fn hand_off(opts: &UiOptions, pid: u32, listen: &str) -> CmdResult {
    let dir = &opts.store;
    let addr: SocketAddr = listen.parse().map_err(|e| {
        msg(format!(
            "the store at {} is held by tapedeck pid {pid}, whose address {listen:?} is unreadable ({e})",
            dir.display()
        ))
    })?;
    let token = control::read_token(dir).map_err(|e| {
        msg(format!(
            "the store at {} is held by tapedeck pid {pid} at {listen}, but {e}",
            dir.display()
        ))
    })?;
    let mode =
        tapedeck_store::read_daemon_info(dir).map_or_else(|| "daemon".to_string(), |i| i.mode);
    let only = if mode == "replay" {
        " (a replay daemon shows only the session it replays)"
    } else {
        ""
    };
    tracing::info!(
        "the store at {} is held by tapedeck {mode} pid {pid}, which serves the viewer itself at http://{addr}{VIEWER_PATH}{only}; the link on stdout lets a browser in",
        dir.display()
    );
    if opts.listen.is_some() {
        tracing::info!("--listen is not used: the daemon's viewer is on the daemon's address");
    }
    println!("{}", control::viewer_link(addr, &token));
    if opts.open {
        open_browser(&dir.join(OPENER_FILE));
    }
    Ok(0)
}

/// The line a record or replay daemon logs about its viewer (never the token itself).
pub fn daemon_viewer_line(addr: SocketAddr, store_dir: &Path) -> String {
    format!(
        "viewer at http://{addr}{VIEWER_PATH}: `tapedeck ui --store {}` prints the link that lets a browser in (or open {})",
        store_dir.display(),
        store_dir.join(OPENER_FILE).display()
    )
}

/// Opens the viewer in a browser through the page that holds `link`: the store's
/// `viewer.html`, else one in a fresh private directory (returned, to be kept).
fn open(held: Option<&SledStore>, link: &str) -> Option<tempfile::TempDir> {
    if let Some(s) = held {
        open_browser(&s.path().join(OPENER_FILE));
        return None;
    }
    match private_opener(link) {
        Ok(dir) => {
            open_browser(&dir.path().join(OPENER_FILE));
            Some(dir)
        }
        Err(e) => {
            tracing::warn!("cannot open a browser: {e}; open the link yourself");
            None
        }
    }
}

/// The page that sends a browser to `link`, in a fresh private directory.
fn private_opener(link: &str) -> Result<tempfile::TempDir, OpenerError> {
    let dir = tempfile::Builder::new()
        .prefix("tapedeck-ui-")
        .tempdir()
        .map_err(OpenerError::TempDir)?;
    control::write_opener(&dir.path().join(OPENER_FILE), link)?;
    Ok(dir)
}

/// Why the page for `--open` could not be made.
#[derive(Debug, thiserror::Error)]
enum OpenerError {
    #[error("no temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("{0}")]
    Write(#[from] tapedeck_model::secure_fs::WriteError),
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

async fn accept(listener: TcpListener, local: SocketAddr, token: String, control: Arc<Control>) {
    let token: Arc<str> = token.into();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let token = token.clone();
        let control = control.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let token = token.clone();
                let control = control.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(respond(req, local, &token, &control).await)
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

/// Every request passes the control API's rule; `/` points at the viewer.
async fn respond(
    req: Request<Incoming>,
    local: SocketAddr,
    token: &str,
    control: &Control,
) -> Response<ProxyBody> {
    let admitted = control::admit(Some(token), local, req.method(), req.uri(), req.headers());
    if req.uri().path() == "/" {
        // The answer holds nothing, so no token is needed; the rest of the rule holds.
        let pointer = match &admitted {
            Ok(()) => true,
            Err(r) => r.status() == http::StatusCode::UNAUTHORIZED,
        };
        if pointer {
            let mut resp = Response::new(tapedeck_proxy::body::empty());
            *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(
                http::header::LOCATION,
                http::HeaderValue::from_static(VIEWER_PATH),
            );
            return resp;
        }
    }
    if let Err(refusal) = admitted {
        tracing::debug!(
            "refused a viewer request: {} {} ({})",
            req.method(),
            req.uri().path(),
            refusal.status()
        );
        return *refusal;
    }
    control.serve(req).await
}

/// Hands `page` (a file that sends the browser on) to the desktop's opener: a link with
/// the token would show in the process list.
fn open_browser(page: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let mut command = std::process::Command::new(opener);
    crate::memcpy::restore(&mut command);
    let spawned = command
        .arg(page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!(
            "cannot open a browser ({opener}: {e}); open the link printed on stdout, or {}",
            page.display()
        );
    }
}
