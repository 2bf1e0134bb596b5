//! Client authentication for MQTT CONNECT: who may connect, checked against a password file of
//! argon2 hashes, a signed JWT sent as the password, a verified TLS client certificate, or the
//! anonymous setting.
//!
//! ```text
//!  CONNECT ─▶ Authenticator::authenticate(Credentials) ─▶ Ok(Authenticated) | Err(Refusal)
//!               │ rate limited? ─▶ RateLimited, nothing checked          (─▶ CONNACK code)
//!               │ a JWT (if configured)? ─▶ signature, alg, exp/nbf: on the task, no argon2
//!               │ cache hit (keyed MAC) ─▶ Ok, no argon2
//!               └─ argon2 on tokio's blocking pool, at most one per core at a time
//! ```
//!
//! Rules, in this order:
//! 1. A source with [`MAX_FAILURES`] failures in its current [`FAILURE_WINDOW`] is refused
//!    ([`Refusal::RateLimited`]) at once: no delay, no verification, not counted again.
//! 2. A verified client certificate identity is authenticated: the TLS layer has already checked
//!    the certificate against the configured CA.
//! 3. With JWT configured ([`JwtSettings`]), a password shaped like a JWT (three dot-separated
//!    base64url segments) is a token, never a password-file password: it must be signed with
//!    the configured key and exactly the configured algorithm, carry an `exp` that has not
//!    passed (no leeway), and an `nbf`, if any, that has; `aud` is not checked. Its `sub`, if
//!    any, is the client's username: a CONNECT username must equal it, and
//!    [`Authenticated::username`] hands it back to the connection. Without `sub` the CONNECT's
//!    username stands, or none. Anything else is [`Refusal::BadCredentials`] (details in
//!    `auth/jwt.rs`). An `acl` claim carries the topics the client may use
//!    ([`Authenticated::grants`], for core's ACL); one that cannot be read is
//!    [`Refusal::NotAuthorized`].
//! 4. A username, with a password file configured: the user must be listed and the password
//!    must verify against their hash; a missing password fails too ([`Refusal::BadCredentials`]).
//! 5. A username, without a password file: with JWT configured it is refused
//!    ([`Refusal::BadCredentials`]: a JWT-only node lets no name in without a token); otherwise
//!    there is nobody to check against, so it is treated as anonymous (Mosquitto does the same).
//! 6. No username (and no token): allowed only when anonymous clients are
//!    ([`Refusal::NotAuthorized`] otherwise). A password without a username (MQTT 5 allows it)
//!    is ignored unless it is a token.
//!
//! A refusal other than `RateLimited` counts against the source and costs [`FAILURE_DELAY`]
//! before the answer, so a client cannot retry faster than that on one connection: a bad token
//! counts like a bad password.
//!
//! Why the rest is shaped the way it is:
//! - **argon2 off the async threads.** A verification takes tens of milliseconds of CPU by
//!   design; it runs on tokio's blocking pool, never on a connection task or the broker thread.
//!   A semaphore admits one verification per core: with the default 19 MiB per hash, the
//!   blocking pool's 512 threads could otherwise claim 10 GiB during a reconnect storm.
//! - **Verification cache.** 20,000 devices reconnecting after a network blip would cost
//!   20,000 argon2 runs (about 10 CPU-minutes) before the last one is back. After a successful
//!   verification the user's entry keeps a BLAKE2b-256 MAC, under a random key made at load, of
//!   the username, their PHC string and the password; a later attempt whose MAC matches skips
//!   argon2. The password itself is never kept, the key never leaves memory, and a failed
//!   password is never cached. Because the MAC covers the PHC string, an entry stops matching
//!   the moment the user's hash changes; reload also drops entries of users who were removed or
//!   whose hash changed, and keeps the others, so a SIGHUP does not force a verification storm.
//! - **Unknown users cost the same as known ones.** An unknown username is verified against a
//!   listed user's hash (and refused whatever the outcome), so response time does not tell
//!   which usernames exist.
//! - **Tokens on the task.** A JWT costs one HMAC or signature check (microseconds), so it is
//!   verified on the connection task and nothing is cached. Exactly one algorithm is accepted,
//!   so a token that names another (`none`, or HS256 keyed with a public key, the classic
//!   confusion) is refused before its signature is looked at. The key file is read at load and
//!   again by [`Authenticator::reload_jwt_key`] (SIGHUP); a bad file keeps the previous key.
//! - **Locks.** `std` locks, never held across an `.await`: each critical section is a map
//!   lookup or insert. Authentication happens once per CONNECT, not per message, so these locks
//!   are not on the publish path.

mod jwt;
mod limiter;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{CtOutput, Mac};
use tokio::sync::Semaphore;

pub use jwt::{JwtAlgorithm, JwtSettings};
use limiter::Limiter;
pub use limiter::{FAILURE_WINDOW, MAX_FAILURES, MAX_TRACKED_SOURCES};

/// Time a refused CONNECT waits before it is answered.
pub const FAILURE_DELAY: Duration = Duration::from_millis(500);

/// The cache's MAC: BLAKE2b keyed with [`CACHE_KEY_LEN`] random bytes, 256-bit output.
type CacheMac = Blake2bMac<U32>;
const CACHE_KEY_LEN: usize = 32;

/// How clients prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Clients that send no username (and have no certificate identity) are let in.
    pub allow_anonymous: bool,
    /// A password file (lines `username:$argon2id$...` PHC strings, `#` comments, blank
    /// lines), or None.
    pub password_file: Option<PathBuf>,
    /// JWTs as passwords: the algorithm and the key file, or None.
    pub jwt: Option<JwtSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            allow_anonymous: true,
            password_file: None,
            jwt: None,
        }
    }
}

/// A password file or JWT key file that cannot be loaded. Names the file, and the line when one
/// is at fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the password file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("password file {path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("cannot read the JWT key file {path}: {source}")]
    JwtKeyRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JWT key file {path}: {problem}")]
    JwtKey { path: PathBuf, problem: String },
}

impl AuthError {
    /// Whether the JWT key file is at fault (rather than the password file).
    pub fn is_jwt_key(&self) -> bool {
        matches!(
            self,
            AuthError::JwtKeyRead { .. } | AuthError::JwtKey { .. }
        )
    }
}

/// Why a CONNECT is refused; the connection maps it to a CONNACK reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong password, a username without a password where a password file or
    /// JWT is used, or a JWT that does not verify or whose `sub` is not the username: 0x86 /
    /// 3.1.1 code 4.
    BadCredentials,
    /// No credentials and anonymous clients not allowed, or a JWT that verifies but whose
    /// `acl` claim cannot be read (what it would allow is unknown, so nothing is): 0x87 /
    /// code 5.
    NotAuthorized,
    /// Too many failures from this address lately: refused without checking (0x9F).
    RateLimited,
}

impl Refusal {
    /// Every [`Refusal::reason`], for metrics exported from the start.
    pub const REASONS: [&'static str; 3] = ["bad_credentials", "not_authorized", "rate_limited"];

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadCredentials => "bad_credentials",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// A CONNECT that may proceed, and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authenticated {
    /// `Some(name)`: the client's username is now `name` (a JWT's `sub`); `None`: the
    /// CONNECT's username stands.
    pub username: Option<String>,
    /// The topics its credentials grant it (a JWT's `acl` claim), for core's ACL, which the
    /// rules file must allow too; `None`: the credentials say nothing about topics.
    pub grants: Option<Arc<berth_core::acl::Grants>>,
}

impl Authenticated {
    /// Let in as it presented itself.
    pub const UNCHANGED: Authenticated = Authenticated {
        username: None,
        grants: None,
    };
}

/// What a CONNECT presents.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// A verified TLS client certificate's identity, when the listener uses it as the username.
    pub cert_identity: Option<&'a str>,
    pub addr: IpAddr,
}

// By hand so that a password never reaches a log line.
impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("cert_identity", &self.cert_identity)
            .field("addr", &self.addr)
            .finish()
    }
}

/// The password file, parsed and checked.
#[derive(Default)]
struct Users {
    /// Username → PHC string, each known at load to be an argon2 hash argon2 can verify.
    by_name: HashMap<String, String>,
    /// The first listed user's hash: what an unknown username is verified against.
    decoy: Option<String>,
}

/// Checks credentials; shared by every connection task (in an `Arc`). Reloadable (SIGHUP).
pub struct Authenticator {
    settings: AuthSettings,
    /// Swapped whole by [`Authenticator::reload`]; a verification in flight keeps its snapshot.
    users: RwLock<Arc<Users>>,
    /// Checks JWT passwords, when configured.
    jwt: Option<jwt::Verifier>,
    /// Username → MAC of the last password that verified (see the module docs).
    cache: Mutex<HashMap<String, CtOutput<CacheMac>>>,
    /// None only if the OS had no randomness at load: then nothing is cached.
    cache_key: Option<[u8; CACHE_KEY_LEN]>,
    /// A `std` mutex rather than tokio's: each use is one map lookup or update, and none spans
    /// an `.await`.
    limiter: Mutex<Limiter>,
    /// One permit per concurrent argon2 verification.
    verify_slots: Arc<Semaphore>,
    /// argon2 verifications started, so tests can see the cache at work.
    argon2_runs: AtomicU64,
}

// By hand: the users' hashes, the cache and its key stay out of logs.
impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reads the password file and the JWT key file, if configured. An error names the file
    /// (and the line); the node refuses to start on it.
    pub fn load(settings: AuthSettings) -> Result<Authenticator, AuthError> {
        let users = match &settings.password_file {
            Some(path) => read_users(path)?,
            None => Users::default(),
        };
        let jwt = match &settings.jwt {
            Some(jwt_settings) => Some(jwt::Verifier::load(jwt_settings.clone())?),
            None => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Ok(Authenticator {
            settings,
            users: RwLock::new(Arc::new(users)),
            jwt,
            cache: Mutex::new(HashMap::new()),
            cache_key: random_cache_key(),
            limiter: Mutex::new(Limiter::new(MAX_TRACKED_SOURCES)),
            verify_slots: Arc::new(Semaphore::new(cores)),
            argon2_runs: AtomicU64::new(0),
        })
    }

    /// Re-reads the password file and returns how many users it lists. On error the previous
    /// users stay in force and the error is returned for the caller to log. Without a password
    /// file there is nothing to read: `Ok(0)`. Reads the file synchronously. (The JWT key is
    /// read again by [`Authenticator::reload_jwt_key`], so that each reports on its own file.)
    pub fn reload(&self) -> Result<usize, AuthError> {
        let Some(path) = &self.settings.password_file else {
            return Ok(0);
        };
        let fresh = Arc::new(read_users(path)?);
        let count = fresh.by_name.len();
        let old = {
            let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *users, Arc::clone(&fresh))
        };
        self.lock_cache().retain(|user, _| {
            fresh
                .by_name
                .get(user)
                .is_some_and(|phc| old.by_name.get(user) == Some(phc))
        });
        Ok(count)
    }

    /// Re-reads the JWT key file: `Ok(true)` once the new key is in force. On error the
    /// previous key stays in force and the error is returned for the caller to log. Without
    /// JWT there is nothing to read: `Ok(false)`. Reads the file synchronously.
    pub fn reload_jwt_key(&self) -> Result<bool, AuthError> {
        match &self.jwt {
            Some(verifier) => verifier.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Decides whether a CONNECT may proceed, and under which username (rules in the module
    /// docs). Async because argon2 is deliberately slow: it runs on tokio's blocking pool. A
    /// `BadCredentials` or `NotAuthorized` refusal is counted against `credentials.addr` and
    /// returned only after [`FAILURE_DELAY`].
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Authenticated, Refusal> {
        let addr = credentials.addr;
        let limited = self.lock_limiter().is_limited(addr, Instant::now());
        if limited {
            return Err(Refusal::RateLimited);
        }
        let decision = self.decide(credentials).await;
        if decision.is_err() {
            self.lock_limiter().record_failure(addr, Instant::now());
            tokio::time::sleep(FAILURE_DELAY).await;
        }
        decision
    }

    /// Whether anonymous clients are let in (for the start-up warning).
    pub fn allows_anonymous(&self) -> bool {
        self.settings.allow_anonymous
    }

    /// Whether a password file is configured (what a reload reads).
    pub fn has_password_file(&self) -> bool {
        self.settings.password_file.is_some()
    }

    /// Whether JWT passwords are configured (what [`Authenticator::reload_jwt_key`] reads).
    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Rules 2 to 6; the caller has applied rule 1.
    async fn decide(&self, credentials: Credentials<'_>) -> Result<Authenticated, Refusal> {
        if credentials.cert_identity.is_some() {
            return Ok(Authenticated::UNCHANGED);
        }
        if let Some(verifier) = &self.jwt
            && let Some(token) = credentials.password.and_then(jwt::as_token)
        {
            return verifier.admit(token, credentials.username);
        }
        let Some(username) = credentials.username else {
            return self.anonymous();
        };
        if self.settings.password_file.is_none() {
            if self.jwt.is_some() {
                return Err(Refusal::BadCredentials);
            }
            return self.anonymous();
        }
        let Some(password) = credentials.password else {
            return Err(Refusal::BadCredentials);
        };
        if self.password_matches(username, password).await {
            Ok(Authenticated::UNCHANGED)
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    fn anonymous(&self) -> Result<Authenticated, Refusal> {
        if self.settings.allow_anonymous {
            Ok(Authenticated::UNCHANGED)
        } else {
            Err(Refusal::NotAuthorized)
        }
    }

    /// Whether `username` is listed with a hash `password` verifies against: from the cache,
    /// or by argon2 on the blocking pool.
    async fn password_matches(&self, username: &str, password: &[u8]) -> bool {
        let users = self.users();
        let phc = users.by_name.get(username);
        let tag = phc.and_then(|phc| self.cache_tag(username, phc, password));
        let cached = tag.as_ref().is_some_and(|tag| {
            self.lock_cache()
                .get(username)
                .is_some_and(|known| known == tag)
        });
        if cached {
            return true;
        }
        if phc.is_none() && users.decoy.is_none() {
            // An empty password file: every username is unknown, so there is nothing to hide.
            return false;
        }
        // The semaphore is never closed, so this only fails if that changes; refuse then.
        let Ok(permit) = Arc::clone(&self.verify_slots).acquire_owned().await else {
            return false;
        };
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let snapshot = Arc::clone(&users);
        let name = username.to_owned();
        let secret = password.to_vec();
        // The permit moves into the job, so it is released when argon2 finishes even if this
        // connection gives up waiting first.
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_listed(&snapshot, &name, &secret)
        });
        let verified = match job.await {
            Ok(verified) => verified,
            Err(error) => {
                tracing::warn!(%error, "password verification task failed; refusing the client");
                false
            }
        };
        if verified && let Some(tag) = tag {
            self.lock_cache().insert(username.to_owned(), tag);
        }
        verified
    }

    /// The cache's MAC for this attempt, or None when there is no cache key.
    fn cache_tag(&self, username: &str, phc: &str, password: &[u8]) -> Option<CtOutput<CacheMac>> {
        let key = self.cache_key.as_ref()?;
        let mut mac = <CacheMac as Mac>::new_from_slice(key).ok()?;
        // Length prefixes keep ("ab", "c…") and ("a", "bc…") apart.
        for field in [username.as_bytes(), phc.as_bytes()] {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        mac.update(password);
        Some(mac.finalize())
    }

    /// The current users; a reload does not change what this snapshot holds.
    fn users(&self) -> Arc<Users> {
        Arc::clone(&self.users.read().unwrap_or_else(PoisonError::into_inner))
    }

    // A poisoned lock means a panic elsewhere mid-insert or mid-retain; the maps are still
    // well-formed, and refusing every CONNECT from then on would be worse.
    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, CtOutput<CacheMac>>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_limiter(&self) -> MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// argon2 verifications started so far.
    #[cfg(test)]
    fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }
}

/// Runs on the blocking pool. An unknown user is verified against the decoy hash, and refused
/// whatever that says.
fn verify_listed(users: &Users, username: &str, password: &[u8]) -> bool {
    match users.by_name.get(username) {
        Some(phc) => argon2_verify(phc, password),
        None => {
            if let Some(decoy) = &users.decoy {
                let _spent_for_timing_only = argon2_verify(decoy, password);
            }
            false
        }
    }
}

/// argon2 takes the algorithm, version and cost from the PHC string, not from `Argon2`'s own
/// settings, so hashes made with other parameters verify too.
fn argon2_verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        // Every hash was parsed at load; this cannot happen, and a refusal is the safe answer.
        Err(_) => false,
    }
}

/// A key for the verification cache, or None (with a warning) if the OS has no randomness.
fn random_cache_key() -> Option<[u8; CACHE_KEY_LEN]> {
    let mut key = [0u8; CACHE_KEY_LEN];
    match OsRng.try_fill_bytes(&mut key) {
        Ok(()) => Some(key),
        Err(error) => {
            tracing::warn!(
                %error,
                "no OS randomness for the password verification cache; every CONNECT with a \
                 password will run argon2"
            );
            None
        }
    }
}

fn read_users(path: &Path) -> Result<Users, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_users(path, &text)
}

/// Each line is blank, a `#` comment, or `username:phc` split at the first `:` (a PHC string
/// has no `:`, a username may not either). Trailing whitespace, `\r` included, is ignored.
fn parse_users(path: &Path, text: &str) -> Result<Users, AuthError> {
    let mut users = Users::default();
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line_error = |problem: String| AuthError::Line {
            path: path.to_owned(),
            line: number,
            problem,
        };
        let line = raw.trim_end();
        if is_blank_or_comment(line) {
            continue;
        }
        let Some((user, phc)) = line.split_once(':') else {
            return Err(line_error(
                "expected `username:hash`, found no `:`".to_owned(),
            ));
        };
        if user.is_empty() {
            return Err(line_error("the username is empty".to_owned()));
        }
        if let Some(first) = first_seen.insert(user, number) {
            return Err(line_error(format!(
                "user {user:?} is listed twice (first on line {first})"
            )));
        }
        check_phc(phc).map_err(line_error)?;
        if users.decoy.is_none() {
            users.decoy = Some(phc.to_owned());
        }
        users.by_name.insert(user.to_owned(), phc.to_owned());
    }
    Ok(users)
}

fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim_start();
    line.is_empty() || line.starts_with('#')
}

/// Everything argon2 will need at verification time, checked now so that a typo stops the node
/// at start-up instead of locking a user out later.
fn check_phc(phc: &str) -> Result<(), String> {
    let hash =
        PasswordHash::new(phc).map_err(|error| format!("the hash is not a PHC string: {error}"))?;
    Algorithm::try_from(hash.algorithm).map_err(|_| {
        format!(
            "the hash's algorithm {} is not argon2id, argon2i or argon2d",
            hash.algorithm
        )
    })?;
    if let Some(version) = hash.version {
        Version::try_from(version)
            .map_err(|error| format!("the hash's argon2 version {version} is invalid: {error}"))?;
    }
    Params::try_from(&hash)
        .map_err(|error| format!("the hash's argon2 parameters are invalid: {error}"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("the hash has no salt or no output".to_owned());
    }
    Ok(())
}

/// A PHC string for `password` (argon2id, default parameters, random salt), for
/// `berth passwd`.
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    // `generate` panics if the OS has no randomness: a one-shot command can only stop then.
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password, &salt)?
        .to_string())
}

/// `file_text` with `user`'s line set to `user:phc`, for `berth passwd`: the first line for
/// `user` is replaced in place (later ones, which would stop the file from loading, are
/// dropped), or the line is appended. Every other line, comments included, is kept as it was.
/// Refuses usernames the file format cannot hold: empty, containing `:` or a line break, or
/// starting with `#` (the line would read as a comment).
pub fn set_user_line(file_text: &str, user: &str, phc: &str) -> Result<String, String> {
    if user.is_empty() {
        return Err("the username is empty".to_owned());
    }
    if user.contains([':', '\n', '\r']) {
        return Err(format!(
            "the username {user:?} contains ':' or a line break, which the password file cannot hold"
        ));
    }
    if user.trim_start().starts_with('#') {
        return Err(format!(
            "the username {user:?} starts with '#', so its line would read as a comment"
        ));
    }
    if phc.contains(['\n', '\r']) {
        return Err("the hash contains a line break".to_owned());
    }
    let entry = format!("{user}:{phc}");
    let mut out = String::with_capacity(file_text.len() + entry.len() + 2);
    let mut replaced = false;
    for chunk in file_text.split_inclusive('\n') {
        let content = chunk.trim_end_matches(['\n', '\r']);
        if entry_user(content) != Some(user) {
            out.push_str(chunk);
        } else if !replaced {
            out.push_str(&entry);
            out.push_str(&chunk[content.len()..]);
            replaced = true;
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&entry);
        out.push('\n');
    }
    Ok(out)
}

/// The username a password file line is for, as [`parse_users`] reads it.
fn entry_user(line: &str) -> Option<&str> {
    if is_blank_or_comment(line) {
        return None;
    }
    line.split_once(':').map(|(user, _)| user)
}

#[cfg(test)]
mod tests;
