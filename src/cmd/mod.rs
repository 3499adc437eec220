//! One command per file. Each takes plain options and returns an exit code.

mod analyze;
mod ca;
mod cluster;
mod daemon;
mod diff;
mod env;
mod export;
mod fsck;
mod gen_test;
mod import;
mod inject;
mod issues;
mod judge;
mod mcp;
mod otlp;
mod record;
mod replay;
mod rerun;
mod session_token;
mod sessions;
mod show;
mod test;
mod ui;
mod whatif;

use thiserror::Error;

use crate::cli::{Cli, Command};

/// Everything a command can fail with; each message says what and what to do.
#[derive(Debug, Error)]
pub enum CmdError {
    #[error(transparent)]
    Store(#[from] tapedeck_store::StoreError),
    #[error(transparent)]
    Ca(#[from] tapedeck_proxy::ca::CaError),
    #[error(transparent)]
    Trust(#[from] tapedeck_proxy::trust::TrustError),
    #[error(transparent)]
    Rules(#[from] tapedeck_model::rules::RulesError),
    #[error(transparent)]
    Session(#[from] tapedeck_model::session::SessionNameError),
    #[error(transparent)]
    Recording(#[from] crate::recording::RecordingError),
    #[error(transparent)]
    Tape(#[from] tapedeck_store::tape::TapeError),
    #[error(transparent)]
    Upstream(#[from] tapedeck_record::upstream::UpstreamSetupError),
    #[error(transparent)]
    Child(#[from] crate::child::ChildError),
    #[error(transparent)]
    Auth(#[from] tapedeck_proxy::auth::AuthError),
    #[error(transparent)]
    Viewer(#[from] crate::viewer::ViewerError),
    #[error(transparent)]
    Inject(#[from] tapedeck_model::exchange::inject::InjectError),
    #[error("{0}")]
    Message(String),
}

pub type CmdResult = Result<i32, CmdError>;

impl CmdError {
    /// The exit status a failed command ends with: a `-- CMD` that cannot be found or run
    /// gives the shell's 127 and 126 (what CI scripts test for); anything else 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            CmdError::Child(crate::child::ChildError::Spawn { source, .. }) => {
                match source.kind() {
                    std::io::ErrorKind::NotFound => 127,
                    std::io::ErrorKind::PermissionDenied => 126,
                    _ => 2,
                }
            }
            _ => 2,
        }
    }
}

pub fn msg(s: impl Into<String>) -> CmdError {
    CmdError::Message(s.into())
}

/// A recording with a hole in it is not used unless `allow` says so: `consequence` says
/// what using it would do, `way_out` what the user may do instead of recording it again.
fn refuse_damaged(
    rec: &crate::recording::Recording,
    allow: bool,
    consequence: &str,
    way_out: &str,
) -> Result<(), CmdError> {
    if rec.damaged.is_empty() || allow {
        return Ok(());
    }
    let steps: Vec<String> = rec.damaged.iter().map(|d| d.to_string()).collect();
    Err(msg(format!(
        "session {} has damaged events ({}); {consequence}. Run `tapedeck fsck` to see the damage, {way_out}",
        rec.session,
        steps.join("; ")
    )))
}

pub fn run(cli: Cli) -> CmdResult {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| msg(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        match cli.command {
            Command::Record(a) => record::run(a).await,
            Command::Replay(a) => replay::run(a).await,
            Command::Rerun(a) => rerun::run(a).await,
            Command::Ca { certs } => ca::run(&certs.certs),
            Command::Env { listen, certs } => env::run(listen.as_deref(), &certs.certs).await,
            Command::Sessions { store, json } => sessions::run(&store.store, json).await,
            Command::Fsck {
                store,
                json,
                salvage,
            } => fsck::run(&store.store, json, salvage.as_deref()),
            Command::Issues { store, json } => issues::run(&store.store, json).await,
            Command::Mcp { store } => mcp::run(&store.store).await,
            Command::Export {
                session,
                output,
                store,
                mode,
                inline_max,
                allow_damaged,
            } => {
                export::run(
                    &session,
                    &output,
                    &store.store,
                    mode,
                    inline_max,
                    allow_damaged,
                )
                .await
            }
            Command::Import {
                file,
                session,
                replace,
                store,
            } => import::run(&file, session.as_deref(), replace, &store.store),
            Command::Show {
                session,
                store,
                timeline,
                json,
            } => show::run(&session, &store.store, timeline, json).await,
            Command::Otlp {
                session,
                store,
                output,
                endpoint,
                include_content,
            } => {
                otlp::run(
                    &session,
                    &store.store,
                    output.as_deref(),
                    endpoint.as_deref(),
                    include_content,
                )
                .await
            }
            Command::Analyze {
                session,
                store,
                json,
                fail_on,
                explain,
                judge,
                judge_model,
            } => {
                let opts = analyze::Options {
                    json,
                    fail_on: fail_on.map(Into::into),
                    explain,
                    judge: judge.map(|url| analyze::JudgeOptions {
                        url,
                        model: judge_model,
                    }),
                };
                analyze::run(&session, &store.store, &opts).await
            }
            Command::Diff {
                session_a,
                session_b,
                store,
                json,
            } => diff::run(&session_a, &session_b, &store.store, json).await,
            Command::Cluster {
                sessions,
                store,
                json,
            } => cluster::run(&sessions, &store.store, json).await,
            Command::Ui {
                tapes,
                store,
                listen,
                open,
            } => {
                ui::run(ui::UiOptions {
                    store: store.store,
                    tapes,
                    listen,
                    open,
                })
                .await
            }
            Command::GenTest {
                session,
                cmd,
                output,
                store,
                force,
            } => gen_test::run(&session, &cmd, &output, &store.store, force).await,
            Command::SessionToken { session, secret } => session_token::run(&session, &secret),
            Command::Test {
                dir,
                junit,
                certs,
                stateful_hosts,
                store,
            } => {
                test::run(
                    &dir,
                    junit.as_deref(),
                    &certs.certs,
                    &stateful_hosts,
                    &store.store,
                )
                .await
            }
        }
    })
}

/// A thousand tunnels need two thousand descriptors; lift the soft limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Whether stderr is a terminal (progress bars only then).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
