//! API authentication and tenancy: bearer tokens scoped to one project (or every project) with
//! a role, checked on REST and gRPC alike before any request touches the store.
//!
//! - **Tokens** are random strings (`stratus_` + 43 base64url characters, 256 bits) that the
//!   server knows only by their SHA-256 digest ([`TokenSpec::sha256`]). A plain digest is enough
//!   because the tokens are random: there is nothing to guess a dictionary from, so a slow
//!   password hash would only slow down every call.
//! - **Projects are tenants.** Every Cloud Tasks resource name starts with `projects/<P>/`; a
//!   token of project A gets PERMISSION_DENIED for anything under project B, with the real
//!   service's words ("lacks IAM permission … (or the resource may not exist)"), so the answer is
//!   the same whether B's resource exists or not.
//! - **Roles** follow Cloud Tasks' IAM roles loosely: [`Role::Viewer`] reads, [`Role::Enqueuer`]
//!   also creates, deletes, runs and retries tasks, [`Role::Admin`] may do everything, queues
//!   included. [`Permission`] names the Cloud Tasks IAM permission each RPC needs.
//! - **Rate limits.** Every token has a request budget (a token bucket, [`TokenSpec::rate_limit`]
//!   requests per second with twice that as burst); past it, calls get RESOURCE_EXHAUSTED.
//! - **Open mode.** With no tokens configured, [`Auth::open`] lets every call through: the
//!   binary then serves on loopback only unless told `--insecure`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use stratus_types::rate::TokenBucket;
use stratus_types::time::Clock;
use stratus_types::{Code, Status};

/// What a token may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads queues, tasks, locations, operations, IAM policies and CMEK settings.
    Viewer,
    /// A viewer that also creates, deletes, runs and retries tasks (the role of services that
    /// enqueue work and manage what they enqueued).
    Enqueuer,
    /// Everything, including creating, changing, pausing, purging and deleting queues.
    Admin,
}

impl Role {
    /// Parses `admin`, `enqueuer` or `viewer` (any case).
    pub fn parse(s: &str) -> Result<Role, String> {
        match s.to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "enqueuer" => Ok(Role::Enqueuer),
            "viewer" => Ok(Role::Viewer),
            _ => Err(format!(
                "role: \"{s}\" is not a role; use admin, enqueuer or viewer"
            )),
        }
    }

    /// The role's name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Enqueuer => "enqueuer",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission an RPC needs, named like the Cloud Tasks IAM permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// ListQueues.
    QueuesList,
    /// GetQueue.
    QueuesGet,
    /// CreateQueue.
    QueuesCreate,
    /// UpdateQueue.
    QueuesUpdate,
    /// DeleteQueue.
    QueuesDelete,
    /// PauseQueue.
    QueuesPause,
    /// ResumeQueue.
    QueuesResume,
    /// PurgeQueue.
    QueuesPurge,
    /// GetIamPolicy.
    QueuesGetIamPolicy,
    /// SetIamPolicy.
    QueuesSetIamPolicy,
    /// ListTasks and the failed-task list.
    TasksList,
    /// GetTask and the task status call.
    TasksGet,
    /// CreateTask and BatchCreateTasks.
    TasksCreate,
    /// DeleteTask and BatchDeleteTasks.
    TasksDelete,
    /// RunTask.
    TasksRun,
    /// Stratus' retry of a failed task.
    TasksRetry,
    /// ListLocations.
    LocationsList,
    /// GetLocation.
    LocationsGet,
    /// GetCmekConfig.
    CmekGet,
    /// UpdateCmekConfig.
    CmekUpdate,
    /// GetOperation (batch calls).
    OperationsGet,
}

impl Permission {
    /// Every permission, for listings and tests.
    pub const ALL: [Permission; 21] = [
        Permission::QueuesList,
        Permission::QueuesGet,
        Permission::QueuesCreate,
        Permission::QueuesUpdate,
        Permission::QueuesDelete,
        Permission::QueuesPause,
        Permission::QueuesResume,
        Permission::QueuesPurge,
        Permission::QueuesGetIamPolicy,
        Permission::QueuesSetIamPolicy,
        Permission::TasksList,
        Permission::TasksGet,
        Permission::TasksCreate,
        Permission::TasksDelete,
        Permission::TasksRun,
        Permission::TasksRetry,
        Permission::LocationsList,
        Permission::LocationsGet,
        Permission::CmekGet,
        Permission::CmekUpdate,
        Permission::OperationsGet,
    ];

    /// The IAM permission's name, e.g. `cloudtasks.tasks.create`.
    pub fn name(self) -> &'static str {
        use Permission::*;
        match self {
            QueuesList => "cloudtasks.queues.list",
            QueuesGet => "cloudtasks.queues.get",
            QueuesCreate => "cloudtasks.queues.create",
            QueuesUpdate => "cloudtasks.queues.update",
            QueuesDelete => "cloudtasks.queues.delete",
            QueuesPause => "cloudtasks.queues.pause",
            QueuesResume => "cloudtasks.queues.resume",
            QueuesPurge => "cloudtasks.queues.purge",
            QueuesGetIamPolicy => "cloudtasks.queues.getIamPolicy",
            QueuesSetIamPolicy => "cloudtasks.queues.setIamPolicy",
            TasksList => "cloudtasks.tasks.list",
            TasksGet => "cloudtasks.tasks.get",
            TasksCreate => "cloudtasks.tasks.create",
            TasksDelete => "cloudtasks.tasks.delete",
            TasksRun => "cloudtasks.tasks.run",
            TasksRetry => "stratus.tasks.retry",
            LocationsList => "cloudtasks.locations.list",
            LocationsGet => "cloudtasks.locations.get",
            CmekGet => "cloudtasks.cmekConfig.get",
            CmekUpdate => "cloudtasks.cmekConfig.update",
            OperationsGet => "cloudtasks.operations.get",
        }
    }

    /// The permission of an IAM permission name, if Stratus knows it.
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The least role holding the permission.
    pub fn role(self) -> Role {
        use Permission::*;
        match self {
            QueuesList | QueuesGet | QueuesGetIamPolicy | TasksList | TasksGet | LocationsList
            | LocationsGet | CmekGet | OperationsGet => Role::Viewer,
            TasksCreate | TasksDelete | TasksRun | TasksRetry => Role::Enqueuer,
            QueuesCreate | QueuesUpdate | QueuesDelete | QueuesPause | QueuesResume
            | QueuesPurge | QueuesSetIamPolicy | CmekUpdate => Role::Admin,
        }
    }
}

/// Which projects a token may act in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every project (`project = "*"`): operators and the dashboard.
    All,
    /// One project ID.
    Project(String),
}

impl Scope {
    /// Parses a project ID or `*`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        if s == "*" {
            return Ok(Scope::All);
        }
        let ok = !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            return Err(format!(
                "project: \"{s}\" is not a project ID (letters, digits, '-', '_', '.', ':'; at \
                 most 100) or \"*\" for every project"
            ));
        }
        Ok(Scope::Project(s.to_string()))
    }

    fn covers(&self, project: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Project(p) => p == project,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Project(p) => f.write_str(p),
        }
    }
}

/// The default request budget of a token, in requests per second.
pub const DEFAULT_RATE_LIMIT: f64 = 1000.0;

/// A token as configured: its name, scope, role, digest and budget.
#[derive(Clone)]
pub struct TokenSpec {
    /// A label for logs and errors (never the token itself).
    pub name: String,
    /// Projects the token may act in.
    pub scope: Scope,
    /// What it may do there.
    pub role: Role,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Requests per second (burst: twice as many); 0 means unlimited. Default 1000.
    pub rate_limit: f64,
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("role", &self.role)
            .field("sha256", &"<redacted>")
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The prefix of tokens made by [`generate_token`].
pub const TOKEN_PREFIX: &str = "stratus_";

/// A new random token: `stratus_` and 32 random bytes in unpadded base64url.
pub fn generate_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of a token as 64 lowercase hex digits (the config file's `sha256`).
pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// Parses 64 hex digits.
pub fn parse_digest(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| {
        "sha256: expected the 64 hex digits of the token's SHA-256 (`stratus tokens hash` \
         prints them)"
            .to_string()
    })?;
    Ok(out)
}

/// A configured token with its live budget.
struct Entry {
    spec: TokenSpec,
    bucket: Option<Mutex<TokenBucket>>,
}

/// The token table; replaced whole on reload.
struct Table {
    by_digest: HashMap<[u8; 32], Arc<Entry>>,
}

/// The API's authenticator: the token table (reloadable) and the counters of refusals.
pub struct Auth {
    /// False in open mode: every call passes, tokens are not looked at.
    required: bool,
    table: RwLock<Arc<Table>>,
    clock: Arc<dyn Clock>,
    failures: AtomicU64,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("required", &self.required)
            .field("tokens", &self.token_count())
            .finish()
    }
}

/// Why a caller was refused before any permission check.
const MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential. Send \
    `Authorization: Bearer <token>` with a Stratus API token (docs/security.md).";
const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected \
    OAuth 2 access token, login cookie or other valid authentication credential. The bearer \
    token is not a Stratus API token of this server (docs/security.md).";

impl Auth {
    /// Open mode: no tokens, every call passes.
    pub fn open(clock: Arc<dyn Clock>) -> Auth {
        Auth {
            required: false,
            table: RwLock::new(Arc::new(Table {
                by_digest: HashMap::new(),
            })),
            clock,
            failures: AtomicU64::new(0),
        }
    }

    /// Token mode with `tokens` (at least one; see [`Auth::open`] for none).
    pub fn with_tokens(tokens: Vec<TokenSpec>, clock: Arc<dyn Clock>) -> Result<Auth, String> {
        if tokens.is_empty() {
            return Err("tokens: at least one token is needed to require authentication".into());
        }
        let auth = Auth {
            required: true,
            table: RwLock::new(Arc::new(Table {
                by_digest: HashMap::new(),
            })),
            clock,
            failures: AtomicU64::new(0),
        };
        auth.replace(tokens)?;
        Ok(auth)
    }

    /// True when calls need a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// How many tokens are configured.
    pub fn token_count(&self) -> usize {
        self.table.read().map(|t| t.by_digest.len()).unwrap_or(0)
    }

    /// Calls refused for a missing or unknown token, a foreign project, a too small role or an
    /// exhausted budget, since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Replaces the token table (a config reload). Budgets of tokens that stay keep their
    /// state. Refuses an empty table in token mode, and duplicate digests.
    pub fn replace(&self, tokens: Vec<TokenSpec>) -> Result<(), String> {
        if self.required && tokens.is_empty() {
            return Err(
                "tokens: the new configuration has no tokens; authentication stays on with the \
                 previous tokens (restart to serve without tokens)"
                    .into(),
            );
        }
        let now = self.clock.now();
        let old = self.table.read().map(|t| t.clone()).ok();
        let mut by_digest = HashMap::with_capacity(tokens.len());
        for spec in tokens {
            let kept = old
                .as_ref()
                .and_then(|t| t.by_digest.get(&spec.sha256))
                .filter(|e| e.spec.rate_limit == spec.rate_limit);
            let entry = match kept {
                Some(e) => Arc::new(Entry {
                    spec: spec.clone(),
                    bucket: e.bucket.as_ref().map(|b| Mutex::new(lock(b).clone())),
                }),
                None => Arc::new(Entry {
                    bucket: (spec.rate_limit > 0.0).then(|| {
                        let burst = (spec.rate_limit * 2.0).ceil().min(f64::from(i32::MAX));
                        #[allow(clippy::cast_possible_truncation)]
                        Mutex::new(TokenBucket::new(spec.rate_limit, burst as i32, now))
                    }),
                    spec: spec.clone(),
                }),
            };
            if by_digest.insert(spec.sha256, entry).is_some() {
                return Err(format!(
                    "tokens: \"{}\" has the same sha256 as another token",
                    spec.name
                ));
            }
        }
        if let Ok(mut t) = self.table.write() {
            *t = Arc::new(Table { by_digest });
        }
        Ok(())
    }

    /// Who is calling, from the `authorization` header: the caller, or UNAUTHENTICATED /
    /// RESOURCE_EXHAUSTED. In open mode always [`Caller::Open`].
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Status> {
        if !self.required {
            return Ok(Caller::Open);
        }
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let Some(token) = presented else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("api call refused: no bearer token");
            return Err(Status::new(Code::Unauthenticated, MISSING_CREDENTIALS));
        };
        let d = digest(token);
        let entry = self
            .table
            .read()
            .ok()
            .and_then(|t| t.by_digest.get(&d).cloned());
        let Some(entry) = entry else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            // A prefix of the digest identifies repeated attempts without revealing the token.
            tracing::debug!(
                digest_prefix = %&hex::encode(d)[..12],
                "api call refused: unknown bearer token"
            );
            return Err(Status::new(Code::Unauthenticated, INVALID_CREDENTIALS));
        };
        if let Some(bucket) = &entry.bucket {
            let now = self.clock.now();
            let taken = lock(bucket).try_take(now);
            if taken.is_err() {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(token = %entry.spec.name, "api call refused: rate limit");
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!(
                        "Quota exceeded: API token \"{}\" may make {} requests per second \
                         (bursts of up to twice that); retry with backoff.",
                        entry.spec.name, entry.spec.rate_limit
                    ),
                ));
            }
        }
        Ok(Caller::Token(TokenCaller { entry }))
    }

    /// Ok when `caller` holds what `req`'s RPC needs on the resource it names; a refusal
    /// counts in [`Auth::failures`].
    pub fn allow<R: Guarded>(&self, caller: &Caller, req: &R) -> Result<(), Status> {
        self.check(caller, R::PERMISSION, req.resource())
    }

    /// Ok when `caller` holds `perm` on `resource`; a refusal counts in [`Auth::failures`].
    pub fn check(&self, caller: &Caller, perm: Permission, resource: &str) -> Result<(), Status> {
        caller.check(perm, resource).inspect_err(|_| {
            self.failures.fetch_add(1, Ordering::Relaxed);
        })
    }
}

/// A budget's lock; a panic while holding it cannot leave a bucket inconsistent.
fn lock(b: &Mutex<TokenBucket>) -> std::sync::MutexGuard<'_, TokenBucket> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated caller.
#[derive(Clone)]
pub enum Caller {
    /// Open mode: everything is allowed.
    Open,
    /// A configured token.
    Token(TokenCaller),
}

/// A caller holding a configured token.
#[derive(Clone)]
pub struct TokenCaller {
    entry: Arc<Entry>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Open => f.write_str("Caller::Open"),
            Caller::Token(t) => write!(
                f,
                "Caller::Token({} {} {})",
                t.entry.spec.name, t.entry.spec.scope, t.entry.spec.role
            ),
        }
    }
}

/// The project of a resource name `projects/<P>[/…]`.
pub fn project_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("projects/")?;
    let p = rest.split('/').next()?;
    (!p.is_empty()).then_some(p)
}

impl Caller {
    /// True when the caller holds `perm` on `resource`.
    pub fn holds(&self, perm: Permission, resource: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => {
                let spec = &t.entry.spec;
                spec.role >= perm.role()
                    && match project_of(resource) {
                        Some(p) => spec.scope.covers(p),
                        // A name that is not under a project can only be refused by the
                        // service's own validation; only an every-project token gets that far.
                        None => spec.scope == Scope::All,
                    }
            }
        }
    }

    /// Ok when the caller holds `perm` on `resource`, else PERMISSION_DENIED in the words of
    /// Cloud Tasks (the same for a resource of another project and one that does not exist).
    pub fn check(&self, perm: Permission, resource: &str) -> Result<(), Status> {
        if self.holds(perm, resource) {
            return Ok(());
        }
        if let Caller::Token(t) = self {
            tracing::debug!(
                token = %t.entry.spec.name,
                permission = perm.name(),
                resource,
                "api call refused: permission denied"
            );
        }
        Err(denied(perm, resource))
    }

    /// The token's name, if any.
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token(t) => Some(&t.entry.spec.name),
        }
    }
}

/// Keeps the permissions of a TestIamPermissions answer that `caller` holds on `resource`.
/// In open mode every permission is kept (the answer echoes the request, as before tokens).
pub fn retain_held(caller: &Caller, resource: &str, permissions: &mut Vec<String>) {
    if matches!(caller, Caller::Open) {
        return;
    }
    permissions.retain(|p| Permission::from_name(p).is_some_and(|p| caller.holds(p, resource)));
}

/// PERMISSION_DENIED for `perm` on `resource`, as Cloud Tasks words it.
pub fn denied(perm: Permission, resource: &str) -> Status {
    Status::new(
        Code::PermissionDenied,
        format!(
            "The principal (user or service account) lacks IAM permission \"{}\" for the resource \
             \"{resource}\" (or the resource may not exist).",
            perm.name()
        ),
    )
}

/// A request message the API authorizes: the permission its RPC needs and the resource it
/// names.
pub trait Guarded {
    /// The permission the RPC needs.
    const PERMISSION: Permission;
    /// The resource name the permission is checked on.
    fn resource(&self) -> &str;
}

macro_rules! guarded {
    ($($ty:path => $perm:ident, |$r:ident| $res:expr;)*) => {$(
        impl Guarded for $ty {
            const PERMISSION: Permission = Permission::$perm;
            fn resource(&self) -> &str {
                let $r = self;
                $res
            }
        }
    )*};
}

mod impls {
    use super::{Guarded, Permission};
    use stratus_types::proto::google::cloud::location::{GetLocationRequest, ListLocationsRequest};
    use stratus_types::proto::google::iam::v1::{
        GetIamPolicyRequest, SetIamPolicyRequest, TestIamPermissionsRequest,
    };
    use stratus_types::proto::google::longrunning::GetOperationRequest;
    use stratus_types::proto::tasks::{
        BatchCreateTasksRequest, BatchDeleteTasksRequest, CreateQueueRequest, CreateTaskRequest,
        DeleteQueueRequest, DeleteTaskRequest, GetCmekConfigRequest, GetQueueRequest,
        GetTaskRequest, ListQueuesRequest, ListTasksRequest, PauseQueueRequest, PurgeQueueRequest,
        ResumeQueueRequest, RunTaskRequest, UpdateCmekConfigRequest, UpdateQueueRequest,
    };

    guarded! {
        ListQueuesRequest => QueuesList, |r| &r.parent;
        GetQueueRequest => QueuesGet, |r| &r.name;
        CreateQueueRequest => QueuesCreate, |r| &r.parent;
        UpdateQueueRequest => QueuesUpdate, |r| r.queue.as_ref().map_or("", |q| q.name.as_str());
        DeleteQueueRequest => QueuesDelete, |r| &r.name;
        PurgeQueueRequest => QueuesPurge, |r| &r.name;
        PauseQueueRequest => QueuesPause, |r| &r.name;
        ResumeQueueRequest => QueuesResume, |r| &r.name;
        GetIamPolicyRequest => QueuesGetIamPolicy, |r| &r.resource;
        SetIamPolicyRequest => QueuesSetIamPolicy, |r| &r.resource;
        // Any reader may ask; the answer keeps only what the caller holds.
        TestIamPermissionsRequest => QueuesGet, |r| &r.resource;
        ListTasksRequest => TasksList, |r| &r.parent;
        GetTaskRequest => TasksGet, |r| &r.name;
        CreateTaskRequest => TasksCreate, |r| &r.parent;
        DeleteTaskRequest => TasksDelete, |r| &r.name;
        RunTaskRequest => TasksRun, |r| &r.name;
        BatchCreateTasksRequest => TasksCreate, |r| &r.parent;
        BatchDeleteTasksRequest => TasksDelete, |r| &r.parent;
        GetCmekConfigRequest => CmekGet, |r| &r.name;
        UpdateCmekConfigRequest => CmekUpdate, |r| r.cmek_config.as_ref().map_or("", |c| c.name.as_str());
        ListLocationsRequest => LocationsList, |r| &r.name;
        GetLocationRequest => LocationsGet, |r| &r.name;
        GetOperationRequest => OperationsGet, |r| &r.name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_types::time::SystemClock;

    fn spec(name: &str, project: &str, role: Role, token: &str, rate: f64) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            scope: Scope::parse(project).unwrap(),
            role,
            sha256: digest(token),
            rate_limit: rate,
        }
    }

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_random_and_hash_to_hex() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        let hex = digest_hex(&a);
        assert_eq!(parse_digest(&hex).unwrap(), digest(&a));
        assert!(parse_digest("abc").is_err());
        assert!(parse_digest(&"g".repeat(64)).is_err());
    }

    #[test]
    fn roles_and_projects_decide() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let auth = Auth::with_tokens(
            vec![
                spec("a-view", "a", Role::Viewer, "tv", 0.0),
                spec("a-enq", "a", Role::Enqueuer, "te", 0.0),
                spec("all-admin", "*", Role::Admin, "tx", 0.0),
            ],
            clock,
        )
        .unwrap();
        let q = "projects/a/locations/l/queues/q";
        let qb = "projects/b/locations/l/queues/q";
        let view = auth.authenticate(&headers(Some("tv"))).unwrap();
        assert!(view.holds(Permission::TasksGet, q));
        assert!(!view.holds(Permission::TasksCreate, q));
        assert!(!view.holds(Permission::TasksGet, qb));
        let enq = auth.authenticate(&headers(Some("te"))).unwrap();
        assert!(enq.holds(Permission::TasksCreate, q));
        assert!(!enq.holds(Permission::QueuesDelete, q));
        let err = enq.check(Permission::TasksCreate, qb).unwrap_err();
        assert_eq!(err.code, Code::PermissionDenied);
        assert!(
            err.message.contains("cloudtasks.tasks.create"),
            "{}",
            err.message
        );
        let admin = auth.authenticate(&headers(Some("tx"))).unwrap();
        assert!(admin.holds(Permission::QueuesDelete, qb));
        // A prefix trick must not pass: "projects/ab" is not project "a".
        assert!(!enq.holds(Permission::TasksGet, "projects/ab/locations/l/queues/q"));
        assert!(!enq.holds(Permission::TasksGet, "not-a-name"));
        assert_eq!(
            auth.authenticate(&headers(None)).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(
            auth.authenticate(&headers(Some("nope"))).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(auth.failures(), 2);
    }

    #[test]
    fn budgets_run_out() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let auth =
            Auth::with_tokens(vec![spec("slow", "a", Role::Viewer, "t", 1.0)], clock).unwrap();
        // Burst of 2, then refused.
        assert!(auth.authenticate(&headers(Some("t"))).is_ok());
        assert!(auth.authenticate(&headers(Some("t"))).is_ok());
        let err = auth.authenticate(&headers(Some("t"))).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        assert!(err.message.contains("\"slow\""));
    }

    #[test]
    fn reload_refuses_empty_and_duplicates() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let auth = Auth::with_tokens(vec![spec("x", "a", Role::Viewer, "t", 0.0)], clock).unwrap();
        assert!(auth.replace(vec![]).is_err());
        assert!(
            auth.replace(vec![
                spec("x", "a", Role::Viewer, "t", 0.0),
                spec("y", "a", Role::Admin, "t", 0.0)
            ])
            .is_err()
        );
        auth.replace(vec![spec("z", "b", Role::Admin, "u", 0.0)])
            .unwrap();
        assert!(auth.authenticate(&headers(Some("t"))).is_err());
        assert!(auth.authenticate(&headers(Some("u"))).is_ok());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn every_permission_has_a_unique_name() {
        let mut names: Vec<_> = Permission::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.name()), Some(p));
        }
    }
}
