//! The command line, parsed into plain option structs. Nothing past `main` sees clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use tapedeck_model::rules::RuleArgs;

#[derive(Parser, Debug)]
#[command(
    name = "tapedeck",
    version,
    about = "Record/replay HTTP(S) proxy for AI agents",
    long_about = "Record every HTTP exchange of an agent run through a MITM proxy, replay it \
                  deterministically offline, and read it as an OpenTelemetry GenAI trace."
)]
pub struct Cli {
    /// More log output on stderr (-v: each exchange, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// Store directory (sled database).
    #[arg(long, env = "TAPEDECK_STORE", default_value = "./recordings")]
    pub store: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CertsArg {
    /// Certificate directory (the CA that clients trust).
    #[arg(long, env = "TAPEDECK_CERTS", default_value = "./certs")]
    pub certs: PathBuf,
}

/// How a daemon (record or replay) listens and whom it lets in.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Listen address (default 127.0.0.1:8080; a free port with `-- CMD`).
    #[arg(long, env = "TAPEDECK_LISTEN")]
    pub listen: Option<String>,
    /// Allow a --listen address that is not loopback (needs --proxy-auth or --proxy-auth-file).
    #[arg(
        long,
        env = "TAPEDECK_ALLOW_REMOTE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_remote: bool,
    /// Every client must send this password in its proxy URL; user name USER means the
    /// daemon's own session, any other user name names a session.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "TAPEDECK_PROXY_AUTH",
        hide_env_values = true,
        conflicts_with = "proxy_auth_file"
    )]
    pub proxy_auth: Option<String>,
    /// --proxy-auth read from a file holding one USER:PASS line (keeps it out of `ps`).
    #[arg(long, value_name = "FILE", env = "TAPEDECK_PROXY_AUTH_FILE")]
    pub proxy_auth_file: Option<PathBuf>,
    /// Seconds a connection (HTTP/1.1 or HTTP/2) may carry no exchange before it is closed
    /// (at most 315360000, ten years).
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS))]
    pub idle_timeout: u64,
    /// Seconds a client may take to send a request head, from its first byte (or from the
    /// connection's start, for its first request); the wait between two requests is the idle
    /// timeout's (at most ten years, as it).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS))]
    pub header_timeout: u64,
    /// Client connections open at once, tunnels included; more are answered 503 (at most
    /// 1000000).
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_CONNECTIONS))]
    pub max_connections: usize,
}

/// The longest `--idle-timeout` and `--header-timeout`: ten years (a deadline further out
/// overflows the clock's `Instant` on some platforms; "never" is this in practice).
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;
/// The most `--max-connections` (each connection holds a socket and its buffers; tokio's
/// semaphore takes at most 2^61 permits).
pub const MAX_CONNECTIONS: u64 = 1_000_000;

/// `--session-secret`: a client naming a session must present that session's token.
#[derive(Args, Debug, Clone, Default)]
pub struct SessionSecretArgs {
    /// Key of the session tokens: a client that names a session must send
    /// `tapedeck session-token SESSION` as its proxy password (at least 16 characters).
    #[arg(
        long,
        value_name = "SECRET",
        env = "TAPEDECK_SESSION_SECRET",
        hide_env_values = true,
        conflicts_with = "session_secret_file"
    )]
    pub session_secret: Option<String>,
    /// --session-secret read from a file.
    #[arg(long, value_name = "FILE", env = "TAPEDECK_SESSION_SECRET_FILE")]
    pub session_secret_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct MatchArgs {
    /// A request header that takes part in matching (beyond content-type and accept).
    #[arg(long = "match-header", value_name = "NAME")]
    pub match_headers: Vec<String>,
    /// A header to leave out of matching.
    #[arg(long = "ignore-header", value_name = "NAME")]
    pub ignore_headers: Vec<String>,
    /// A query parameter to leave out of matching.
    #[arg(long = "ignore-query", value_name = "NAME")]
    pub ignore_query: Vec<String>,
    /// A JSON body path to leave out of matching (/a/b/0 or $.a.b[*].c).
    #[arg(long = "ignore-json-path", value_name = "PATH")]
    pub ignore_json_paths: Vec<String>,
    /// A multipart form field whose content (and file name) is left out of matching.
    #[arg(long = "ignore-part", value_name = "NAME")]
    pub ignore_parts: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RedactArgs {
    /// Another header whose value is never stored.
    #[arg(long = "redact-header", value_name = "NAME")]
    pub redact_headers: Vec<String>,
    /// A JSON field (any depth) whose value is never stored.
    #[arg(long = "redact-json-field", value_name = "NAME")]
    pub redact_json_fields: Vec<String>,
    /// A query parameter whose value is never stored.
    #[arg(long = "redact-query", value_name = "NAME")]
    pub redact_query: Vec<String>,
    /// A URL path that is a credential: a regular expression over host/path whose groups
    /// in parentheses are never stored, like '^api\.example\.com/keys/([^/]+)' (Slack and
    /// Discord webhooks and Telegram bot tokens are built in).
    #[arg(long = "redact-path", value_name = "REGEX")]
    pub redact_paths: Vec<String>,
}

pub fn rule_args(m: &MatchArgs, r: &RedactArgs) -> RuleArgs {
    RuleArgs {
        redact_headers: r.redact_headers.clone(),
        redact_json_fields: r.redact_json_fields.clone(),
        redact_query: r.redact_query.clone(),
        redact_paths: r.redact_paths.clone(),
        match_headers: m.match_headers.clone(),
        ignore_headers: m.ignore_headers.clone(),
        ignore_query: m.ignore_query.clone(),
        ignore_json_paths: m.ignore_json_paths.clone(),
        ignore_parts: m.ignore_parts.clone(),
        stateful_hosts: Vec::new(),
        inject: Vec::new(),
    }
}

/// `--order` (see [`tapedeck_replay::Order`]).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrderArg {
    #[default]
    /// A call waits only for the calls whose answers it carries (and earlier calls to a
    /// stateful host); everything else may come in any order.
    Causal,
    /// One cursor for everything, no reordering.
    Strict,
    /// Match by key alone (first unused event with that key).
    Any,
}

impl From<OrderArg> for tapedeck_replay::Order {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Causal => tapedeck_replay::Order::Causal,
            OrderArg::Strict => tapedeck_replay::Order::Strict,
            OrderArg::Any => tapedeck_replay::Order::Any,
        }
    }
}

/// `analyze --fail-on`: the least severe finding that fails the run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Any finding (older scripts pass it; not advertised).
    #[value(hide = true)]
    Info,
    Warning,
    Error,
}

impl From<FailOn> for tapedeck_trace::analyze::Severity {
    fn from(f: FailOn) -> Self {
        use tapedeck_trace::analyze::Severity;
        match f {
            FailOn::Info => Severity::Info,
            FailOn::Warning => Severity::Warning,
            FailOn::Error => Severity::Error,
        }
    }
}

/// `--pace` (see [`tapedeck_replay::Pace`]).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaceArg {
    /// Send recorded responses at once.
    Fast,
    /// Reproduce the recorded time to first byte and chunk offsets.
    Recorded,
}

impl From<PaceArg> for tapedeck_replay::Pace {
    fn from(p: PaceArg) -> Self {
        match p {
            PaceArg::Fast => tapedeck_replay::Pace::Fast,
            PaceArg::Recorded => tapedeck_replay::Pace::Recorded,
        }
    }
}

/// `--on-miss`: what a replay does with a call the recording lacks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnMiss {
    #[default]
    /// Answer 404 with the miss and fail the run (exit 3).
    Fail,
    /// Send it to the real upstream and record it into the fork (a what-if run).
    Live,
}

/// `tapedeck rerun`: one recorded LLM step sent again to the live upstream.
#[derive(Args, Debug, Clone)]
pub struct RerunArgs {
    /// The recorded session, or a tape (a path with a `/`, or a file of that name when
    /// the store has no such session); the batch is stored in the store either way.
    pub session: String,
    /// The step whose LLM request is sent again.
    #[arg(long)]
    pub step: u64,
    /// How many times to send it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub times: u64,
    /// How many are in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// Ask another model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Replace the system prompt with this file's text.
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    /// Sampling temperature.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Send to this origin (scheme://host:port) instead of the recorded one; the path is kept.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The session the batch is stored as (default SESSION.rerun-N, the first free N).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Another CA (PEM) to trust for upstream TLS, besides the system roots.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// Seconds to wait for the upstream's response head.
    #[arg(long, default_value_t = 300)]
    pub upstream_timeout: u64,
    /// The largest body read, decoded.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_body: tapedeck_model::exchange::limit::MaxBody,
    #[command(flatten)]
    pub redact: RedactArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Record every exchange through the proxy (a daemon, or around `-- CMD`).
    Record(RecordArgs),
    /// Serve recorded responses; reject any call that was not recorded. No network.
    Replay(ReplayArgs),
    /// Send a recorded LLM request again, K times, and show the spread of its answers.
    Rerun(RerunArgs),
    /// Create the CA if missing; the last line printed is its PEM path.
    Ca {
        #[command(flatten)]
        certs: CertsArg,
    },
    /// Print the `export` lines for a daemon's clients: `eval "$(tapedeck env)"`.
    Env {
        /// The daemon's listen address (default 127.0.0.1:8080).
        #[arg(long, env = "TAPEDECK_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        certs: CertsArg,
    },
    /// List recorded sessions.
    Sessions {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Check the store for damage: names damaged sessions and steps; exit 1 if any.
    Fsck {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
        /// When sled cannot open the store, write what it can recover to this new directory.
        #[arg(long, value_name = "DIR")]
        salvage: Option<PathBuf>,
    },
    /// Write a session as a portable tape file (JSON lines).
    Export {
        /// Session name (or a tape file).
        session: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        store: StoreArg,
        /// Permission bits of the tape, in octal (it holds what the agent sent and got).
        #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = tapedeck_model::secure_fs::parse_mode)]
        mode: u32,
        /// Bodies longer than this many bytes are written once each, content-addressed,
        /// to NAME.bodies/<blake3> beside the tape instead of inline in it.
        #[arg(long, value_name = "BYTES", default_value_t = tapedeck_store::tape_files::DEFAULT_INLINE_MAX)]
        inline_max: u64,
        /// Write the tape of a session with damaged events (fsck names them): they are
        /// left out, so the tape has a hole there. Without it such a session is refused.
        #[arg(long)]
        allow_damaged: bool,
    },
    /// Load a tape file into the store.
    Import {
        file: PathBuf,
        /// Import under this name instead of the tape's.
        #[arg(long)]
        session: Option<String>,
        /// Replace an existing session of that name.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show a session as a span tree: timing, tokens, errors.
    Show {
        /// Session name (or a tape file).
        session: String,
        #[command(flatten)]
        store: StoreArg,
        /// Draw a waterfall of the spans.
        #[arg(long)]
        timeline: bool,
        /// Print the spans as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a session's spans as OTLP (a JSON file, or pushed to a collector).
    Otlp {
        /// Session name (or a tape file).
        session: String,
        #[command(flatten)]
        store: StoreArg,
        /// Write OTLP/JSON to this file.
        #[arg(short = 'o', long = "output", conflicts_with = "endpoint")]
        output: Option<PathBuf>,
        /// OTLP/HTTP base URL (http://host:4318); else OTEL_EXPORTER_OTLP_ENDPOINT.
        #[arg(long)]
        endpoint: Option<String>,
        /// Also export message content and tool arguments/results (may hold personal data).
        #[arg(long)]
        include_content: bool,
    },
    /// Check a session for failure signatures (retry loops, ignored tool errors, ...).
    Analyze {
        /// Session name (or a tape file).
        session: String,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
        /// Exit 1 when a finding is at least this severe (warning or error).
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<FailOn>,
        /// Walk back from this step through the exchanges whose output flowed into it.
        #[arg(long, value_name = "STEP", conflicts_with = "judge")]
        explain: Option<u64>,
        /// Ask this OpenAI-compatible endpoint (base URL, e.g. https://host/v1) to score
        /// each LLM step's output against the run's first instruction (goal_drift).
        #[arg(long, value_name = "URL")]
        judge: Option<String>,
        /// The judge's model.
        #[arg(
            long,
            value_name = "MODEL",
            requires = "judge",
            default_value = "gpt-4o-mini"
        )]
        judge_model: String,
    },
    /// Find the first step where run B diverges from run A.
    Diff {
        session_a: String,
        session_b: String,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Failure signatures across the store's sessions: first and last seen, count, status.
    Issues {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Serve the read commands as an MCP server over stdio (for coding agents).
    Mcp {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Group sessions by failure signature (all sessions in the store when none named).
    Cluster {
        sessions: Vec<String>,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Serve the web viewer on a loopback port: sessions, runs, diffs (a store, or tapes).
    /// Prints the one link that lets a browser in; for a store a daemon holds, that
    /// daemon's viewer link.
    Ui {
        /// Tape files to view instead of the store.
        tapes: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArg,
        /// Listen address, loopback only (default 127.0.0.1:8081; a free port if taken).
        #[arg(long)]
        listen: Option<String>,
        /// Open the viewer in the default browser (through a 0600 page that holds the
        /// link, so the token stays out of the process list).
        #[arg(long)]
        open: bool,
    },
    /// Turn a session into a regression case (tape + case.toml).
    GenTest {
        /// Session name (or a tape file).
        session: String,
        /// The command the case runs under replay (through `sh -c`).
        #[arg(long)]
        cmd: String,
        /// Directory to write the case into.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        store: StoreArg,
        /// Overwrite an existing case.
        #[arg(long)]
        force: bool,
    },
    /// Print the proxy password that lets a client record into SESSION on a daemon
    /// started with --session-secret.
    SessionToken {
        session: String,
        #[command(flatten)]
        secret: SessionSecretArgs,
    },
    /// Replay every regression case under DIR; N passed, M failed.
    Test {
        dir: PathBuf,
        /// Write JUnit XML here too.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[command(flatten)]
        certs: CertsArg,
        /// Calls to these hosts keep their recorded order (glob, repeatable; also
        /// `[[order]] host = GLOB` in a case's tapedeck.toml).
        #[arg(long = "stateful-host", value_name = "GLOB")]
        stateful_hosts: Vec<String>,
        /// The store whose issues table a passing case resolves (left alone if absent).
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Session to record into (else the proxy-auth user name, else a generated name).
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub secret: SessionSecretArgs,
    #[command(flatten)]
    pub certs: CertsArg,
    /// Another CA (PEM) to trust for upstream TLS, besides the system roots.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// Tunnel these hosts untouched and record nothing of them (glob, repeatable).
    #[arg(long, value_name = "HOST")]
    pub passthrough: Vec<String>,
    /// The largest body tapedeck reads, decoded (64MiB, 1GiB, ...): a larger request gets
    /// 413, so does a response whose Content-Length says it is larger; a response that
    /// goes over as it streams is cut there. The event records `too_large`.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_body: tapedeck_model::exchange::limit::MaxBody,
    /// The free space the store keeps on its disk (64MiB, 1GiB, ...; 0 keeps none): an
    /// exchange that would take the disk under it passes through to the agent unstored,
    /// and its session is marked incomplete (replay refuses it, fsck names the step).
    /// A disk that fills under sled's log leaves a store that needs `fsck --salvage`.
    #[arg(long, value_name = "SIZE", env = "TAPEDECK_MIN_FREE", default_value = "64MiB", value_parser = tapedeck_store::space::parse_min_free)]
    pub min_free: u64,
    /// Seconds to wait for an upstream's response head.
    #[arg(long, default_value_t = 300)]
    pub upstream_timeout: u64,
    /// Export each exchange's spans live to this OTLP/HTTP base URL (http://host:4318).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// With --otlp-endpoint: also export message content (may hold personal data).
    #[arg(long)]
    pub include_content: bool,
    /// Inject a fault: MATCH=ACTION, MATCH is step:N, tool:NAME, host:GLOB or
    /// kind:llm|tool|other (optionally #K: only the K-th match); ACTION is status:CODE,
    /// body:FILE, delay:DURATION, cut:BYTES, reset or timeout (several joined by commas).
    /// Repeatable; also `[[inject]]` in tapedeck.toml.
    #[arg(long, value_name = "MATCH=ACTION")]
    pub inject: Vec<String>,
    #[command(flatten)]
    pub redact: RedactArgs,
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Command to run with the proxy set (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Serve straight from a tape file (no store).
    #[arg(long, conflicts_with = "session")]
    pub tape: Option<PathBuf>,
    /// Session to replay (required unless --tape).
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub certs: CertsArg,
    /// How far requests may come in another order than recorded (see README, Replay).
    #[arg(long, value_enum, default_value_t = OrderArg::Causal)]
    pub order: OrderArg,
    /// Calls to these hosts keep their recorded order among themselves (glob, repeatable;
    /// also `[[order]] host = GLOB` in tapedeck.toml).
    #[arg(long = "stateful-host", value_name = "GLOB")]
    pub stateful_hosts: Vec<String>,
    #[arg(long, value_enum, default_value_t = PaceArg::Fast)]
    pub pace: PaceArg,
    /// The largest body tapedeck reads, decoded (64MiB, 1GiB, ...): a larger request gets
    /// 413, so does a response whose Content-Length says it is larger; a response that
    /// goes over as it streams is cut there. The event records `too_large`.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_body: tapedeck_model::exchange::limit::MaxBody,
    /// Replay a session even when some of its events are damaged (they are left out).
    #[arg(long)]
    pub allow_damaged: bool,
    /// Fail the run when recorded events were never used.
    #[arg(long)]
    pub fail_on_unused: bool,
    /// A record flag: refused in replay with a pointer to --allow-live.
    #[arg(long, value_name = "HOST", hide = true)]
    pub passthrough: Vec<String>,
    /// Tunnel CONNECTs to HOST (port 443) or HOST:PORT out to the real host, untouched and
    /// live; HOST may be a glob. Everything else is served from the recording.
    #[arg(long = "allow-live", value_name = "HOST[:PORT]")]
    pub allow_live: Vec<String>,
    /// A what-if run: send these calls to the real upstream (forwarded and recorded as
    /// `record` does) and serve the rest from the recording: llm, tool, other or a host
    /// glob (repeatable). The run is recorded into a fork (--fork).
    #[arg(long, value_name = "llm|tool|other|HOSTGLOB")]
    pub live: Vec<String>,
    /// What to do with a call the recording lacks: fail (a miss, exit 3), or live (send it
    /// out and record it into the fork).
    #[arg(long, value_enum, default_value_t = OnMiss::Fail)]
    pub on_miss: OnMiss,
    /// The session a what-if run (--live, --on-miss live, --inject) records into
    /// (default SESSION.fork-N, the first free N).
    #[arg(long, value_name = "NAME")]
    pub fork: Option<String>,
    /// Inject a fault: MATCH=ACTION, MATCH is step:N, tool:NAME, host:GLOB or
    /// kind:llm|tool|other (optionally #K: only the K-th match); ACTION is status:CODE,
    /// body:FILE, delay:DURATION, cut:BYTES, reset or timeout (several joined by commas).
    /// Repeatable; also `[[inject]]` in tapedeck.toml. The run is recorded into a fork.
    #[arg(long, value_name = "MATCH=ACTION")]
    pub inject: Vec<String>,
    /// Another CA (PEM) to trust for upstream TLS when calls go live.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// Seconds to wait for an upstream's response head when calls go live.
    #[arg(long, default_value_t = 300)]
    pub upstream_timeout: u64,
    #[command(flatten)]
    pub redact: RedactArgs,
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Command to run with the proxy set (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}
