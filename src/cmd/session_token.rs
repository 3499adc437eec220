//! `tapedeck session-token SESSION`: the proxy password for one session on a daemon
//! started with `--session-secret` (see `proxy::auth`).

use super::{msg, CmdError, CmdResult};
use crate::cli::SessionSecretArgs;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::auth::SessionSecret;

pub fn run(session: &str, args: &SessionSecretArgs) -> CmdResult {
    let session = SessionName::new(session)?;
    let secret = session_secret(args)?.ok_or_else(|| {
        msg("session-token needs the daemon's secret: --session-secret-file FILE (or --session-secret, TAPEDECK_SESSION_SECRET)")
    })?;
    println!("{}", secret.token(&session));
    Ok(0)
}

/// The secret that `--session-secret` or `--session-secret-file` gives, if any.
pub fn session_secret(args: &SessionSecretArgs) -> Result<Option<SessionSecret>, CmdError> {
    Ok(match (&args.session_secret, &args.session_secret_file) {
        (Some(s), _) => Some(SessionSecret::new(s)?),
        (None, Some(path)) => Some(SessionSecret::from_file(path)?),
        (None, None) => None,
    })
}
