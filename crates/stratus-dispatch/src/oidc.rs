//! OIDC ID tokens for HTTP targets (cloud-tasks-api.md §6.6).
//!
//! Production Cloud Tasks mints Google-signed ID tokens; a self-hosted server cannot, so Stratus
//! signs them with its own RSA key (RS256) and publishes the matching discovery documents, which
//! lets receivers verify tokens with any standard OIDC/JWT library:
//!
//! - `{issuer}/.well-known/openid-configuration` serves [`openid_configuration`];
//! - `{issuer}/.well-known/jwks.json` (the `jwks_uri`, see [`jwks_uri`]) serves
//!   [`SigningKey::jwks`].
//!
//! Everything here is pure apart from key generation (OS RNG) and [`SigningKey::load_or_create`]
//! (the key file): the token's issue time is passed in, the clock is never read.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::PrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use stratus_types::Micros;
use stratus_types::time::SECOND;

/// Modulus size of generated keys, in bits: the common RS256 size, what Google's own keys use.
pub const KEY_BITS: usize = 2048;

/// How long a token is valid when the caller has no reason to choose: one hour, like Google's
/// ID tokens (§6.6).
pub const DEFAULT_TOKEN_LIFETIME: Micros = 3600 * SECOND;

/// Path of the JWKS document below the issuer URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Path of the OIDC discovery document below the issuer URL (fixed by OpenID Connect Discovery).
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

/// The claims listed in the discovery document; exactly those [`SigningKey::sign_id_token`] sets.
const CLAIMS_SUPPORTED: [&str; 7] = ["iss", "aud", "sub", "email", "email_verified", "iat", "exp"];

/// What can go wrong with the signing key or a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The RSA key pair could not be generated (RNG failure).
    #[error("generating the rsa signing key failed")]
    Generate(#[source] rsa::Error),
    /// The key file could not be read, written or renamed into place.
    #[error("key file {path}: {source}")]
    Io {
        /// The file (or temporary file) involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file exists but is not a PKCS#8 PEM RSA private key.
    #[error("key file {path} is not a pkcs#8 pem rsa private key")]
    Decode {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rsa::pkcs8::Error,
    },
    /// The key file holds an RSA key shorter than [`KEY_BITS`].
    #[error("key file {path} holds a {bits}-bit rsa key, at least {KEY_BITS} bits are required")]
    WeakKey {
        /// The key file.
        path: PathBuf,
        /// The modulus size found.
        bits: usize,
    },
    /// The key could not be encoded (PKCS#8 or SubjectPublicKeyInfo DER).
    #[error("encoding the rsa signing key failed: {0}")]
    Encode(String),
    /// The RSA signature operation failed.
    #[error("signing the id token failed")]
    Sign(#[source] rsa::Error),
}

/// The claims of one ID token; see [`SigningKey::sign_id_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// `iss`: the issuer URL receivers are configured to trust (also the discovery base URL).
    pub issuer: &'a str,
    /// `aud`: `oidc_token.audience`, else the task's URL (§6.6).
    pub audience: &'a str,
    /// `sub` and `email`: `oidc_token.service_account_email` (any email is accepted).
    pub service_account_email: &'a str,
    /// `iat`: when the token is issued, µs since the Unix epoch (truncated to whole seconds).
    pub issued_at: Micros,
    /// `exp` - `iat`: how long the token is valid; usually [`DEFAULT_TOKEN_LIFETIME`].
    pub lifetime: Micros,
}

/// The RSA key Stratus signs ID tokens with (RS256).
///
/// Cheap to share behind an `Arc`: signing takes `&self`.
pub struct SigningKey {
    key: PrivateKey,
    /// Derived from the public key once, see [`SigningKey::kid`].
    kid: String,
}

impl fmt::Debug for SigningKey {
    /// Shows only the key id: the private key never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh [`KEY_BITS`]-bit key from the OS RNG. Slow in unoptimised builds.
    pub fn generate() -> Result<Self, OidcError> {
        let key = PrivateKey::new(&mut getrandom::SysRng, KEY_BITS).map_err(OidcError::Generate)?;
        Self::from_private_key(key)
    }

    /// Loads the PKCS#8 PEM key at `path`, or, when there is no file, generates one and writes it
    /// there (parent directories included) so that tokens stay verifiable across restarts.
    ///
    /// The new file is written to a temporary file in the same directory and renamed into place,
    /// so a crash never leaves a truncated key behind; on unix it is created with mode 0600.
    /// One Stratus process is expected per key file: two processes creating the same missing file
    /// at once would each keep their own key (the last rename wins on disk).
    pub fn load_or_create(path: &Path) -> Result<Self, OidcError> {
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(path, &pem),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.write_new(path)?;
                Ok(key)
            }
            Err(source) => Err(OidcError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The key as PKCS#8 PEM (to share it through a store between cluster nodes).
    pub fn to_pkcs8_pem(&self) -> Result<String, OidcError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| OidcError::Encode(e.to_string()))
    }

    /// A key from PKCS#8 PEM; `origin` names where it came from in errors.
    pub fn from_pkcs8_pem(origin: &Path, pem: &str) -> Result<Self, OidcError> {
        Self::from_pem(origin, pem)
    }

    fn from_pem(path: &Path, pem: &str) -> Result<Self, OidcError> {
        let key = PrivateKey::from_pkcs8_pem(pem).map_err(|source| OidcError::Decode {
            path: path.to_owned(),
            source,
        })?;
        let bits = key.n().bit_width() as usize;
        if bits < KEY_BITS {
            return Err(OidcError::WeakKey {
                path: path.to_owned(),
                bits,
            });
        }
        Self::from_private_key(key)
    }

    fn from_private_key(key: PrivateKey) -> Result<Self, OidcError> {
        let der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| OidcError::Encode(e.to_string()))?;
        let digest = Sha256::digest(der.as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..16]);
        Ok(Self { key, kid })
    }

    /// Writes the key as PKCS#8 PEM to a fresh temporary file next to `path`, then renames it.
    fn write_new(&self, path: &Path) -> Result<(), OidcError> {
        let io_err = |p: &Path| {
            let p = p.to_owned();
            move |source| OidcError::Io { path: p, source }
        };
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| OidcError::Encode(e.to_string()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut tmp_name = path
            .file_name()
            .unwrap_or_else(|| "oidc-key".as_ref())
            .to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        // A crash between create and rename leaves this file behind, and in a container the pid
        // is the same on every start: clear it, or every later start would fail on `create_new`.
        let _ = std::fs::remove_file(&tmp);

        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut file| {
            file.write_all(pem.as_bytes())?;
            file.sync_all()
        });
        let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
        if let Err(source) = renamed {
            // Best effort: the temporary file may not exist (create_new failed) or be half-written.
            let _ = std::fs::remove_file(&tmp);
            return Err(OidcError::Io { path: tmp, source });
        }
        // Make the rename itself durable. Best effort: the key is already in place and valid, and
        // some filesystems refuse to sync a directory.
        #[cfg(unix)]
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    }

    /// The key id (`kid` in token headers and the JWKS): base64url (no padding) of the first
    /// 16 bytes of the SHA-256 of the DER SubjectPublicKeyInfo, so it is stable for a given key
    /// and changes when the key file is replaced.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs an ID token: a compact JWS with header `{"alg":"RS256","kid":..,"typ":"JWT"}` and
    /// claims `iss`, `aud`, `sub`, `email`, `email_verified` (always `true`), `iat` and `exp`
    /// (whole seconds since the epoch).
    pub fn sign_id_token(&self, claims: &Claims<'_>) -> Result<String, OidcError> {
        let iat = claims.issued_at.div_euclid(SECOND);
        let exp = claims
            .issued_at
            .saturating_add(claims.lifetime)
            .div_euclid(SECOND);
        let header = json!({ "alg": "RS256", "kid": self.kid, "typ": "JWT" });
        let payload = json!({
            "iss": claims.issuer,
            "aud": claims.audience,
            "sub": claims.service_account_email,
            "email": claims.service_account_email,
            "email_verified": true,
            "iat": iat,
            "exp": exp,
        });
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
        let signature = self
            .key
            .pkcs1v15_sign::<Sha256>(token.as_bytes())
            .map_err(OidcError::Sign)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// The JWKS document to serve at `{issuer}/.well-known/jwks.json`: this key's public half,
    /// `n` and `e` as unpadded base64url big-endian integers (RFC 7518 §6.3.1).
    pub fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(self.key.n_bytes()),
                "e": URL_SAFE_NO_PAD.encode(self.key.e_bytes()),
            }]
        })
    }
}

/// The `jwks_uri` for `issuer`: `{issuer}/.well-known/jwks.json` (one trailing `/` of the issuer
/// is ignored).
pub fn jwks_uri(issuer: &str) -> String {
    format!("{}{JWKS_PATH}", issuer.strip_suffix('/').unwrap_or(issuer))
}

/// The OIDC discovery document to serve at `{issuer}/.well-known/openid-configuration`.
///
/// Only the fields verifiers read are meaningful; the required `response_types_supported` and
/// `subject_types_supported` are filled in although Stratus has no authorization endpoint.
pub fn openid_configuration(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri(issuer),
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": CLAIMS_SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::{BoxedUint, PublicKey};
    use std::sync::OnceLock;

    /// Key generation is slow in debug builds: all tests share one key.
    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().unwrap())
    }

    const T0: Micros = 1_800_000_000 * SECOND + 123_456;

    fn claims() -> Claims<'static> {
        Claims {
            issuer: "http://cloud-tasks-emulator",
            audience: "https://example.com/handler",
            service_account_email: "sa@p.iam.gserviceaccount.com",
            issued_at: T0,
            lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }

    fn decode_json(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// The public key rebuilt from the JWKS alone, as a receiver would.
    fn public_key_from_jwks(jwks: &Value) -> PublicKey {
        let jwk = &jwks["keys"][0];
        let int = |field: &str| {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[field].as_str().unwrap())
                .unwrap();
            BoxedUint::from_be_slice_vartime(&bytes)
        };
        PublicKey::new(int("n"), int("e")).unwrap()
    }

    #[test]
    fn token_has_expected_header_and_claims() {
        let token = key().sign_id_token(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode_json(parts[0]),
            json!({ "alg": "RS256", "kid": key().kid(), "typ": "JWT" })
        );
        assert_eq!(
            decode_json(parts[1]),
            json!({
                "iss": "http://cloud-tasks-emulator",
                "aud": "https://example.com/handler",
                "sub": "sa@p.iam.gserviceaccount.com",
                "email": "sa@p.iam.gserviceaccount.com",
                "email_verified": true,
                "iat": 1_800_000_000_i64,
                "exp": 1_800_003_600_i64,
            })
        );
        assert!(!token.contains('='), "jws parts are unpadded");
    }

    #[test]
    fn signature_verifies_against_the_published_jwks() {
        let token = key().sign_id_token(&claims()).unwrap();
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let jwks = key().jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key().kid());
        assert_eq!(jwk["e"], "AQAB");
        let public = public_key_from_jwks(&jwks);
        assert_eq!(public.n().bit_width() as usize, KEY_BITS);
        assert_eq!(signature.len(), KEY_BITS / 8);
        public
            .pkcs1v15_verify::<Sha256>(signing_input.as_bytes(), &signature)
            .unwrap();

        let mut tampered = signing_input.to_owned();
        tampered.push('x');
        assert!(
            public
                .pkcs1v15_verify::<Sha256>(tampered.as_bytes(), &signature)
                .is_err()
        );
    }

    #[test]
    fn kid_is_stable_and_short() {
        let kid = key().kid();
        assert_eq!(kid.len(), 22, "16 bytes in unpadded base64url");
        let again = SigningKey::from_private_key(key().key.clone()).unwrap();
        assert_eq!(again.kid(), kid);
    }

    #[test]
    fn load_or_create_creates_then_reloads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("oidc.pem");
        let created = SigningKey::load_or_create(&path).unwrap();
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "pkcs#8 pem");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["oidc.pem"], "no temporary file left behind");

        let loaded = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(loaded.kid(), created.kid());
        assert_eq!(loaded.jwks(), created.jwks());
    }

    #[test]
    fn load_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc.pem");
        std::fs::write(&path, "not a key").unwrap();
        let err = SigningKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, OidcError::Decode { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("is not a pkcs#8 pem rsa private key")
        );
    }

    #[test]
    fn discovery_document() {
        let doc = openid_configuration("http://cloud-tasks-emulator");
        assert_eq!(doc["issuer"], "http://cloud-tasks-emulator");
        assert_eq!(
            doc["jwks_uri"],
            "http://cloud-tasks-emulator/.well-known/jwks.json"
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
        assert_eq!(doc["response_types_supported"], json!(["id_token"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(doc["claims_supported"], json!(CLAIMS_SUPPORTED));
        assert_eq!(
            jwks_uri("https://stratus.example/"),
            "https://stratus.example/.well-known/jwks.json"
        );
    }

    #[test]
    fn debug_hides_the_private_key() {
        let shown = format!("{:?}", key());
        assert!(shown.contains(key().kid()));
        assert!(!shown.contains("PrivateKey"));
    }
}
