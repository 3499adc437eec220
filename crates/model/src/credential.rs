//! Names that say their value is a credential, whatever the API.
//!
//! The default redaction lists name what the LLM providers and the big clouds send. The
//! tools an agent calls send their keys under names of their own: ElevenLabs'
//! `xi-api-key`, Azure's `Ocp-Apim-Subscription-Key` (Bing search), RapidAPI's
//! `X-RapidAPI-Key`, Weaviate's `X-OpenAI-Api-Key`, Vault's `X-Vault-Token`, an S3
//! presigned URL's `X-Amz-Security-Token` and `X-Amz-Signature`, an Azure SAS URL's
//! `sig`, the `authorization_token` of Anthropic's MCP connector and the
//! `headers.Authorization` of OpenAI's MCP tool in a request body. No list keeps up with
//! them, so a name is also read for what it says: lower-cased, with `-`, `_`, `.` and
//! spaces dropped, a name that ends in `apikey`, `accesstoken`, `secret`, `password` and
//! the like is a credential's ([`credential_name`]).
//!
//! Each kind of name reads a little differently, because redacting what is not a
//! credential breaks replay: two calls that differ only in a redacted value become one
//! (Steam's `appid=570` and `appid=440`), and a value the client sends back (a cursor in
//! an answer's header, a secret's name in a model's tool call) no longer matches. A body
//! field named `token` is a logprob's text and `signature` is Claude's thinking
//! signature, and a `pageToken` carries the next page; so fields and query parameters
//! take only the compound endings, an answer's headers too, and a request header whose
//! name ends in `key` or `token` is a credential, save the few in [`HEADER_NOT_SECRET`].
//! Values too short to be a key are left to the lists ([`MIN_VALUE`]).

/// What kind of name [`credential_name`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A request's header.
    Header,
    /// An answer's header (or trailer): read by the compound endings only. Credentials
    /// travel in requests; an answer's `x-ms-continuation-NextPartitionKey` is a cursor
    /// the client sends back, and redacting it would make replay miss.
    AnswerHeader,
    Query,
    /// A JSON, form, multipart or XML field.
    Field,
}

/// The longest name read, in bytes as written; a longer name is not taken for a
/// credential's (a streaming scanner holds back this much of a key to compare it).
pub const MAX_NAME: usize = 64;

/// A header's or query parameter's value shorter than this is not taken for a
/// credential when only its name says so: no service issues keys that short, and
/// redacting `?appid=570` would make two different calls one (replay would serve each
/// the other's answer).
pub const MIN_VALUE: usize = 8;

/// Endings that make a credential's name in every kind of name.
const ENDINGS: &[&[u8]] = &[
    b"apikey",
    b"apitoken",
    b"accesstoken",
    b"authtoken",
    b"authorizationtoken",
    b"bearertoken",
    b"refreshtoken",
    b"sessiontoken",
    b"securitytoken",
    b"identitytoken",
    b"idtoken",
    b"privatetoken",
    b"clienttoken",
    b"subjecttoken",
    b"actortoken",
    b"oauthtoken",
    b"githubtoken",
    b"hftoken",
    b"bottoken",
    b"accesskey",
    b"secretkey",
    b"privatekey",
    b"signingkey",
    b"subscriptionkey",
    b"appkey",
    b"applicationkey",
    b"licensekey",
    b"authkey",
    b"clientkey",
    b"sessionkey",
    b"servicerolekey",
    b"writekey",
    b"masterkey",
    b"adminkey",
    b"secret",
    b"password",
    b"passwordconfirmation",
    b"passwd",
    b"passphrase",
    b"passcode",
    b"authorization",
    b"cookie",
    b"connectionstring",
    b"secretstring",
    b"secretbinary",
    b"codeverifier",
    b"clientassertion",
    // Facebook Graph's `appsecret_proof`: the app secret's HMAC of the access token.
    b"appsecretproof",
];

/// Endings that make a credential's name in a request's header (beside [`ENDINGS`]).
const HEADER_ENDINGS: &[&[u8]] = &[
    b"key",
    b"token",
    b"auth",
    b"signature",
    b"credential",
    b"credentials",
    b"authentication",
    // Azure Resource Manager's `x-ms-authorization-auxiliary: Bearer …`.
    b"authorizationauxiliary",
    // JFrog Artifactory's `X-JFrog-Art-Api`.
    b"artapi",
    // A request's HMAC signature: Kraken's `API-Sign`, Coinbase's `CB-ACCESS-SIGN`,
    // OKX's `OK-ACCESS-SIGN`, KuCoin's `KC-API-SIGN`.
    b"sign",
];

/// Header names that end like a credential's and are not: a WebSocket handshake's
/// nonce, a retry's idempotency key, a CDN's cache keys.
const HEADER_NOT_SECRET: &[&[u8]] = &[
    b"secwebsocketkey",
    b"idempotencykey",
    b"xidempotencykey",
    b"surrogatekey",
    b"xcachekey",
    b"cachekey",
];

/// Endings of pagination and sync cursors and table keys, never a credential's (nor is
/// any name with `continuation` in it): Google's `pageToken` and `syncToken`, AWS's
/// `NextToken`, OData's and Microsoft Graph's `$skiptoken` and `$deltatoken`, X's
/// `pagination_token`, MongoDB's change streams' `resumeToken`, SharePoint's
/// `changeToken`. A client sends them back as an earlier answer gave them, which is
/// what replay's causal order reads.
const CURSOR_ENDINGS: &[&[u8]] = &[
    b"pagetoken",
    b"nexttoken",
    b"synctoken",
    b"skiptoken",
    b"deltatoken",
    b"paginationtoken",
    b"resumetoken",
    b"changetoken",
    b"partitionkey",
    b"rowkey",
];

/// Query parameters that are credentials under short names of their own: an Azure SAS
/// signature, Firebase's ID token, HubSpot's legacy key.
const QUERY_NAMES: &[&[u8]] = &[b"sig", b"auth", b"hapikey", b"apisig"];

/// Query parameters that are credentials on one service's hosts only: `appid` is
/// OpenWeatherMap's and Wolfram|Alpha's key, and Steam's game number elsewhere.
const QUERY_ON_HOSTS: &[(&str, &[u8])] = &[
    ("openweathermap.org", b"appid"),
    ("wolframalpha.com", b"appid"),
    // Last.fm's session key.
    ("audioscrobbler.com", b"sk"),
    ("last.fm", b"sk"),
];

/// Form fields that are credentials in a form body only: the signed JWT of an OAuth
/// token request's `assertion` (RFC 7521; Google's service-account flow sends one).
/// A JSON `assertion` is a test's or a tool's text.
const FORM_NAMES: &[&[u8]] = &[b"assertion"];

/// Endings that make a credential's query parameter (beside [`ENDINGS`]): presigned
/// URLs' `X-Amz-Signature`, `X-Goog-Signature`, CloudFront's `Signature`, and their
/// `X-Amz-Credential`.
const QUERY_ENDINGS: &[&[u8]] = &[b"signature", b"credential"];

/// Body fields that end like a credential's and are not: a bare `secret` names the
/// secret a tool is asked to read (`read_secret({"secret": "prod/db-password"})`), and
/// redacting it in the model's answer would make the tool's call that follows miss.
const FIELD_NOT_SECRET: &[&[u8]] = &[b"secret"];

/// Body fields that are credentials under a short name of their own: a Docker
/// registry's `auths.<host>.auth` and npm's `_auth` (base64 of `user:token`), which no
/// scan of the text finds.
const FIELD_NAMES: &[&[u8]] = &[b"auth"];

/// The last three bytes of every ending and name above.
const TAILS: &[[u8; 3]] = &[
    *b"key", *b"ken", *b"ret", *b"ord", *b"swd", *b"ase", *b"ion", *b"kie", *b"ure", *b"uth",
    *b"ial", *b"als", *b"sig", *b"pid", *b"ing", *b"ode", *b"ier", *b"api", *b"ary", *b"pwd",
    *b"ign", *b"oof",
];

/// A name as [`credential_name`] reads it: lower-cased, `-`, `_`, `.` and spaces dropped
/// (`[redact] keep` names are kept in this form).
pub fn normalise(name: &str) -> String {
    let mut buf = [0u8; MAX_NAME];
    let n = fold(effective(name.as_bytes()), &mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A name as it is compared: its [`effective`] part, folded.
struct Folded {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl Folded {
    /// `None` past [`MAX_NAME`] bytes as written.
    fn of(name: &[u8]) -> Option<Folded> {
        if name.len() > MAX_NAME {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        let len = fold(effective(name), &mut buf);
        Some(Folded { buf, len })
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes `name`'s folded form into `buf` (at most [`MAX_NAME`] bytes of it read).
fn fold(name: &[u8], buf: &mut [u8; MAX_NAME]) -> usize {
    let mut n = 0;
    for &b in name.iter().take(MAX_NAME) {
        if !is_separator(b) {
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    n
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.' | b' ')
}

/// Whether a name ends in `pwd` as a word of its own, a password's: after `_`, `-` or
/// `.` (`MYSQL_PWD`, `db-pwd`), or capitalised after a lower-case letter (`adminPwd`).
/// Not `pwd` alone nor glued to a word (the shell's `PWD` and `OLDPWD`, a path's
/// `cwd`/`pwd` in a tool's output).
fn pwd_word(name: &[u8]) -> bool {
    let n = name.len();
    n > 4
        && name[n - 3..].eq_ignore_ascii_case(b"pwd")
        && match name[n - 4] {
            b'_' | b'-' | b'.' => true,
            b => b.is_ascii_lowercase() && name[n - 3] == b'P',
        }
}

/// The part of a name that says what it holds: the last bracketed segment of a form's
/// `user[password]`, without the digits of Django's `password1`.
fn effective(name: &[u8]) -> &[u8] {
    let mut name = name;
    if let Some(inner) = name.strip_suffix(b"]") {
        if let Some(at) = inner.iter().rposition(|&b| b == b'[') {
            name = &inner[at + 1..];
        }
    }
    while let [rest @ .., last] = name {
        if last.is_ascii_digit() || is_separator(*last) {
            name = rest;
        } else {
            break;
        }
    }
    name
}

/// Whether `name` says its value is a credential (see the module's text), unless it is
/// one of `keep` (names in [`normalise`]d form that the user says are not).
pub fn credential_name(kind: NameKind, name: &[u8], keep: &[String]) -> bool {
    if !ends_like_credential(name) {
        return false;
    }
    let pwd = pwd_word(effective(name));
    let Some(folded) = Folded::of(name) else {
        return false;
    };
    let name = folded.bytes();
    if CURSOR_ENDINGS.iter().any(|e| name.ends_with(e))
        || name.windows(12).any(|w| w == b"continuation")
        || keep.iter().any(|k| k.as_bytes() == name)
    {
        return false;
    }
    let header = matches!(kind, NameKind::Header | NameKind::AnswerHeader);
    // CORS's `Access-Control-Allow-Credentials: true` and its kin.
    if header && name.starts_with(b"accesscontrol") {
        return false;
    }
    if pwd || ENDINGS.iter().any(|e| name.ends_with(e)) {
        return !(kind == NameKind::Field && FIELD_NOT_SECRET.contains(&name));
    }
    match kind {
        NameKind::Header => {
            !HEADER_NOT_SECRET.contains(&name) && HEADER_ENDINGS.iter().any(|e| name.ends_with(e))
        }
        NameKind::AnswerHeader => false,
        NameKind::Query => {
            QUERY_NAMES.contains(&name) || QUERY_ENDINGS.iter().any(|e| name.ends_with(e))
        }
        NameKind::Field => FIELD_NAMES.contains(&name),
    }
}

/// Whether a value found only by its name's reading is scrubbed from the rest of the
/// exchange too: at least 8 bytes of two kinds of characters (lower and upper case,
/// digits, others), or 16 bytes of any, as keys, tokens and most passwords are.
/// Such a value is redacted where it stands either way; but `POSTGRES_PASSWORD=postgres`
/// would otherwise turn every `postgres` of a Kubernetes answer (the image, the app's
/// label the agent selects pods by) into `[REDACTED]`. Values under listed names are
/// scrubbed from 8 bytes, whatever they hold.
pub fn looks_like_credential(value: &str) -> bool {
    let v = value.trim();
    v.len() >= 8 && (kinds_of(v.as_bytes()) >= 2 || v.len() >= 16)
}

/// Whether a name ends as some credential's does ([`credential_name`]'s and
/// [`token_field_name`]'s): most names do not, and their last three bytes tell (every
/// ending has three), before the name is folded.
pub fn ends_like_credential(name: &[u8]) -> bool {
    let mut tail = [0u8; 3];
    let mut got = 0;
    for &b in effective(name).iter().rev() {
        if !is_separator(b) {
            got += 1;
            tail[3 - got] = b.to_ascii_lowercase();
            if got == 3 {
                break;
            }
        }
    }
    got == 3 && tail.iter().all(u8::is_ascii_lowercase) && {
        let at = tail_index(tail);
        TAIL_SET[at / 64] & (1 << (at % 64)) != 0
    }
}

/// Where a tail of three lower-case letters stands in [`TAIL_SET`].
const fn tail_index(t: [u8; 3]) -> usize {
    ((t[0] - b'a') as usize * 26 + (t[1] - b'a') as usize) * 26 + (t[2] - b'a') as usize
}

/// [`TAILS`] as a set of bits (every one is three lower-case letters), read without a
/// search.
static TAIL_SET: [u64; 26 * 26 * 26 / 64 + 1] = {
    let mut set = [0u64; 26 * 26 * 26 / 64 + 1];
    let mut i = 0;
    while i < TAILS.len() {
        let at = tail_index(TAILS[i]);
        set[at / 64] |= 1 << (at % 64);
        i += 1;
    }
    set
};

/// Whether a body field's name ends in `token` without saying more (`invite_token`,
/// `reset_token`, `upload_token`, `csrf_token`; not a bare `token`, a logprob's text,
/// nor a cursor's name): its string value is a credential when it looks like a key of
/// its own ([`key_like`]), and an ordinary value otherwise (a tokenizer's
/// `"eos_token": "</s>"`).
pub fn token_field_name(name: &[u8], keep: &[String]) -> bool {
    // Most names do not end in `token`: told before the name is folded.
    let e = effective(name);
    if e.len() < 5 || !e[e.len() - 5..].eq_ignore_ascii_case(b"token") {
        return false;
    }
    let Some(folded) = Folded::of(name) else {
        return false;
    };
    let name = folded.bytes();
    name.len() > 5
        && name.ends_with(b"token")
        && !CURSOR_ENDINGS.iter().any(|e| name.ends_with(e))
        && !name.starts_with(b"next")
        && !CURSOR_WORDS
            .iter()
            .any(|w| name.windows(w.len()).any(|x| x == *w))
        && !keep.iter().any(|k| k.as_bytes() == name)
}

/// Words that make a name ending in `token` a cursor's or a position's, never a key's
/// (`next_cursor_token`, `page_state_token`, `sync_state_token`, `watermark_token`): a
/// client sends it back as an answer gave it, and two pages redacted alike would be
/// served in recorded order whatever the client asked for. Names starting with `next`
/// are cursors too.
const CURSOR_WORDS: &[&[u8]] = &[
    b"cursor",
    b"page",
    b"paging",
    b"pagin",
    b"sync",
    b"delta",
    b"skip",
    b"resume",
    b"continuation",
    b"watermark",
    b"checkpoint",
    b"offset",
    b"marker",
];

/// The longest value [`key_like`] takes for a key: a signed token (a JWT with its claims,
/// an STS session token) runs to one or two KiB; a longer run of a token's alphabet is
/// data (an image in base64), not a key.
pub const MAX_KEY_LIKE: usize = 4096;

/// Whether a value looks like a key of its own: 16 to 4096 bytes of a token's alphabet
/// (letters, digits, `-`, `_`, `.`, `~`, `+`, `=`; no `/`, space, quote or escape, so
/// the value reads the same in JSON as written and as meant) with three kinds of
/// characters among lower case, upper case, digits and the others; or 32 to 128 hex
/// digits with a letter and a digit (`secrets.token_hex()`, Ruby's `SecureRandom.hex`);
/// or standard base64 with a `/`, padded (Rails' `authenticity_token`, 32 random bytes:
/// see [`padded_base64`]) or random-looking without padding ([`unpadded_base64`]).
/// A word, a path, a date, a tokenizer's `<|endoftext|>` is not one, nor a `0x` hex
/// number (an Ethereum address or transaction: 0x's `sellToken=0x6B17…` names an asset,
/// and two assets redacted alike would get one another's prices at replay).
pub fn key_like(value: &[u8]) -> bool {
    if value.starts_with(b"0x") && value[2..].iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    if (32..=128).contains(&value.len())
        && value.iter().all(u8::is_ascii_hexdigit)
        && value.iter().any(u8::is_ascii_digit)
        && value.iter().any(u8::is_ascii_alphabetic)
    {
        return true;
    }
    if value.contains(&b'/') {
        return padded_base64(value) || unpadded_base64(value);
    }
    (16..=MAX_KEY_LIKE).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+=".contains(b))
        && kinds_of(value) >= 3
}

/// Standard base64 of random bytes as a token is written: 20 to 4096 bytes, a multiple
/// of four, letters, digits, `+` and `/` with one or two `=` of padding at the end, and
/// lower case, upper case and digits all present. A path has no padding (`a/b/C1-D2`,
/// `Users/Ada/Report2024`), so it is not one.
fn padded_base64(value: &[u8]) -> bool {
    let body = value
        .strip_suffix(b"==")
        .or_else(|| value.strip_suffix(b"="));
    let Some(body) = body else {
        return false;
    };
    (20..=MAX_KEY_LIKE).contains(&value.len())
        && value.len().is_multiple_of(4)
        && in_base64(body)
        && body.iter().any(u8::is_ascii_lowercase)
        && body.iter().any(u8::is_ascii_uppercase)
        && body.iter().any(u8::is_ascii_digit)
}

/// Whether every byte is of standard base64's alphabet (padding aside): letters,
/// digits, `+` and `/`.
fn in_base64(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Standard base64 of random bytes written without padding (24 or 48 bytes: 32 or 64
/// characters): 24 to 4096 bytes, a multiple of four, letters, digits, `+` and `/`, three
/// kinds of characters ([`kinds_of`]: `+` and `/` count as one), and random: between neighbours inside a
/// segment (between `/`s), the kind of character changes at least two times in five
/// (about 64 % in random base64; a path's words and names, `src/main/java/App1Go`, 25 %).
/// One random token in a hundred changes less often and is not taken for one.
fn unpadded_base64(value: &[u8]) -> bool {
    if !(24..=MAX_KEY_LIKE).contains(&value.len())
        || !value.len().is_multiple_of(4)
        || !in_base64(value)
        || kinds_of(value) < 3
    {
        return false;
    }
    let kind = |b: u8| match b {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let (mut pairs, mut changes) = (0usize, 0usize);
    for w in value.windows(2) {
        if w[0] != b'/' && w[1] != b'/' {
            pairs += 1;
            changes += usize::from(kind(w[0]) != kind(w[1]));
        }
    }
    changes * 5 >= pairs * 2
}

/// How many kinds of characters a value holds, among lower case, upper case, digits and
/// the others.
pub fn kinds_of(value: &[u8]) -> usize {
    [
        value.iter().any(u8::is_ascii_lowercase),
        value.iter().any(u8::is_ascii_uppercase),
        value.iter().any(u8::is_ascii_digit),
        value.iter().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|k| **k)
    .count()
}

/// Endings of names that hold a credential even in a model's tool-call arguments (JSON
/// written in a string), where a `license_key` or `app_key` is an identifier the agent
/// carries into a URL: a token, a secret, a password, an API key (`x-api-key` in an HTTP
/// tool's headers), a private or secret key, a cookie.
const STRONG_ENDINGS: &[&[u8]] = &[
    b"token",
    b"secret",
    b"password",
    b"passwordconfirmation",
    b"apikey",
    b"cookie",
    b"servicerolekey",
    b"masterkey",
    b"adminkey",
    b"passwd",
    b"passphrase",
    b"passcode",
    b"privatekey",
    b"secretkey",
    b"signingkey",
    b"accesskey",
    b"connectionstring",
    b"authorization",
    b"clientassertion",
    b"codeverifier",
];

/// Whether a body field's name says it holds a credential strongly enough to be read in
/// a model's tool-call arguments too (see [`STRONG_ENDINGS`]).
pub fn strong_field_name(name: &[u8], keep: &[String]) -> bool {
    credential_name(NameKind::Field, name, keep)
        && (pwd_word(effective(name))
            || Folded::of(name)
                .is_some_and(|f| STRONG_ENDINGS.iter().any(|e| f.bytes().ends_with(e))))
}

/// Whether a form body's field is a credential by a name only forms give one
/// ([`FORM_NAMES`]), unless the user keeps it.
pub fn form_credential_name(name: &[u8], keep: &[String]) -> bool {
    let Some(folded) = Folded::of(name) else {
        return false;
    };
    let name = folded.bytes();
    FORM_NAMES.contains(&name) && !keep.iter().any(|k| k.as_bytes() == name)
}

/// Whether a query parameter is a credential on this host (lower-case, no port) by a
/// rule of that service's own ([`QUERY_ON_HOSTS`]).
pub fn query_credential_on(host: &str, name: &[u8], keep: &[String]) -> bool {
    let Some(folded) = Folded::of(name) else {
        return false;
    };
    let name = folded.bytes();
    !keep.iter().any(|k| k.as_bytes() == name)
        && QUERY_ON_HOSTS.iter().any(|(h, q)| {
            *q == name
                && host
                    .strip_suffix(h)
                    .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: &str) -> bool {
        credential_name(NameKind::Header, n.as_bytes(), &[])
    }
    fn query(n: &str) -> bool {
        credential_name(NameKind::Query, n.as_bytes(), &[])
    }
    fn field(n: &str) -> bool {
        credential_name(NameKind::Field, n.as_bytes(), &[])
    }

    #[test]
    fn tool_api_headers_are_credentials() {
        for n in [
            "xi-api-key",
            "Ocp-Apim-Subscription-Key",
            "X-RapidAPI-Key",
            "X-OpenAI-Api-Key",
            "X-Cohere-Api-Key",
            "X-Vault-Token",
            "DD-API-KEY",
            "DD-APPLICATION-KEY",
            "apikey",
            "Private-Token",
            "X-Auth-Token",
            "X-Auth-Key",
            "X-Shopify-Access-Token",
            "X-Figma-Token",
            "X-Postmark-Server-Token",
            "X-CMC_PRO_API_KEY",
            "x-apikey",
            "X-Sentry-Auth",
            "X-Hasura-Admin-Secret",
            "Cf-Access-Client-Secret",
            "x-functions-key",
            "x-ms-token-aad-id-token",
            "x-amz-server-side-encryption-customer-key",
            "Stripe-Signature",
            "X-CSRF-Token",
            "Authentication",
            "x-ms-authorization-auxiliary",
            "X-JFrog-Art-Api",
            "X-Api-Key-2",
            "API-Sign",
            "CB-ACCESS-SIGN",
            "OK-ACCESS-SIGN",
            "KC-API-SIGN",
        ] {
            assert!(header(n), "{n} should be a credential header");
        }
    }

    #[test]
    fn ordinary_headers_are_not() {
        for n in [
            "Sec-WebSocket-Key",
            "Idempotency-Key",
            "Surrogate-Key",
            "X-Cache-Key",
            "Access-Control-Allow-Credentials",
            "Access-Control-Allow-Headers",
            "x-ratelimit-remaining-tokens",
            "anthropic-ratelimit-output-tokens-reset",
            "x-stainless-retry-count",
            "openai-organization",
            "www-authenticate",
            "x-goog-next-page-token",
            "content-type",
            "keep-alive",
            "x-amz-server-side-encryption-customer-key-md5",
            "x-ms-continuation-NextPartitionKey",
            "x-ms-continuation-NextRowKey",
            "x-ms-continuation",
            "",
        ] {
            assert!(!header(n), "{n} should not be a credential header");
        }
        // An answer's header is read by the compound endings only.
        let answer = |n: &str| credential_name(NameKind::AnswerHeader, n.as_bytes(), &[]);
        assert!(answer("X-Subject-Auth-Token"));
        assert!(answer("set-cookie"));
        for n in [
            "x-cache-key",
            "X-Request-Token",
            "x-amzn-signature",
            "x-auth",
        ] {
            assert!(!answer(n), "{n} should not be read in an answer");
        }
    }

    #[test]
    fn presigned_and_tool_query_parameters_are_credentials() {
        for n in [
            "X-Amz-Security-Token",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Goog-Signature",
            "Signature",
            "sig",
            "auth",
            "app_key",
            "application_key",
            "license_key",
            "auth_key",
            "code_verifier",
            "user[password]",
            "access_key",
            "private_token",
            "auth_token",
            "id_token",
            "api-key",
            "hapikey",
            "api_sig",
            "appsecret_proof",
        ] {
            assert!(query(n), "{n} should be a credential parameter");
        }
        for n in [
            "pageToken",
            "page_token",
            "nextToken",
            "key_id",
            "sort_key",
            "code",
            "sk",
            "assertion",
        ] {
            assert!(!query(n), "{n} should not be a credential parameter");
        }
        // Last.fm's session key, on Last.fm's hosts only.
        assert!(query_credential_on("ws.audioscrobbler.com", b"sk", &[]));
        assert!(!query_credential_on("api.example.com", b"sk", &[]));
        assert!(!query_credential_on(
            "ws.audioscrobbler.com",
            b"sk",
            &["sk".into()]
        ));
    }

    #[test]
    fn a_name_ending_in_token_is_a_possible_key_unless_it_names_a_cursor() {
        for n in [
            "invite_token",
            "csrf_token",
            "resetToken",
            "upload-token",
            "ClientRequestToken",
        ] {
            assert!(token_field_name(n.as_bytes(), &[]), "{n}");
        }
        for n in [
            "token",
            "tokens",
            "max_tokens",
            "nextPageToken",
            "page_token",
            "NextToken",
            "syncToken",
            "nextSyncToken",
            "$skiptoken",
            "$deltatoken",
            "pagination_token",
            "resumeToken",
            "changeToken",
            "continuationToken",
            "next_cursor_token",
            "cursor_token",
            "page_state_token",
            "sync_state_token",
            "watermark_token",
            "nextLinkToken",
        ] {
            assert!(!token_field_name(n.as_bytes(), &[]), "{n}");
        }
        assert!(!token_field_name(b"invite_token", &["invitetoken".into()]));
        assert!(key_like(b"CPDAlvWDx70CEPDAlvWDx70CGAU="));
        assert!(!key_like(b"<|endoftext|>"));
        assert!(!key_like(b"2026-12-05T03:15:31Z"));
        // Hex tokens are keys; `0x` addresses and hashes are not.
        assert!(key_like(
            b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ));
        assert!(!key_like(b"0x6B175474E89094C44Da98b954EedeAC495271d0F"));
        assert!(!key_like(b"0123456789abcdef"));
        assert!(!key_like(b"deadbeefdeadbeefdeadbeefdeadbeef"));
        // Padded standard base64 with a `/` is a key (Rails' CSRF tokens); a path is not.
        assert!(key_like(b"WZIB7UIbF/OwgqfNDIqa8ubp1cTsLvP5baUtfuSW7XA="));
        assert!(key_like(b"bK3z2Np6Ntzy0FObi+W5XSCYG9KJH6MCixV4zoop/sg="));
        for path in [
            &b"a/b/C1-D2-e3-f4-g5-h6"[..],
            b"Users/Ada/Report2024/Q1",
            b"uploads/2026/12/Photo1.jpg=",
            b"WZIB7UIbF/OwgqfNDIqa8ubp1cTsLvP5baUtfuSW7XA",
            b"src/main/java/Com/Example/App1Go",
            b"api/V2/Users/u123/Orders/Ord4567",
            b"2024/12/05/IMG0042Ab/Thumb1Q",
        ] {
            assert!(!key_like(path), "{}", String::from_utf8_lossy(path));
        }
        // Unpadded standard base64 of 24 and 48 random bytes, with a `/`, is a key too.
        assert!(key_like(b"q0Rk7Hc/3TfZbW1xPm9YvLa2Ns8Ge4Ju"));
        assert!(key_like(
            b"/Hn4cX2QkKUsvm0rjxpcwl4bt+mxuVo8PS9fDp+OfWxbSjkoFwb15NPCsaCfjn1s"
        ));
    }

    #[test]
    fn fields_take_only_compound_endings() {
        for n in [
            "openai_api_key",
            "apiKey",
            "api-key",
            "authorization_token",
            "Authorization",
            "Cookie",
            "client_secret",
            "db_password",
            "password1",
            "user[password_confirmation]",
            "github_token",
            "service_role_key",
            "writeKey",
            "connection_string",
            "SecretString",
            "SecretBinary",
            "client_assertion",
            "private_key",
            "id_token",
            "secret_access_key",
            "SessionToken",
            "appsecret_proof",
            "auth",
            "_auth",
            "MYSQL_PWD",
            "db-pwd",
            "adminPwd",
            "smtp.pwd",
        ] {
            assert!(field(n), "{n} should be a credential field");
        }
        for n in [
            "token",
            "signature",
            "thoughtSignature",
            "max_tokens",
            "nextPageToken",
            "NextToken",
            "continuationToken",
            "prompt_cache_key",
            "idempotency_key",
            "key",
            "sig",
            "appid",
            "secret",
            "secret_name",
            "pwd",
            "PWD",
            "OLDPWD",
            "_pwd",
            "cwd_pwd_x",
            "oldpwd",
            "eos_token",
            "PartitionKey",
            "assertion",
            "design",
            "oauth",
            "auths",
        ] {
            assert!(!field(n), "{n} should not be a credential field");
        }
        // An OAuth token request's `assertion` (a signed JWT), in a form body only.
        assert!(form_credential_name(b"assertion", &[]));
        assert!(!form_credential_name(b"assertion", &["assertion".into()]));
        assert!(!form_credential_name(b"assertions", &[]));
    }

    #[test]
    fn a_name_past_the_cap_is_not_read() {
        let fits = format!("{}_api_key", "x".repeat(MAX_NAME - 8));
        assert!(field(&fits));
        let long = format!("{}_api_key", "x".repeat(MAX_NAME - 7));
        assert!(!field(&long));
    }

    #[test]
    fn every_ending_has_its_tail_listed() {
        for e in ENDINGS
            .iter()
            .chain(HEADER_ENDINGS)
            .chain(QUERY_NAMES)
            .chain(QUERY_ENDINGS)
        {
            let tail: [u8; 3] = e[e.len() - 3..].try_into().unwrap();
            assert!(TAILS.contains(&tail), "{}", String::from_utf8_lossy(e));
        }
    }

    #[test]
    fn only_values_shaped_like_keys_are_scrubbed_elsewhere() {
        for v in [
            "sk-proj-0123456789ab",
            "hvs.CAESIJ4x9k2lmn",
            "ghs_16C7e42F292c6912E77",
            "CorrectHorseBatteryStaple",
            "rootpass123",
            "correcthorsebatterystaple",
        ] {
            assert!(looks_like_credential(v), "{v}");
        }
        for v in [
            "postgres",
            "production",
            "changeme",
            "abcdefghijk",
            "1234567",
        ] {
            assert!(!looks_like_credential(v), "{v}");
        }
        assert!(strong_field_name(b"github_token", &[]));
        assert!(strong_field_name(b"db_password", &[]));
        assert!(strong_field_name(b"private_key", &[]));
        assert!(!strong_field_name(b"license_key", &[]));
        assert!(!strong_field_name(b"app_key", &[]));
        assert!(!strong_field_name(b"secret", &[]));
    }

    #[test]
    fn kept_names_are_not_read_as_credentials() {
        let keep = [normalise("X-Tenant-Key"), normalise("session_token")];
        assert!(!credential_name(NameKind::Header, b"x-tenant-key", &keep));
        assert!(!credential_name(NameKind::Field, b"sessionToken", &keep));
        assert!(credential_name(NameKind::Header, b"x-api-key", &keep));
    }
}
