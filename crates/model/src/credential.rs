//! Names that say their value is a credential, whatever the API.
//!
//! The default redaction lists name what the LLM providers and the big clouds send. The
//! tools an agent calls send their keys under names of their own: ElevenLabs'
//! `xi-api-key`, Azure's `Ocp-Apim-Subscription-Key` (Bing search), RapidAPI's
//! `X-RapidAPI-Key`, Weaviate's `X-OpenAI-Api-Key`, Vault's `X-Vault-Token`, an S3
//! presigned URL's `X-Amz-Security-Token` and `X-Amz-Signature`, an Azure SAS URL's
//! `sig`, Wolfram|Alpha's and OpenWeatherMap's `appid`, the `authorization_token` of
//! Anthropic's MCP connector and the `headers.Authorization` of OpenAI's MCP tool in a
//! request body. No list keeps up with them, so a name is also read for what it says:
//! lower-cased, with `-`, `_`, `.` and spaces dropped, a name that ends in `apikey`,
//! `accesstoken`, `secret`, `password` and the like is a credential's
//! ([`credential_name`]).
//!
//! Each kind of name reads a little differently. A body field named `token` is a
//! logprob's text and `signature` is Claude's thinking signature, and a `pageToken`
//! carries the next page, not a credential; so fields and query parameters take only the
//! compound endings. A request header whose name ends in `key` or `token` is a
//! credential in practice, save the few listed in [`HEADER_NOT_SECRET`].

/// What kind of name [`credential_name`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Header,
    Query,
    /// A JSON, form, multipart or XML field.
    Field,
}

/// The longest name read, in bytes as written; a longer name is not taken for a
/// credential's (a streaming scanner holds back this much of a key to compare it).
pub const MAX_NAME: usize = 64;

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
    b"accesskey",
    b"secretkey",
    b"privatekey",
    b"signingkey",
    b"subscriptionkey",
    b"secret",
    b"password",
    b"passwd",
    b"passphrase",
    b"authorization",
    b"cookie",
];

/// Endings that make a credential's name in a header (beside [`ENDINGS`]).
const HEADER_ENDINGS: &[&[u8]] = &[
    b"key",
    b"token",
    b"auth",
    b"signature",
    b"credential",
    b"credentials",
];

/// Header names that end like a credential's and are not: a WebSocket handshake's
/// nonce, a retry's idempotency key, a CDN's cache keys, pagination cursors.
const HEADER_NOT_SECRET: &[&[u8]] = &[
    b"secwebsocketkey",
    b"idempotencykey",
    b"xidempotencykey",
    b"surrogatekey",
    b"xcachekey",
    b"cachekey",
];

/// Endings of pagination cursors, never a credential's.
const CURSOR_ENDINGS: &[&[u8]] = &[b"pagetoken", b"nexttoken", b"continuationtoken"];

/// Query parameters that are credentials under short names of their own: an Azure SAS
/// signature, Wolfram|Alpha's and OpenWeatherMap's key, Firebase's ID token, HubSpot's
/// legacy key.
const QUERY_NAMES: &[&[u8]] = &[b"sig", b"appid", b"auth", b"hapikey"];

/// Endings that make a credential's query parameter (beside [`ENDINGS`]): presigned
/// URLs' `X-Amz-Signature`, `X-Goog-Signature`, CloudFront's `Signature`, and their
/// `X-Amz-Credential`.
const QUERY_ENDINGS: &[&[u8]] = &[b"signature", b"credential"];

/// The last three bytes of every ending and name above.
const TAILS: &[[u8; 3]] = &[
    *b"key", *b"ken", *b"ret", *b"ord", *b"swd", *b"ase", *b"ion", *b"kie", *b"ure", *b"uth",
    *b"ial", *b"als", *b"sig", *b"pid",
];

/// A name as [`credential_name`] reads it: lower-cased, `-`, `_`, `.` and spaces dropped
/// (`[redact] keep` names are kept in this form).
pub fn normalise(name: &str) -> String {
    let mut buf = [0u8; MAX_NAME];
    let n = fold(name.as_bytes(), &mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
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

/// Whether `name` says its value is a credential (see the module's text), unless it is
/// one of `keep` (names in [`normalise`]d form that the user says are not).
pub fn credential_name(kind: NameKind, name: &[u8], keep: &[String]) -> bool {
    if name.len() > MAX_NAME {
        return false;
    }
    // Most names end unlike any credential's: their last three bytes tell (every ending
    // has three), before the name is folded.
    let mut tail = [0u8; 3];
    let mut got = 0;
    for &b in name.iter().rev() {
        if !is_separator(b) {
            got += 1;
            tail[3 - got] = b.to_ascii_lowercase();
            if got == 3 {
                break;
            }
        }
    }
    if got < 3 || !TAILS.contains(&tail) {
        return false;
    }
    let mut buf = [0u8; MAX_NAME];
    let n = fold(name, &mut buf);
    let name = &buf[..n];
    if CURSOR_ENDINGS.iter().any(|e| name.ends_with(e)) || keep.iter().any(|k| k.as_bytes() == name)
    {
        return false;
    }
    if ENDINGS.iter().any(|e| name.ends_with(e)) {
        // CORS's `Access-Control-Allow-Credentials: true` and its kin.
        return !(kind == NameKind::Header && name.starts_with(b"accesscontrol"));
    }
    match kind {
        NameKind::Header => {
            !name.starts_with(b"accesscontrol")
                && !HEADER_NOT_SECRET.contains(&name)
                && HEADER_ENDINGS.iter().any(|e| name.ends_with(e))
        }
        NameKind::Query => {
            QUERY_NAMES.contains(&name) || QUERY_ENDINGS.iter().any(|e| name.ends_with(e))
        }
        NameKind::Field => false,
    }
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
            "",
        ] {
            assert!(!header(n), "{n} should not be a credential header");
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
            "appid",
            "app_id",
            "auth",
            "access_key",
            "private_token",
            "auth_token",
            "id_token",
            "api-key",
            "hapikey",
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
        ] {
            assert!(!query(n), "{n} should not be a credential parameter");
        }
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
            "secret",
            "db_password",
            "private_key",
            "id_token",
            "secret_access_key",
            "SessionToken",
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
        ] {
            assert!(!field(n), "{n} should not be a credential field");
        }
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
    fn kept_names_are_not_read_as_credentials() {
        let keep = [normalise("X-Tenant-Key"), normalise("session_token")];
        assert!(!credential_name(NameKind::Header, b"x-tenant-key", &keep));
        assert!(!credential_name(NameKind::Field, b"sessionToken", &keep));
        assert!(credential_name(NameKind::Header, b"x-api-key", &keep));
    }
}
