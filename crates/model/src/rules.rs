//! The user's rules: what to redact, what matters when matching, how to name and
//! classify exchanges. They come from the command line and from `tapedeck.toml` in the
//! working directory; the command line adds to the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::credential::{self, credential_name, NameKind};
use crate::exchange::inject::InjectRule;
use crate::exchange::Kind;

/// Headers never stored in clear (DESIGN.md, security defaults).
pub const DEFAULT_REDACT_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "x-goog-api-key",
    "x-subscription-token",
    "x-amz-security-token",
    // EC2's instance metadata session token (IMDSv2).
    "x-aws-ec2-metadata-token",
];

/// Query parameters never stored in clear (names compared case-insensitively, after
/// percent-decoding).
pub const DEFAULT_REDACT_QUERY: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "access_token",
    "token",
    "client_secret",
];

/// JSON, form and multipart fields never stored in clear, in requests and responses
/// (names compared case-insensitively: `apikey` is also `apiKey`, as in the query list).
pub const DEFAULT_REDACT_FIELDS: &[&str] = &[
    "api_key",
    "apikey",
    "password",
    "access_token",
    "refresh_token",
    "client_secret",
    // AWS credentials as SDKs, STS, Cognito and `credential_process` spell them.
    "secretaccesskey",
    "secretkey",
    "sessiontoken",
    "aws_secret_access_key",
    "aws_session_token",
    // STS's AssumeRoleWithWebIdentity request (form-encoded): the pod's identity token.
    "webidentitytoken",
];

/// URL paths that are credentials of their own (a webhook's or a bot's token is in the
/// path, not in a header), as regular expressions over `host/path` (host lower-case,
/// without its port): what each group in parentheses matched becomes `[REDACTED]`.
pub const DEFAULT_REDACT_PATHS: &[&str] = &[
    // Slack incoming webhooks: hooks.slack.com/services/T…/B…/SECRET.
    // (Slashes may be doubled: servers read `//` as `/`.)
    r"^hooks\.slack\.com/+services/+[^/]+/+[^/]+/+([^/]+)",
    // Discord webhooks: discord.com/api[/v10]/webhooks/ID/TOKEN.
    r"^(?:discord|discordapp)\.com/+api(?:/+v\d+)?/+webhooks/+[^/]+/+([^/]+)",
    // Telegram's Bot API: api.telegram.org/botTOKEN/method, /file/botTOKEN/path.
    r"^api\.telegram\.org/+(?:file/+)?bot([^/]+)",
];

/// [`DEFAULT_REDACT_PATHS`] compiled once (a set of rules is built per test case, per
/// fuzz input; a compiled regex is shared when cloned).
static BUILT_IN_PATHS: std::sync::LazyLock<Vec<PathSecret>> = std::sync::LazyLock::new(|| {
    DEFAULT_REDACT_PATHS
        .iter()
        .map(|p| PathSecret::parse(p).expect("the built-in paths are valid"))
        .collect()
});

pub const REDACTED: &str = "[REDACTED]";

/// Version of the canonical request's rules of its own, part of the fingerprint so a
/// recording keyed under an older form is re-keyed on replay.
const CANONICAL_FORM: u32 = 23;

/// Whether `name` is one of `listed` (query parameter names, any case).
pub fn lists(listed: &[String], name: &str) -> bool {
    listed.iter().any(|q| q.eq_ignore_ascii_case(name))
}

/// Whether a query parameter's name says it is a credential's (in general, or on `host`:
/// lower-case, no port; `""` for none) and its value is long enough to be one.
pub fn query_credential(host: &str, name: &str, value: &str, keep: &[String]) -> bool {
    value.len() >= credential::MIN_VALUE
        && (credential_name(NameKind::Query, name.as_bytes(), keep)
            || credential::query_credential_on(host, name.as_bytes(), keep))
}

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid tapedeck.toml: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error(
        "bad JSON path {path:?}: {why} (use a JSON pointer like /a/b/0 or a path like $.a.b[*].c)"
    )]
    JsonPath { path: String, why: String },
    #[error(
        "bad path to redact {pattern:?}: {why} (a regular expression over host/path, each group in parentheses redacted, like ^api\\.example\\.com/keys/([^/]+))"
    )]
    RedactPath { pattern: String, why: String },
    #[error("bad kind {0:?} in a [[kind]] rule: use llm, tool or other")]
    Kind(String),
    #[error("{path}: [redact] keep_shapes: {shape:?} is not a key format tapedeck reads; use one of {known} (or \"jwt\")")]
    KeepShape {
        path: PathBuf,
        shape: String,
        known: String,
    },
    #[error("{path} line {line}: an [[inject]] rule: {source}")]
    InjectFile {
        path: PathBuf,
        line: usize,
        #[source]
        source: crate::exchange::inject::InjectError,
    },
    #[error(transparent)]
    Inject(#[from] crate::exchange::inject::InjectError),
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
    Any,
}

/// A parsed `--redact-path`: a URL path that carries a credential.
#[derive(Clone, Debug)]
pub struct PathSecret {
    pub text: String,
    pub regex: regex::Regex,
}

impl PathSecret {
    pub fn parse(text: &str) -> Result<PathSecret, RulesError> {
        let err = |why: String| RulesError::RedactPath {
            pattern: text.to_string(),
            why,
        };
        let regex = regex::Regex::new(text).map_err(|e| err(e.to_string()))?;
        if regex.captures_len() < 2 {
            return Err(err("it has no group in parentheses to redact".into()));
        }
        // The text matched is the host and path without the port: a rule naming one
        // never matches, and the secret it was meant for would be stored in clear.
        static WITH_PORT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"^\^?(?:\\.|[A-Za-z0-9._-])+:[0-9]+(?:/|$)").expect("regex")
        });
        if WITH_PORT.is_match(text) {
            return Err(err(
                "it names a port, and path rules match the host and path without the port \
                 (`^localhost/hooks/([^/]+)` for https://localhost:8443/hooks/...)"
                    .into(),
            ));
        }
        Ok(PathSecret {
            text: text.to_string(),
            regex,
        })
    }
}

/// A parsed `--ignore-json-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    pub steps: Vec<PathStep>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, RulesError> {
        let err = |why: &str| RulesError::JsonPath {
            path: text.to_string(),
            why: why.to_string(),
        };
        let mut steps = Vec::new();
        if let Some(rest) = text.strip_prefix('/') {
            for raw in rest.split('/') {
                let tok = raw.replace("~1", "/").replace("~0", "~");
                if tok == "*" {
                    steps.push(PathStep::Any);
                } else if let Ok(i) = tok.parse::<usize>() {
                    // A numeric token is an index into arrays or a key into objects.
                    steps.push(PathStep::Index(i));
                } else {
                    steps.push(PathStep::Key(tok));
                }
            }
        } else if let Some(rest) = text.strip_prefix('$') {
            let b = rest.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'.' => {
                        let start = i + 1;
                        let mut j = start;
                        while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                            j += 1;
                        }
                        if j == start {
                            return Err(err("empty name after '.'"));
                        }
                        let name = &rest[start..j];
                        steps.push(if name == "*" {
                            PathStep::Any
                        } else {
                            PathStep::Key(name.to_string())
                        });
                        i = j;
                    }
                    b'[' => {
                        let close = rest[i..]
                            .find(']')
                            .map(|k| i + k)
                            .ok_or_else(|| err("missing ']'"))?;
                        let inner = rest[i + 1..close].trim();
                        if inner == "*" {
                            steps.push(PathStep::Any);
                        } else if let Ok(n) = inner.parse::<usize>() {
                            steps.push(PathStep::Index(n));
                        } else if (inner.starts_with('\'') && inner.ends_with('\''))
                            || (inner.starts_with('"') && inner.ends_with('"'))
                        {
                            if inner.len() < 2 {
                                return Err(err("bad quoted name"));
                            }
                            steps.push(PathStep::Key(inner[1..inner.len() - 1].to_string()));
                        } else {
                            return Err(err("brackets hold an index, * or a quoted name"));
                        }
                        i = close + 1;
                    }
                    _ => return Err(err("expected '.' or '['")),
                }
            }
        } else {
            return Err(err("must start with '/' or '$'"));
        }
        if steps.is_empty() {
            return Err(err("the path names the whole body"));
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// Removes every value this path names.
    pub fn remove(&self, value: &mut serde_json::Value) {
        remove_at(value, &self.steps);
    }
}

fn remove_at(value: &mut serde_json::Value, steps: &[PathStep]) {
    use serde_json::Value;
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match (first, value) {
        (PathStep::Key(k), Value::Object(map)) => {
            if last {
                map.shift_remove(k);
            } else if let Some(v) = map.get_mut(k) {
                remove_at(v, rest);
            }
        }
        (PathStep::Index(i), Value::Object(map)) => {
            let k = i.to_string();
            if last {
                map.shift_remove(&k);
            } else if let Some(v) = map.get_mut(&k) {
                remove_at(v, rest);
            }
        }
        (PathStep::Index(i), Value::Array(items)) => {
            if last {
                if *i < items.len() {
                    items.remove(*i);
                }
            } else if let Some(v) = items.get_mut(*i) {
                remove_at(v, rest);
            }
        }
        (PathStep::Any, Value::Object(map)) => {
            if last {
                map.clear();
            } else {
                for v in map.values_mut() {
                    remove_at(v, rest);
                }
            }
        }
        (PathStep::Any, Value::Array(items)) => {
            if last {
                items.clear();
            } else {
                for v in items.iter_mut() {
                    remove_at(v, rest);
                }
            }
        }
        _ => {}
    }
}

/// A host/path pattern (globs, `*` and `?`).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub host: Option<wildmatch::WildMatch>,
    pub path: Option<wildmatch::WildMatch>,
    pub method: Option<String>,
}

impl Pattern {
    pub fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

#[derive(Clone, Debug)]
pub struct KindRule {
    pub pattern: Pattern,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub struct ToolNameRule {
    pub pattern: Pattern,
    pub name: String,
}

/// Every rule in force, already lower-cased where names are case-insensitive.
#[derive(Clone, Debug)]
pub struct Rules {
    pub redact_headers: Vec<String>,
    pub redact_json_fields: Vec<String>,
    pub redact_query: Vec<String>,
    /// URL paths that are credentials ([`DEFAULT_REDACT_PATHS`] and `--redact-path`).
    pub redact_paths: Vec<PathSecret>,
    /// Names that [`credential_name`] would read as a credential's and the user says are
    /// not (`[redact] keep`), in [`credential::normalise`]d form. The lists above still
    /// redact what they name.
    pub keep_names: Vec<String>,
    /// Key formats not read by their shape (`[redact] keep_shapes`): their prefixes as
    /// README's "What is redacted" lists them (`eyJ` for a JWT), sorted.
    pub keep_shapes: Vec<String>,
    /// Extra request headers that take part in matching (beyond content-type, accept).
    pub match_headers: Vec<String>,
    pub ignore_headers: Vec<String>,
    pub ignore_query: Vec<String>,
    pub ignore_json_paths: Vec<JsonPath>,
    /// Multipart form fields whose content takes no part in matching (`--ignore-part`).
    pub ignore_parts: Vec<String>,
    /// Whether per-message ids (a JSON-RPC `id`, a WebSocket message's `event_id`) take
    /// part in matching; by default they do not, and replay answers with the client's own.
    pub match_message_ids: bool,
    pub kinds: Vec<KindRule>,
    pub tool_names: Vec<ToolNameRule>,
    /// Model-name prefix → max input tokens, overriding the built-in table.
    pub context_windows: Vec<(String, u64)>,
    /// Hosts whose calls replay keeps in recorded order among themselves (globs,
    /// lower-case): `[[order]] host = GLOB` and `--stateful-host`.
    pub stateful_hosts: Vec<wildmatch::WildMatch>,
    /// Fault injection (`[[inject]]` and `--inject`): applied by record and replay, never
    /// part of matching.
    pub inject: Vec<InjectRule>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            redact_headers: DEFAULT_REDACT_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            redact_json_fields: DEFAULT_REDACT_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            redact_query: DEFAULT_REDACT_QUERY.iter().map(|s| s.to_string()).collect(),
            redact_paths: BUILT_IN_PATHS.clone(),
            keep_names: Vec::new(),
            keep_shapes: Vec::new(),
            match_headers: Vec::new(),
            ignore_headers: Vec::new(),
            ignore_query: Vec::new(),
            ignore_json_paths: Vec::new(),
            ignore_parts: Vec::new(),
            match_message_ids: false,
            kinds: Vec::new(),
            tool_names: Vec::new(),
            context_windows: Vec::new(),
            stateful_hosts: Vec::new(),
            inject: Vec::new(),
        }
    }
}

/// The rules as they come from the command line.
#[derive(Clone, Debug, Default)]
pub struct RuleArgs {
    pub redact_headers: Vec<String>,
    pub redact_json_fields: Vec<String>,
    pub redact_query: Vec<String>,
    pub redact_paths: Vec<String>,
    pub match_headers: Vec<String>,
    pub ignore_headers: Vec<String>,
    pub ignore_query: Vec<String>,
    pub ignore_json_paths: Vec<String>,
    pub ignore_parts: Vec<String>,
    pub stateful_hosts: Vec<String>,
    /// `--inject MATCH=ACTION`, after the file's `[[inject]]` rules.
    pub inject: Vec<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileRules {
    #[serde(default)]
    redact: FileRedact,
    #[serde(default, rename = "match")]
    matching: FileMatch,
    #[serde(default)]
    kind: Vec<FileKindRule>,
    #[serde(default)]
    tool_name: Vec<FileToolName>,
    #[serde(default)]
    context_windows: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    order: Vec<FileOrderRule>,
    #[serde(default)]
    inject: Vec<FileInject>,
}

/// `[[inject]] match = "tool:get_weather" action = "status:503"`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileInject {
    #[serde(rename = "match")]
    matches: toml::Spanned<String>,
    action: toml::Spanned<String>,
}

/// `[[order]] host = GLOB`: calls to the host depend on each other (a stateful API).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileOrderRule {
    host: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileRedact {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    json_fields: Vec<String>,
    #[serde(default)]
    query: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    keep_shapes: Vec<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileMatch {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    ignore_headers: Vec<String>,
    #[serde(default)]
    ignore_query: Vec<String>,
    #[serde(default)]
    ignore_json_paths: Vec<String>,
    #[serde(default)]
    ignore_parts: Vec<String>,
    #[serde(default)]
    message_ids: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileKindRule {
    host: Option<String>,
    path: Option<String>,
    method: Option<String>,
    kind: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileToolName {
    host: Option<String>,
    path: Option<String>,
    method: Option<String>,
    name: String,
}

/// The 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

fn lower(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

fn pattern(host: Option<String>, path: Option<String>, method: Option<String>) -> Pattern {
    Pattern {
        host: host.map(|h| wildmatch::WildMatch::new(&h.to_ascii_lowercase())),
        path: path.map(|p| wildmatch::WildMatch::new(&p)),
        method,
    }
}

impl Rules {
    /// Loads `tapedeck.toml` from `dir` when present, then adds the command-line rules.
    pub fn load(dir: &Path, args: &RuleArgs) -> Result<Rules, RulesError> {
        let path = dir.join("tapedeck.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(RulesError::Read { path, source }),
        };
        let file = toml::from_str::<FileRules>(&text).map_err(|source| RulesError::Parse {
            path: path.clone(),
            source,
        })?;
        Rules::from_parts(file, args, &text, &path)
    }

    /// The rules of `tapedeck.toml` in the working directory, with no command-line
    /// additions: what every read command (show, analyze, diff, ...) works under.
    pub fn from_working_dir() -> Result<Rules, RulesError> {
        Rules::load(
            &std::env::current_dir().unwrap_or_default(),
            &RuleArgs::default(),
        )
    }

    /// Parses rules from TOML text (tests and `gen-test` cases).
    pub fn from_toml(text: &str, args: &RuleArgs) -> Result<Rules, RulesError> {
        let path = PathBuf::from("tapedeck.toml");
        let file = toml::from_str::<FileRules>(text).map_err(|source| RulesError::Parse {
            path: path.clone(),
            source,
        })?;
        Rules::from_parts(file, args, text, &path)
    }

    fn from_parts(
        file: FileRules,
        args: &RuleArgs,
        text: &str,
        path: &Path,
    ) -> Result<Rules, RulesError> {
        let mut r = Rules::default();
        for i in &file.inject {
            let rule = format!("{}={}", i.matches.get_ref(), i.action.get_ref());
            let rule = InjectRule::parse(&rule).map_err(|source| RulesError::InjectFile {
                path: path.to_path_buf(),
                line: line_of(text, i.matches.span().start),
                source,
            })?;
            r.inject.push(rule);
        }
        for text in &args.inject {
            r.inject.push(InjectRule::parse(text)?);
        }
        r.redact_headers.extend(lower(
            file.redact
                .headers
                .into_iter()
                .chain(args.redact_headers.clone()),
        ));
        r.redact_json_fields.extend(lower(
            file.redact
                .json_fields
                .into_iter()
                .chain(args.redact_json_fields.clone()),
        ));
        r.redact_query.extend(lower(
            file.redact
                .query
                .into_iter()
                .chain(args.redact_query.clone()),
        ));
        r.keep_names = file
            .redact
            .keep
            .iter()
            .map(|k| credential::normalise(k.trim()))
            .filter(|k| !k.is_empty())
            .collect();
        r.keep_names.sort();
        r.keep_names.dedup();
        for shape in &file.redact.keep_shapes {
            let prefix = match shape.trim() {
                "jwt" | "JWT" => "eyJ",
                "telegram" | "Telegram" => ":AA",
                p => p,
            };
            if !crate::exchange::redact::is_key_shape(prefix) {
                return Err(RulesError::KeepShape {
                    path: path.to_path_buf(),
                    shape: shape.clone(),
                    known: crate::exchange::redact::key_shapes()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            r.keep_shapes.push(prefix.to_string());
        }
        r.keep_shapes.sort();
        r.keep_shapes.dedup();
        for text in file.redact.paths.iter().chain(&args.redact_paths) {
            if !r.redact_paths.iter().any(|p| &p.text == text) {
                r.redact_paths.push(PathSecret::parse(text)?);
            }
        }
        r.match_headers.extend(lower(
            file.matching
                .headers
                .into_iter()
                .chain(args.match_headers.clone()),
        ));
        r.ignore_headers.extend(lower(
            file.matching
                .ignore_headers
                .into_iter()
                .chain(args.ignore_headers.clone()),
        ));
        r.ignore_query.extend(
            file.matching
                .ignore_query
                .into_iter()
                .chain(args.ignore_query.clone()),
        );
        for p in file
            .matching
            .ignore_json_paths
            .iter()
            .chain(args.ignore_json_paths.iter())
        {
            r.ignore_json_paths.push(JsonPath::parse(p)?);
        }
        r.ignore_parts.extend(
            file.matching
                .ignore_parts
                .into_iter()
                .chain(args.ignore_parts.clone())
                .map(|p| p.trim().to_string()),
        );
        r.ignore_parts.sort();
        r.ignore_parts.dedup();
        r.match_message_ids = file.matching.message_ids;
        for k in file.kind {
            let kind = match k.kind.to_ascii_lowercase().as_str() {
                "llm" => Kind::Llm,
                "tool" => Kind::Tool,
                "other" => Kind::Other,
                _ => return Err(RulesError::Kind(k.kind)),
            };
            r.kinds.push(KindRule {
                pattern: pattern(k.host, k.path, k.method),
                kind,
            });
        }
        for t in file.tool_name {
            r.tool_names.push(ToolNameRule {
                pattern: pattern(t.host, t.path, t.method),
                name: t.name,
            });
        }
        r.stateful_hosts = file
            .order
            .into_iter()
            .map(|o| o.host)
            .chain(args.stateful_hosts.iter().cloned())
            .map(|h| wildmatch::WildMatch::new(&h.trim().to_ascii_lowercase()))
            .collect();
        r.context_windows = file
            .context_windows
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        for list in [
            &mut r.redact_headers,
            &mut r.redact_json_fields,
            &mut r.redact_query,
            &mut r.match_headers,
            &mut r.ignore_headers,
        ] {
            list.sort();
            list.dedup();
        }
        Ok(r)
    }

    /// A short fingerprint of everything that changes a request's key: two rule sets
    /// with the same fingerprint compute the same keys.
    pub fn match_fingerprint(&self) -> String {
        let paths: Vec<&str> = self
            .ignore_json_paths
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        let mut ignore_query = self.ignore_query.clone();
        ignore_query.sort();
        let text = serde_json::json!([
            // The canonical form itself: 2 leaves JSON-RPC ids out, 3 matches a
            // multipart body by its parts, not its boundary, 4 redacts the secret fields
            // of JSON written inside a JSON string (a tool call's arguments); the paths
            // to redact came with it; 5 reads names for what they say (credential.rs);
            // 6 reads more of them (`…sign` headers, `appsecret_proof`, a form's
            // `assertion`, an API key its `type` names, an ARM parameter's `value`) and
            // keeps the shape of a secret that holds JSON; 7 reads headers no name marks
            // for keys by their shape, and hunts what a session's earlier exchanges
            // revealed in its later ones.
            CANONICAL_FORM,
            self.match_message_ids,
            self.redact_headers,
            self.redact_json_fields,
            self.redact_query,
            self.redact_paths
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>(),
            self.match_headers,
            self.ignore_headers,
            ignore_query,
            paths,
            self.kinds
                .iter()
                .map(|k| format!("{:?}", k))
                .collect::<Vec<_>>(),
        ])
        .to_string();
        // Added after recordings were made: only a rule set that ignores parts, or keeps
        // names from being read as credentials, differs from what it fingerprinted before.
        let text = match self.ignore_parts.is_empty() {
            true => text,
            false => format!(
                "{text}{}",
                serde_json::json!({"ignore_parts": self.ignore_parts})
            ),
        };
        let text = match self.keep_names.is_empty() {
            true => text,
            false => format!("{text}{}", serde_json::json!({"keep": self.keep_names})),
        };
        let text = match self.keep_shapes.is_empty() {
            true => text,
            false => format!(
                "{text}{}",
                serde_json::json!({"keep_shapes": self.keep_shapes})
            ),
        };
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }

    /// Whether a request header of this name is never stored in clear, whatever its
    /// value: it is listed, or its name says it is a credential's ([`credential_name`])
    /// and the user neither matches on it nor keeps it. Such a header takes no part in
    /// matching.
    pub fn is_redacted_header(&self, name: &str) -> bool {
        self.lists_header(name) || self.header_by_name(NameKind::Header, name)
    }

    /// Whether this header's value is stored as [`REDACTED`]: a listed header always; one
    /// whose name alone says so (in a request, or by the compound endings in an answer)
    /// when the value is long enough to be a credential ([`credential::MIN_VALUE`]).
    pub fn redacts_header(&self, kind: NameKind, name: &str, value: &str) -> bool {
        self.lists_header(name)
            || (value.trim().len() >= credential::MIN_VALUE && self.header_by_name(kind, name))
    }

    /// Whether the header is one the lists name (its value is scrubbed from the rest of
    /// the exchange from 8 bytes; one read by its name only when it looks like a key).
    pub fn lists_header(&self, name: &str) -> bool {
        self.redact_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether the query parameter is one the lists name.
    pub fn lists_query(&self, name: &str) -> bool {
        lists(&self.redact_query, name)
    }

    fn header_by_name(&self, kind: NameKind, name: &str) -> bool {
        credential_name(kind, name.as_bytes(), &self.keep_names)
            && !self
                .match_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a query parameter's value is stored as [`REDACTED`]: it is listed, or its
    /// name says it is a credential's (in general, or on this host: lower-case, no port)
    /// and the value is long enough to be one.
    pub fn redacts_query(&self, host: &str, name: &str, value: &str) -> bool {
        self.lists_query(name) || query_credential(host, name, value, &self.keep_names)
    }

    /// Whether calls to `host` (lower-case) must keep their recorded order.
    pub fn is_stateful_host(&self, host: &str) -> bool {
        self.stateful_hosts.iter().any(|g| g.matches(host))
    }

    /// The tool name for a non-LLM exchange: the first `[[tool_name]]` rule that matches,
    /// else host + first path segment.
    pub fn tool_name(&self, method: &str, host: &str, path: &str) -> String {
        if let Some(rule) = self
            .tool_names
            .iter()
            .find(|r| r.pattern.matches(method, host, path))
        {
            return rule.name.clone();
        }
        let first = path
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        if first.is_empty() {
            host.to_string()
        } else {
            format!("{host}/{first}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_rule_naming_a_port_is_refused_as_it_would_never_match() {
        for bad in [
            r"^localhost:18443/keys/([^/]+)",
            r"api\.example\.com:443/v1/([^/]+)",
        ] {
            let e = PathSecret::parse(bad).unwrap_err().to_string();
            assert!(e.contains("names a port"), "{bad}: {e}");
        }
        for good in [
            r"^localhost/keys/([^/]+)",
            r"^[^/]+/v1/models/[^/:]+:([a-z]+)",
        ] {
            PathSecret::parse(good).unwrap();
        }
    }
    use serde_json::json;

    #[test]
    fn pointer_and_dollar_paths_remove_the_same_values() {
        let mut a =
            json!({"meta": {"id": 1, "keep": 2}, "items": [{"ts": 1, "v": 1}, {"ts": 2, "v": 2}]});
        let mut b = a.clone();
        JsonPath::parse("/meta/id").unwrap().remove(&mut a);
        JsonPath::parse("/items/*/ts").unwrap().remove(&mut a);
        JsonPath::parse("$.meta.id").unwrap().remove(&mut b);
        JsonPath::parse("$.items[*].ts").unwrap().remove(&mut b);
        assert_eq!(a, b);
        assert_eq!(
            a,
            json!({"meta": {"keep": 2}, "items": [{"v": 1}, {"v": 2}]})
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for bad in ["meta.id", "$.a[", "$..a", "$"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            JsonPath::parse("$['a.b'][0]").unwrap().steps,
            vec![PathStep::Key("a.b".into()), PathStep::Index(0)]
        );
    }

    #[test]
    fn key_formats_can_be_kept_by_prefix_and_an_unknown_one_is_refused() {
        use crate::exchange::redact::{BodyScrubber, Secrets};
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz";
        let github = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        let body = format!(r#"{{"t":"{jwt}","g":"{github}"}}"#);
        let stored = |r: &Rules| {
            let (out, _) = BodyScrubber::run(
                body.as_bytes(),
                Some("application/json"),
                r,
                &Secrets::default(),
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            stored(&Rules::default()),
            r#"{"t":"[REDACTED]","g":"[REDACTED]"}"#
        );
        let args = RuleArgs::default();
        let r = Rules::from_toml("[redact]\nkeep_shapes = [\"jwt\"]", &args).unwrap();
        assert_eq!(r.keep_shapes, ["eyJ"]);
        assert_eq!(stored(&r), format!(r#"{{"t":"{jwt}","g":"[REDACTED]"}}"#));
        assert_ne!(r.match_fingerprint(), Rules::default().match_fingerprint());
        let err = Rules::from_toml("[redact]\nkeep_shapes = [\"ghp\"]", &args).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"ghp\" is not a key format") && text.contains("ghp_"),
            "{text}"
        );
    }

    #[test]
    fn credential_names_are_redacted_unless_matched_on_or_kept() {
        let r = Rules::default();
        let key = "a-value-long-enough";
        let header = |r: &Rules, n: &str| r.redacts_header(NameKind::Header, n, key);
        let query = |r: &Rules, n: &str| r.redacts_query("api.example.com", n, key);
        assert!(header(&r, "xi-api-key"));
        assert!(header(&r, "X-Vault-Token"));
        assert!(!header(&r, "idempotency-key"));
        assert!(query(&r, "X-Amz-Signature"));
        assert!(!query(&r, "pageToken"));
        // Too short to be a credential: only a listed name is redacted whatever its value.
        assert!(!r.redacts_header(NameKind::Header, "X-Vault-Token", "abc"));
        assert!(r.redacts_header(NameKind::Header, "x-api-key", "abc"));
        assert!(!r.redacts_query("api.example.com", "sig", "570"));
        assert!(r.redacts_query("api.example.com", "key", "570"));
        // An answer's header by the compound endings only.
        assert!(!r.redacts_header(NameKind::AnswerHeader, "x-ms-continuation-nextrowkey", key));
        assert!(!r.redacts_header(NameKind::AnswerHeader, "x-request-token", key));
        assert!(r.redacts_header(NameKind::AnswerHeader, "x-subject-auth-token", key));
        // `appid` on the hosts where it is a key.
        assert!(r.redacts_query("api.openweathermap.org", "appid", key));
        assert!(!r.redacts_query("api.steampowered.com", "appid", key));
        // A header the user matches on takes part in matching, so it is stored.
        let args = RuleArgs {
            match_headers: vec!["X-Tenant-Key".into()],
            ..Default::default()
        };
        let r = Rules::from_toml("[redact]\nkeep = [\"app_id\", \"X-Team-Token\"]", &args).unwrap();
        assert!(!header(&r, "x-tenant-key"));
        assert!(!header(&r, "x-team-token"));
        assert!(!r.redacts_query("api.openweathermap.org", "appId", key));
        assert!(query(&r, "sig"));
        // Kept names change what is stored, so keys: the fingerprint says so.
        assert_ne!(r.match_fingerprint(), Rules::default().match_fingerprint());
        // The lists still redact what they name.
        let r = Rules::from_toml("[redact]\nkeep = [\"x-api-key\"]", &RuleArgs::default()).unwrap();
        assert!(header(&r, "x-api-key"));
    }

    #[test]
    fn toml_rules_add_to_defaults_and_cli() {
        let args = RuleArgs {
            redact_headers: vec!["X-Tenant-Token".into()],
            ..Default::default()
        };
        let r = Rules::from_toml(
            r#"
            [redact]
            json_fields = ["PIN"]
            [match]
            ignore_json_paths = ["$.metadata"]
            [[kind]]
            host = "*.internal"
            kind = "other"
            [[tool_name]]
            host = "weather.test"
            name = "get_weather"
            "#,
            &args,
        )
        .unwrap();
        assert!(r.is_redacted_header("authorization"));
        assert!(r.is_redacted_header("x-tenant-token"));
        assert!(r.redact_json_fields.contains(&"pin".to_string()));
        assert!(r.redact_json_fields.contains(&"refresh_token".to_string()));
        assert_eq!(r.ignore_json_paths.len(), 1);
        assert_eq!(r.tool_name("GET", "weather.test", "/v1/x"), "get_weather");
        assert_eq!(r.tool_name("GET", "search.test", "/v1/x"), "search.test/v1");
        assert!(Rules::from_toml("[bogus]\n", &RuleArgs::default()).is_err());
    }

    #[test]
    fn stateful_hosts_come_from_order_rules_and_the_command_line() {
        let args = RuleArgs {
            stateful_hosts: vec!["DB.internal".into()],
            ..Default::default()
        };
        let r = Rules::from_toml("[[order]]\nhost = \"*.todo.test\"\n", &args).unwrap();
        assert!(r.is_stateful_host("api.todo.test"));
        assert!(r.is_stateful_host("db.internal"));
        assert!(!r.is_stateful_host("api.weather.test"));
        // A mistake names its line.
        let err = Rules::from_toml(
            "[[order]]\nhost = \"a\"\n\n[[order]]\nhots = \"b\"\n",
            &args,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 5") && err.contains("hots"), "{err}");
    }

    #[test]
    fn inject_rules_come_from_the_file_then_the_command_line_and_a_bad_one_names_its_line() {
        let args = RuleArgs {
            inject: vec!["step:3=reset".into()],
            ..Default::default()
        };
        let r = Rules::from_toml(
            "[[inject]]\nmatch = \"tool:get_weather\"\naction = \"status:503\"\n",
            &args,
        )
        .unwrap();
        let texts: Vec<&str> = r.inject.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, ["tool:get_weather=status:503", "step:3=reset"]);
        let err = Rules::from_toml(
            "[match]\nheaders = []\n\n[[inject]]\nmatch = \"step:x\"\naction = \"reset\"\n",
            &RuleArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 5") && err.contains("a step is a number"),
            "{err}"
        );
        let bad = RuleArgs {
            inject: vec!["tool:x".into()],
            ..Default::default()
        };
        assert!(Rules::from_toml("", &bad).is_err());
    }
}
