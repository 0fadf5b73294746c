//! HTTP basic authentication for `/metrics` (the `basic_auth_users` of the web config
//! file), and the weak-credential policy.
//!
//! - Passwords are stored as bcrypt hashes only. A request's password is checked with
//!   bcrypt on tokio's blocking pool (never on the thread that runs the connections),
//!   at most [`BCRYPT_CONCURRENCY`] at a time per worker.
//! - A (user, password) pair that verified once is remembered as its SHA-256 digest, and
//!   later requests compare digests in constant time (`subtle`), so a scrape every few
//!   seconds costs no bcrypt. A small ring of recently failed digests spares bcrypt for
//!   a client that keeps sending the same wrong password.
//! - An unknown user name still costs one bcrypt run, so response times do not tell which
//!   user names exist. User names are compared in constant time too.
//! - At startup every configured hash is tried against known-weak passwords (empty, the
//!   user name, the seeds' `secret`, and [`WEAK_PASSWORDS`]); a match refuses to start
//!   unless `--allow-weak-credentials` is given.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::sync::Mutex;

use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ServerError;

/// Passwords refused at startup (besides the empty one and the user's own name).
pub const WEAK_PASSWORDS: &[&str] = &[
    "secret",
    "password",
    "admin",
    "changeme",
    "prometheus",
    "metrics",
    "muster",
    "123456",
    "12345678",
    "qwerty",
    "letmein",
    "root",
    "test",
    "default",
];

/// bcrypt runs at the same time per worker process; further checks wait their turn.
pub const BCRYPT_CONCURRENCY: usize = 2;

/// Failed (user, password) digests remembered per worker.
const FAILED_MEMORY: usize = 64;

/// The `WWW-Authenticate` challenge of a 401.
pub const CHALLENGE: &str = "Basic realm=\"muster\"";

/// Longest accepted `Authorization` header value.
const MAX_HEADER: usize = 4096;

type DigestBytes = [u8; 32];

struct User {
    name: String,
    hash: String,
    /// Digest of the (user, password) pair that verified, once one has.
    verified: Mutex<Option<DigestBytes>>,
}

/// The users of `basic_auth_users` and their verification caches.
pub(crate) struct BasicAuth {
    users: Vec<User>,
    failed: Mutex<VecDeque<DigestBytes>>,
    permits: tokio::sync::Semaphore,
}

fn digest(user: &[u8], password: &[u8]) -> DigestBytes {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_le_bytes());
    h.update(user);
    h.update(password);
    h.finalize().into()
}

/// Why a password is weak, if it is one of the candidates.
fn weak_reason(user: &str, hash: &str) -> Option<String> {
    let check = |p: &str| bcrypt::verify(p, hash).unwrap_or(false);
    if check("") {
        return Some("the password is empty".into());
    }
    if check(user) {
        return Some("the password is the user name".into());
    }
    WEAK_PASSWORDS
        .iter()
        .find(|p| check(p))
        .map(|p| format!("the password is {p:?}, one of the most common passwords"))
}

impl BasicAuth {
    /// Checks the users (names usable in basic auth, hashes that are bcrypt); `err`
    /// makes an error naming a field. Weak passwords: [`BasicAuth::check_weak`].
    pub(crate) fn new(
        users: BTreeMap<String, String>,
        err: impl Fn(&str, String) -> ServerError,
    ) -> Result<BasicAuth, ServerError> {
        let mut out = Vec::new();
        for (name, hash) in users {
            let field = format!("basic_auth_users.{name}");
            if name.is_empty() {
                return Err(err("basic_auth_users", "a user name is empty".into()));
            }
            if name.contains(':') || name.chars().any(char::is_control) {
                return Err(err(
                    &field,
                    "a user name cannot contain ':' or control characters".into(),
                ));
            }
            let hash = hash.trim().to_string();
            let parts = bcrypt::HashParts::from_str(&hash).map_err(|e| {
                err(
                    &field,
                    format!(
                        "not a bcrypt hash ({e}); store hashes, not passwords: \
                         make one with `htpasswd -nBC 10 {name}`"
                    ),
                )
            })?;
            if parts.get_cost() < 10 {
                tracing::warn!(
                    user = %name,
                    cost = parts.get_cost(),
                    "bcrypt cost below 10 makes guessing the password cheaper"
                );
            }
            out.push(User {
                name,
                hash,
                verified: Mutex::new(None),
            });
        }
        Ok(BasicAuth {
            users: out,
            failed: Mutex::new(VecDeque::new()),
            permits: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
        })
    }

    /// Refuses a user whose password is a known-weak one (bcrypt of each candidate
    /// against each hash: slow by design), unless `allow_weak`, which logs a warning
    /// per weak user instead.
    pub(crate) fn check_weak(
        &self,
        allow_weak: bool,
        err: impl Fn(&str, String) -> ServerError,
    ) -> Result<(), ServerError> {
        for User { name, hash, .. } in &self.users {
            let field = format!("basic_auth_users.{name}");
            if let Some(reason) = weak_reason(name, hash) {
                if allow_weak {
                    tracing::warn!(user = %name, %reason, "weak credentials allowed by --allow-weak-credentials");
                } else {
                    return Err(err(
                        &field,
                        format!(
                            "weak credentials refused: {reason}. Anyone can guess it; choose a \
                             long random password (e.g. `openssl rand -base64 24`) and store its \
                             hash (`htpasswd -nBC 10 {name}`), or start with \
                             --allow-weak-credentials to accept it anyway"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configured user names.
    pub(crate) fn user_names(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.name.as_str()).collect()
    }

    /// Whether the `Authorization` header carries the credentials of a configured user.
    /// Never panics; a missing or malformed header is simply `false`.
    pub(crate) async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let d = digest(&user, &password);
        // Constant-time scan over every user (no early exit on a match).
        let mut found: Option<&User> = None;
        for u in &self.users {
            if bool::from(u.name.as_bytes().ct_eq(&user)) {
                found = Some(u);
            }
        }
        if let Some(u) = found {
            let cached = *u.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cached.is_some_and(|c| bool::from(c.ct_eq(&d))) {
                return true;
            }
        }
        if self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .fold(0u8, |acc, f| acc | f.ct_eq(&d).unwrap_u8())
            == 1
        {
            return false;
        }
        // An unknown user is checked against some real hash, so it takes as long.
        let Some(hash) = found.or(self.users.first()).map(|u| u.hash.clone()) else {
            return false;
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        match (ok, found) {
            (true, Some(u)) => {
                *u.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
                true
            }
            _ => {
                let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                if f.len() >= FAILED_MEMORY {
                    f.pop_front();
                }
                f.push_back(d);
                false
            }
        }
    }
}

/// Splits `Basic base64(user:password)`; `None` for anything else.
fn parse_basic(v: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let v = v.as_bytes();
    if v.len() > MAX_HEADER || v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let b64 = std::str::from_utf8(&v[6..]).ok()?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    Some((raw[..colon].to_vec(), raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).expect("hash")))
            .collect()
    }

    fn err(field: &str, m: String) -> ServerError {
        ServerError::Config(format!("{field}: {m}"))
    }

    /// The users, with the weak-password check applied.
    fn checked(
        users: BTreeMap<String, String>,
        allow_weak: bool,
    ) -> Result<BasicAuth, ServerError> {
        let auth = BasicAuth::new(users, err)?;
        auth.check_weak(allow_weak, err)?;
        Ok(auth)
    }

    fn basic(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).expect("header")
    }

    #[test]
    fn weak_credentials_are_refused_with_a_reason() {
        for (u, p, why) in [
            ("metrics", "secret", "\"secret\""),
            ("ann", "", "empty"),
            ("bob", "bob", "user name"),
            ("carl", "changeme", "\"changeme\""),
        ] {
            let e = checked(users(&[(u, p)]), false)
                .err()
                .unwrap_or_else(|| panic!("{u}:{p} accepted"));
            let m = e.to_string();
            assert!(m.contains(&format!("basic_auth_users.{u}")), "{m}");
            assert!(
                m.contains(why) && m.contains("--allow-weak-credentials"),
                "{m}"
            );
        }
        assert!(checked(users(&[("metrics", "secret")]), true).is_ok());
        assert!(checked(users(&[("ann", "Vx9-long-random")]), false).is_ok());
        let mut plain = BTreeMap::new();
        plain.insert("ann".to_string(), "hunter2-plaintext".to_string());
        let e = checked(plain, false).err().expect("plain text");
        assert!(e.to_string().contains("not a bcrypt hash"), "{e}");
    }

    #[test]
    fn htpasswd_hashes_work() {
        // `htpasswd -nbBC 4 prometheus 'Zq7-uF2x-9kLp-w3Rt'` (apache2-utils).
        let mut users = BTreeMap::new();
        users.insert(
            "prometheus".to_string(),
            "$2y$04$CuoRgIu1M5IfDCWBzMPWUeG3nfk6dZp1EvUE6UN1rwgSxNs6WJ6mK".to_string(),
        );
        let auth = checked(users, false).expect("htpasswd hash accepted");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            assert!(
                auth.check(Some(&basic("prometheus", "Zq7-uF2x-9kLp-w3Rt")))
                    .await
            );
            assert!(
                !auth
                    .check(Some(&basic("prometheus", "Zq7-uF2x-9kLp-w3R")))
                    .await
            );
        });
    }

    #[test]
    fn bcrypt_runs_off_the_runtime_thread() {
        // Built directly (no startup weak check) with a slow hash.
        let auth = BasicAuth {
            users: vec![User {
                name: "ann".into(),
                hash: bcrypt::hash("Vx9-long-random", 9).expect("hash"),
                verified: Mutex::new(None),
            }],
            failed: Mutex::new(VecDeque::new()),
            permits: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let t = std::sync::Arc::clone(&ticks);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tokio::task::yield_now().await;
            let start = std::time::Instant::now();
            assert!(!auth.check(Some(&basic("ann", "wrong"))).await);
            let took = start.elapsed();
            ticker.abort();
            let n = ticks.load(std::sync::atomic::Ordering::Relaxed);
            // The runtime kept running other tasks while bcrypt ran.
            assert!(n >= 3, "{n} ticks during a {took:?} bcrypt check");
        });
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for h in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            "Basic bm9jb2xvbg==", // "nocolon"
            "basic",
        ] {
            assert!(parse_basic(&HeaderValue::from_static(h)).is_none(), "{h}");
        }
        let (u, p) = parse_basic(&basic("ann", "a:b")).expect("parse");
        assert_eq!((u.as_slice(), p.as_slice()), (&b"ann"[..], &b"a:b"[..]));
    }

    #[test]
    fn check_verifies_and_caches() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut auth = checked(users(&[("ann", "Vx9-long-random")]), false).expect("ok");
        rt.block_on(async {
            assert!(!auth.check(None).await);
            assert!(!auth.check(Some(&basic("ann", "wrong"))).await);
            assert!(!auth.check(Some(&basic("nobody", "Vx9-long-random"))).await);
            assert!(auth.check(Some(&basic("ann", "Vx9-long-random"))).await);
            assert!(auth.users[0].verified.lock().expect("lock").is_some());
        });
        // Cached: later checks need no bcrypt (the hash is made unusable to prove it).
        auth.users[0].hash = "not a hash".into();
        rt.block_on(async {
            assert!(auth.check(Some(&basic("ann", "Vx9-long-random"))).await);
            assert!(!auth.check(Some(&basic("ann", "wrong"))).await);
            assert!(!auth.check(Some(&basic("ann", "Vx9-long-random!"))).await);
        });
    }
}
