//! Bearer tokens for an attempt's `Authorization` header (cloud-tasks-api.md §6.6).
//!
//! [`request::build`](crate::request::build) says which token an attempt needs as an
//! [`Auth`]; the dispatcher asks a [`TokenSource`] for it with [`TokenSource::bearer`] once per
//! attempt:
//!
//! - OIDC: an ID token signed with Stratus's own [`SigningKey`] (see [`crate::oidc`]). Signing
//!   costs about a millisecond, so tokens are cached per (service account, audience) and reused
//!   while more than [`REFRESH_MARGIN`] of validity remains.
//! - OAuth: Stratus cannot mint Google OAuth access tokens. The operator can configure an
//!   [`OAuthSource`]: a static token, or a command that prints one (for example
//!   `gcloud auth print-access-token`), rerun every `refresh`. Without one the request goes out
//!   without an `Authorization` header and a warning is logged once.

use std::collections::HashMap;
use std::fmt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stratus_types::Micros;
use stratus_types::time::{Clock, SECOND};

use crate::oidc::{Claims, DEFAULT_TOKEN_LIFETIME, OidcError, SigningKey};
use crate::request::Auth;

/// A cached OIDC token is reused only while more than this much validity remains (or half the
/// configured lifetime, when that is shorter), so receivers never see a token about to expire.
pub const REFRESH_MARGIN: Micros = 5 * 60 * SECOND;

/// At most this many OIDC tokens are cached; when full, expiring entries are dropped, and if
/// that is not enough the whole cache is cleared.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// How long an OAuth token command may run before it is killed and the attempt fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A sensible `refresh` for [`OAuthSource::Command`]: Google access tokens live one hour, so
/// refreshing every 30 minutes keeps every token sent valid for at least 30 more.
pub const DEFAULT_OAUTH_REFRESH: Micros = 30 * 60 * SECOND;

/// After a token command fails, attempts in the next this-many µs fail with the same error
/// instead of rerunning it (a broken command would otherwise run once per attempt).
const COMMAND_FAILURE_HOLD: Micros = 5 * SECOND;

/// At most this many bytes of a failing command's stderr go into the error message.
const STDERR_LIMIT: usize = 512;

/// Where OAuth access tokens come from.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum OAuthSource {
    /// Nowhere: OAuth tasks are dispatched without an `Authorization` header (with a warning).
    #[default]
    None,
    /// This token, for every service account and scope.
    Static(String),
    /// The trimmed standard output of this program, for every service account and scope; rerun
    /// when the last token is `refresh` old. Runs at most [`COMMAND_TIMEOUT`].
    Command {
        /// The program (looked up in `PATH` when it has no `/`).
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// How long a printed token is used before the program is run again.
        refresh: Micros,
    },
}

impl fmt::Debug for OAuthSource {
    /// Like a derived `Debug`, but a static token is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Static(_) => f.write_str("Static(<redacted>)"),
            Self::Command {
                program,
                args,
                refresh,
            } => f
                .debug_struct("Command")
                .field("program", program)
                .field("args", args)
                .field("refresh", refresh)
                .finish(),
        }
    }
}

/// Configuration of a [`TokenSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The `iss` claim of OIDC tokens; also the base URL of the discovery documents.
    pub issuer: String,
    /// How long an OIDC token is valid (`exp` - `iat`); [`DEFAULT_TOKEN_LIFETIME`] (one hour)
    /// by default.
    pub token_lifetime: Micros,
    /// Where OAuth access tokens come from.
    pub oauth: OAuthSource,
}

impl AuthConfig {
    /// A configuration with issuer `issuer`, one-hour OIDC tokens and no OAuth source.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            oauth: OAuthSource::None,
        }
    }
}

/// Why no token could be produced; the attempt fails with this reason.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// An OIDC token was asked for but the [`TokenSource`] has no signing key.
    #[error(
        "the task asks for an oidc token but no oidc signing key is configured, so none can be \
         signed; configure a signing key file to dispatch tasks with oidc_token"
    )]
    NoSigningKey,
    /// Signing the OIDC token failed.
    #[error("signing the oidc token failed: {0}")]
    Sign(#[from] OidcError),
    /// The static OAuth token is not usable in an HTTP header.
    #[error(
        "the configured static oauth token is not a valid bearer token (empty, or contains \
         whitespace or non-ascii characters)"
    )]
    InvalidStaticToken,
    /// The OAuth token command failed: could not start, timed out, exited unsuccessfully or
    /// printed no usable token.
    #[error("oauth token command {program:?} failed: {reason}")]
    Command {
        /// The program configured.
        program: String,
        /// What went wrong, with the command's stderr (truncated) when it exited unsuccessfully.
        reason: String,
    },
}

#[derive(Debug)]
struct CachedToken {
    token: String,
    /// `iat`, µs (whole seconds).
    issued_at: Micros,
    /// `exp`, µs (whole seconds).
    expires_at: Micros,
}

#[derive(Debug)]
enum CommandState {
    Token { token: String, until: Micros },
    Failed { reason: String, until: Micros },
}

/// Hands out the bearer token for each attempt's [`Auth`]; share it behind an `Arc`.
///
/// Safe for concurrent use: the OIDC cache sits behind a [`std::sync::Mutex`] that is never
/// held across an `await` (signing happens outside it, so concurrent misses for the same key
/// may each sign, which is harmless); the OAuth command runs one at a time, and attempts that
/// need it meanwhile wait for its result.
pub struct TokenSource {
    cfg: AuthConfig,
    key: Option<Arc<SigningKey>>,
    clock: Arc<dyn Clock>,
    oidc_cache: Mutex<HashMap<(String, String), CachedToken>>,
    command: tokio::sync::Mutex<Option<CommandState>>,
    warned_no_oauth: AtomicBool,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("cfg", &self.cfg)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A token source signing OIDC tokens with `key` (none: OIDC tasks fail with
    /// [`AuthError::NoSigningKey`]) and reading the time from `clock`.
    pub fn new(cfg: AuthConfig, key: Option<Arc<SigningKey>>, clock: Arc<dyn Clock>) -> Self {
        Self {
            cfg,
            key,
            clock,
            oidc_cache: Mutex::new(HashMap::new()),
            command: tokio::sync::Mutex::new(None),
            warned_no_oauth: AtomicBool::new(false),
        }
    }

    /// The configuration this source was built with.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// The token to send as `Authorization: Bearer <token>` for `auth`, or `None` when no
    /// header is to be sent (OAuth without a configured [`OAuthSource`]).
    pub async fn bearer(&self, auth: &Auth) -> Result<Option<String>, AuthError> {
        match auth {
            Auth::Oidc {
                service_account_email,
                audience,
            } => self.oidc(service_account_email, audience).map(Some),
            Auth::OAuth {
                service_account_email,
                scope,
            } => match &self.cfg.oauth {
                OAuthSource::None => {
                    if !self.warned_no_oauth.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            service_account_email = %service_account_email,
                            scope = %scope,
                            "a task asks for an oauth access token, but Stratus cannot mint \
                             Google OAuth tokens: such tasks are dispatched without an \
                             Authorization header. Configure an OAuth token source, either a \
                             static token or a command printing one (for example \
                             `gcloud auth print-access-token`). Logged once."
                        );
                    }
                    Ok(None)
                }
                OAuthSource::Static(token) => {
                    if valid_token(token) {
                        Ok(Some(token.clone()))
                    } else {
                        Err(AuthError::InvalidStaticToken)
                    }
                }
                OAuthSource::Command {
                    program,
                    args,
                    refresh,
                } => self.command_token(program, args, *refresh).await.map(Some),
            },
        }
    }

    /// How much validity a cached OIDC token must still have to be reused.
    fn margin(&self) -> Micros {
        REFRESH_MARGIN.min(self.cfg.token_lifetime / 2)
    }

    fn oidc(&self, email: &str, audience: &str) -> Result<String, AuthError> {
        let key = self.key.as_deref().ok_or(AuthError::NoSigningKey)?;
        let now = self.clock.now();
        let margin = self.margin();
        let cache_key = (email.to_owned(), audience.to_owned());
        {
            let cache = self
                .oidc_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = cache.get(&cache_key)
                && t.issued_at <= now
                && t.expires_at.saturating_sub(now) > margin
            {
                return Ok(t.token.clone());
            }
        }
        let claims = Claims {
            issuer: &self.cfg.issuer,
            audience,
            service_account_email: email,
            issued_at: now,
            lifetime: self.cfg.token_lifetime,
        };
        let token = key.sign_id_token(&claims)?;
        // The claims hold whole seconds; cache what the receiver will check.
        let issued_at = now.div_euclid(SECOND) * SECOND;
        let expires_at = now
            .saturating_add(self.cfg.token_lifetime)
            .div_euclid(SECOND)
            * SECOND;
        let mut cache = self
            .oidc_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_TOKENS && !cache.contains_key(&cache_key) {
            cache.retain(|_, t| t.expires_at.saturating_sub(now) > margin);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(
            cache_key,
            CachedToken {
                token: token.clone(),
                issued_at,
                expires_at,
            },
        );
        Ok(token)
    }

    async fn command_token(
        &self,
        program: &str,
        args: &[String],
        refresh: Micros,
    ) -> Result<String, AuthError> {
        let failed = |reason: String| AuthError::Command {
            program: program.to_owned(),
            reason,
        };
        let mut state = self.command.lock().await;
        let now = self.clock.now();
        match &*state {
            Some(CommandState::Token { token, until }) if now < *until => {
                return Ok(token.clone());
            }
            Some(CommandState::Failed { reason, until }) if now < *until => {
                return Err(failed(reason.clone()));
            }
            _ => {}
        }
        let result = run_command(program, args).await;
        let now = self.clock.now();
        match result {
            Ok(token) => {
                *state = Some(CommandState::Token {
                    token: token.clone(),
                    until: now.saturating_add(refresh),
                });
                Ok(token)
            }
            Err(reason) => {
                tracing::warn!(program, %reason, "oauth token command failed");
                *state = Some(CommandState::Failed {
                    reason: reason.clone(),
                    until: now.saturating_add(COMMAND_FAILURE_HOLD),
                });
                Err(failed(reason))
            }
        }
    }
}

/// Whether `token` can follow `Bearer ` in a header: non-empty visible ASCII.
fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs the token command; the token, or why there is none.
async fn run_command(program: &str, args: &[String]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "timed out after {} s (killed)",
                COMMAND_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("could not run it: {e}")),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = truncate(stderr.trim(), STDERR_LIMIT);
        return Err(if stderr.is_empty() {
            format!("{} (no stderr)", output.status)
        } else {
            format!("{}: {stderr}", output.status)
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout.trim();
    if token.is_empty() {
        return Err("it printed nothing on stdout".to_owned());
    }
    if !valid_token(token) {
        return Err(
            "its stdout is not a single token (whitespace or non-ascii characters inside)"
                .to_owned(),
        );
    }
    Ok(token.to_owned())
}

/// `s` cut to at most `limit` bytes on a character boundary, with `…` when cut.
fn truncate(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_owned();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::sha2::Sha256;
    use rsa::signature::Verifier as _;
    use rsa::{BoxedUint, PublicKey};
    use serde_json::{Value, json};
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicI64;

    /// Key generation is slow in debug builds: all tests share one key.
    fn key() -> Arc<SigningKey> {
        static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
        KEY.get_or_init(|| Arc::new(SigningKey::generate().unwrap()))
            .clone()
    }

    /// A clock the test moves by hand.
    #[derive(Debug)]
    struct ManualClock(AtomicI64);

    impl ManualClock {
        fn advance(&self, by: Micros) {
            self.0.fetch_add(by, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Micros {
            self.0.load(Ordering::SeqCst)
        }
    }

    const T0: Micros = 1_800_000_000 * SECOND + 250_000;
    const ISSUER: &str = "http://stratus.test";
    const EMAIL: &str = "sa@p.iam.gserviceaccount.com";
    const AUDIENCE: &str = "https://example.com/handler";

    fn source(oauth: OAuthSource) -> (TokenSource, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let cfg = AuthConfig {
            oauth,
            ..AuthConfig::new(ISSUER)
        };
        (TokenSource::new(cfg, Some(key()), clock.clone()), clock)
    }

    fn oidc(audience: &str) -> Auth {
        Auth::Oidc {
            service_account_email: EMAIL.to_owned(),
            audience: audience.to_owned(),
        }
    }

    fn oauth() -> Auth {
        Auth::OAuth {
            service_account_email: EMAIL.to_owned(),
            scope: "https://www.googleapis.com/auth/cloud-platform".to_owned(),
        }
    }

    fn sh(script: &str, refresh: Micros) -> OAuthSource {
        OAuthSource::Command {
            program: "sh".to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
            refresh,
        }
    }

    fn decode_json(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Verifies `token` as a receiver would, with nothing but the published JWKS; its claims.
    fn verify(token: &str, jwks: &Value) -> Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "compact jws");
        let header = decode_json(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("the header's kid is in the jwks");
        assert_eq!(jwk["alg"], "RS256");
        let int = |field: &str| {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[field].as_str().unwrap())
                .unwrap();
            BoxedUint::from_be_slice_vartime(&bytes)
        };
        let public = PublicKey::new(int("n"), int("e")).unwrap();
        let verifying = VerifyingKey::<Sha256>::new(public);
        let signature =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        verifying
            .verify(signing_input.as_bytes(), &signature)
            .expect("signature verifies");
        assert!(
            verifying
                .verify(format!("{signing_input}x").as_bytes(), &signature)
                .is_err(),
            "a tampered token does not verify"
        );
        decode_json(parts[1])
    }

    #[tokio::test]
    async fn oidc_token_verifies_against_the_jwks() {
        let (src, _) = source(OAuthSource::None);
        let token = src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        let claims = verify(&token, &key().jwks());
        assert_eq!(
            claims,
            json!({
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": EMAIL,
                "email": EMAIL,
                "email_verified": true,
                "iat": 1_800_000_000_i64,
                "exp": 1_800_003_600_i64,
            })
        );
    }

    #[tokio::test]
    async fn oidc_tokens_are_cached_per_email_and_audience() {
        let (src, clock) = source(OAuthSource::None);
        let first = src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        clock.advance(10 * SECOND);
        assert_eq!(
            src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap(),
            first,
            "cache hit"
        );
        let other = src.bearer(&oidc("https://other.example/")).await.unwrap();
        assert_ne!(other.unwrap(), first, "another audience, another token");
        let other_sa = Auth::Oidc {
            service_account_email: "other@p.iam.gserviceaccount.com".to_owned(),
            audience: AUDIENCE.to_owned(),
        };
        let other_sa = src.bearer(&other_sa).await.unwrap().unwrap();
        assert_ne!(other_sa, first, "another account, another token");
        assert_eq!(src.oidc_cache.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn oidc_token_is_renewed_near_expiry() {
        let (src, clock) = source(OAuthSource::None);
        let first = src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        // exp is T0 + 1 h truncated to the second: 1_800_003_600 s. At 5 min + 1 s before it,
        // the token is still reused.
        let exp = 1_800_003_600 * SECOND;
        clock.advance(exp - REFRESH_MARGIN - SECOND - clock.now());
        assert_eq!(src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap(), first);
        // At exactly 5 min before, it is not.
        clock.advance(SECOND);
        let second = src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        assert_ne!(second, first);
        let claims = verify(&second, &key().jwks());
        assert_eq!(claims["iat"], json!(1_800_003_300_i64));
        assert_eq!(claims["exp"], json!(1_800_006_900_i64));
        // And the new one is cached in turn.
        clock.advance(SECOND);
        assert_eq!(src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap(), second);
    }

    #[tokio::test]
    async fn short_lifetimes_still_cache_for_half_their_length() {
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let cfg = AuthConfig {
            token_lifetime: 60 * SECOND,
            ..AuthConfig::new(ISSUER)
        };
        let src = TokenSource::new(cfg, Some(key()), clock.clone());
        let first = src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        clock.advance(20 * SECOND);
        assert_eq!(src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap(), first);
        clock.advance(10 * SECOND);
        assert_ne!(src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap(), first);
    }

    #[tokio::test]
    async fn oidc_cache_is_bounded() {
        let (src, _) = source(OAuthSource::None);
        {
            let mut cache = src.oidc_cache.lock().unwrap();
            for i in 0..MAX_CACHED_TOKENS {
                cache.insert(
                    (EMAIL.to_owned(), format!("https://a{i}.example/")),
                    CachedToken {
                        token: "t".to_owned(),
                        issued_at: T0,
                        expires_at: T0 + DEFAULT_TOKEN_LIFETIME,
                    },
                );
            }
        }
        src.bearer(&oidc(AUDIENCE)).await.unwrap().unwrap();
        let cache = src.oidc_cache.lock().unwrap();
        assert_eq!(cache.len(), 1, "cleared when full, then the new token");
        assert!(cache.contains_key(&(EMAIL.to_owned(), AUDIENCE.to_owned())));
    }

    #[tokio::test]
    async fn oidc_without_a_key_is_an_error() {
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let src = TokenSource::new(AuthConfig::new(ISSUER), None, clock);
        let err = src.bearer(&oidc(AUDIENCE)).await.unwrap_err();
        assert!(matches!(err, AuthError::NoSigningKey), "{err:?}");
        assert!(err.to_string().contains("no oidc signing key"), "{err}");
    }

    #[tokio::test]
    async fn oauth_without_a_source_sends_no_header() {
        let (src, _) = source(OAuthSource::None);
        assert_eq!(src.bearer(&oauth()).await.unwrap(), None);
        assert_eq!(src.bearer(&oauth()).await.unwrap(), None);
        assert!(src.warned_no_oauth.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn oauth_static_token() {
        let (src, _) = source(OAuthSource::Static("ya29.static".to_owned()));
        assert_eq!(
            src.bearer(&oauth()).await.unwrap().as_deref(),
            Some("ya29.static")
        );
        let (src, _) = source(OAuthSource::Static("two words".to_owned()));
        let err = src.bearer(&oauth()).await.unwrap_err();
        assert!(matches!(err, AuthError::InvalidStaticToken), "{err:?}");
        assert!(
            !format!("{:?}", src.config()).contains("two words"),
            "redacted"
        );
    }

    #[tokio::test]
    async fn oauth_command_token_is_cached_for_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("runs");
        // Prints a different token on every run: tok1, tok2, ...
        let script = format!(
            "echo x >> '{0}'; echo \"  tok$(wc -l < '{0}' | tr -d ' ')  \"",
            counter.display()
        );
        let (src, clock) = source(sh(&script, 60 * SECOND));
        assert_eq!(src.bearer(&oauth()).await.unwrap().as_deref(), Some("tok1"));
        clock.advance(59 * SECOND);
        assert_eq!(
            src.bearer(&oauth()).await.unwrap().as_deref(),
            Some("tok1"),
            "cached"
        );
        clock.advance(SECOND);
        assert_eq!(
            src.bearer(&oauth()).await.unwrap().as_deref(),
            Some("tok2"),
            "rerun after refresh"
        );
    }

    #[tokio::test]
    async fn oauth_command_echo() {
        let (src, _) = source(sh("echo tok", 60 * SECOND));
        assert_eq!(src.bearer(&oauth()).await.unwrap().as_deref(), Some("tok"));
    }

    #[tokio::test]
    async fn failing_oauth_command_is_an_error_with_its_stderr() {
        let (src, clock) = source(sh("echo 'no credentials found' >&2; exit 3", 60 * SECOND));
        let err = src.bearer(&oauth()).await.unwrap_err();
        assert!(matches!(err, AuthError::Command { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("\"sh\""), "{msg}");
        assert!(msg.contains("no credentials found"), "{msg}");
        assert!(msg.contains('3'), "exit status: {msg}");
        // Held briefly, then rerun.
        clock.advance(COMMAND_FAILURE_HOLD);
        assert!(src.bearer(&oauth()).await.is_err());
    }

    #[tokio::test]
    async fn oauth_command_failure_is_held_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("ok");
        let script = format!(
            "if [ -e '{0}' ]; then echo good; else echo bad >&2; exit 1; fi",
            flag.display()
        );
        let (src, clock) = source(sh(&script, 60 * SECOND));
        assert!(src.bearer(&oauth()).await.is_err());
        std::fs::write(&flag, "").unwrap();
        let held = src.bearer(&oauth()).await.unwrap_err();
        assert!(held.to_string().contains("bad"), "{held}");
        clock.advance(COMMAND_FAILURE_HOLD);
        assert_eq!(src.bearer(&oauth()).await.unwrap().as_deref(), Some("good"));
    }

    #[tokio::test]
    async fn oauth_command_bad_output() {
        let (src, _) = source(sh("true", 60 * SECOND));
        let err = src.bearer(&oauth()).await.unwrap_err().to_string();
        assert!(err.contains("printed nothing"), "{err}");
        let (src, _) = source(sh("printf 'a\\nb\\n'", 60 * SECOND));
        let err = src.bearer(&oauth()).await.unwrap_err().to_string();
        assert!(err.contains("not a single token"), "{err}");
        let (src, _) = source(OAuthSource::Command {
            program: "/nonexistent/stratus-token-helper".to_owned(),
            args: vec![],
            refresh: 60 * SECOND,
        });
        let err = src.bearer(&oauth()).await.unwrap_err().to_string();
        assert!(err.contains("could not run it"), "{err}");
    }

    #[test]
    fn stderr_is_truncated_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é…");
        let long = "x".repeat(2 * STDERR_LIMIT);
        assert_eq!(
            truncate(&long, STDERR_LIMIT).len(),
            STDERR_LIMIT + '…'.len_utf8()
        );
    }
}
