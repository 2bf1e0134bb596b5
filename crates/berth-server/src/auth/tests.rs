//! The authenticator's rules, the password file format, the verification cache and the
//! failure limiter.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const ALICE: &str = "alice";
const ALICE_PASSWORD: &[u8] = b"correct horse battery staple";
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: IpAddr = IpAddr::V4(CLIENT_V4);
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
/// Let in under the username it sent.
const ADMITTED: Result<Authenticated, Refusal> = Ok(Authenticated::UNCHANGED);

/// A cheap argon2id hash (1 MiB, one pass): verification reads the cost from the PHC string,
/// so these verify like real ones, in milliseconds even in a debug build.
fn cheap_hash(password: &[u8]) -> String {
    let params = Params::new(1024, 1, 1, None).unwrap();
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .unwrap()
        .to_string()
}

/// A password file in its own temporary directory.
struct PasswordFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PasswordFile {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, text).unwrap();
        PasswordFile { _dir: dir, path }
    }

    fn with_alice() -> Self {
        Self::new(&format!("{ALICE}:{}\n", cheap_hash(ALICE_PASSWORD)))
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

fn load(file: Option<&PasswordFile>, allow_anonymous: bool) -> Authenticator {
    Authenticator::load(AuthSettings {
        allow_anonymous,
        password_file: file.map(|file| file.path.clone()),
        jwt: None,
    })
    .unwrap()
}

fn login<'a>(username: Option<&'a str>, password: Option<&'a [u8]>) -> Credentials<'a> {
    Credentials {
        username,
        password,
        cert_identity: None,
        addr: CLIENT,
    }
}

fn alice(password: &[u8]) -> Credentials<'_> {
    login(Some(ALICE), Some(password))
}

fn parse(text: &str) -> Result<Users, AuthError> {
    parse_users(Path::new("/etc/berth/passwd"), text)
}

fn line_problem(result: Result<Users, AuthError>) -> (usize, String) {
    match result {
        Err(AuthError::Line { line, problem, .. }) => (line, problem),
        Err(other) => panic!("expected a line error, got {other}"),
        Ok(users) => panic!("expected a line error, got {} users", users.by_name.len()),
    }
}

// --- the password file ---

#[test]
fn parses_users_around_comments_blank_lines_and_crlf() {
    let (a, b) = (cheap_hash(b"a"), cheap_hash(b"b"));
    let text = format!("# Berth users\n\n  # indented comment\nalice:{a}  \r\nbob:{b}\r\n   \n");
    let users = parse(&text).unwrap();
    assert_eq!(users.by_name.len(), 2);
    assert_eq!(users.by_name.get("alice"), Some(&a));
    assert_eq!(users.by_name.get("bob"), Some(&b));
    assert_eq!(users.decoy, Some(a), "the decoy is the first listed hash");
}

#[test]
fn an_empty_file_lists_nobody() {
    let users = parse("# nobody yet\n").unwrap();
    assert!(users.by_name.is_empty());
    assert!(users.decoy.is_none());
}

#[test]
fn splits_at_the_first_colon() {
    // A PHC string has no ':', so a second one makes the hash unparsable rather than
    // becoming part of the username.
    let text = format!("alice:{}:extra\n", cheap_hash(b"a"));
    let (line, problem) = line_problem(parse(&text));
    assert_eq!(line, 1);
    assert!(problem.contains("not a PHC string"), "{problem}");
}

#[test]
fn a_bad_hash_names_its_line() {
    let text = format!("# users\nalice:{}\nbob:not a hash\n", cheap_hash(b"a"));
    let Err(error) = parse(&text) else {
        panic!("a bad hash was accepted");
    };
    let message = error.to_string();
    assert!(message.contains("/etc/berth/passwd"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(
        message.contains("the hash is not a PHC string"),
        "{message}"
    );
}

#[test]
fn a_hash_argon2_could_not_verify_is_refused() {
    // Each is a well-formed PHC string that would never verify.
    const SALT_AND_OUTPUT: &str =
        "c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (phc, expected) in [
        (
            format!("$scrypt$ln=15,r=8,p=1${SALT_AND_OUTPUT}"),
            "not argon2id",
        ),
        (
            format!("$argon2id$v=18$m=1024,t=1,p=1${SALT_AND_OUTPUT}"),
            "version 18",
        ),
        (
            format!("$argon2id$v=19$m=1,t=1,p=1${SALT_AND_OUTPUT}"),
            "parameters are invalid",
        ),
        (
            "$argon2id$v=19$m=1024,t=1,p=1".to_owned(),
            "no salt or no output",
        ),
    ] {
        let (line, problem) = line_problem(parse(&format!("# users\nalice:{phc}\n")));
        assert_eq!(line, 2, "{phc}");
        assert!(problem.contains(expected), "{phc}: {problem}");
    }
    // The same salt and output under valid argon2 settings pass the check.
    check_phc(&format!("$argon2id$v=19$m=1024,t=1,p=1${SALT_AND_OUTPUT}")).unwrap();
}

#[test]
fn a_line_without_a_colon_or_a_username_is_refused() {
    let (line, problem) = line_problem(parse("\nalice\n"));
    assert_eq!(line, 2);
    assert!(problem.contains("no `:`"), "{problem}");

    let text = format!(":{}\n", cheap_hash(b"a"));
    let (line, problem) = line_problem(parse(&text));
    assert_eq!(line, 1);
    assert!(problem.contains("username is empty"), "{problem}");
}

#[test]
fn a_user_listed_twice_is_refused() {
    let text = format!(
        "alice:{}\nbob:{}\n# again:\nalice:{}\n",
        cheap_hash(b"a"),
        cheap_hash(b"b"),
        cheap_hash(b"c")
    );
    let (line, problem) = line_problem(parse(&text));
    assert_eq!(line, 4);
    assert!(problem.contains("\"alice\""), "{problem}");
    assert!(problem.contains("first on line 1"), "{problem}");
}

#[test]
fn a_missing_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-passwd");
    let error = Authenticator::load(AuthSettings {
        allow_anonymous: false,
        password_file: Some(path.clone()),
        jwt: None,
    })
    .unwrap_err();
    match &error {
        AuthError::Read { path: named, .. } => assert_eq!(named, &path),
        other => panic!("expected a read error, got {other}"),
    }
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn settings_default_to_anonymous_without_a_file() {
    let settings = AuthSettings::default();
    assert!(settings.allow_anonymous);
    assert_eq!(settings.password_file, None);
    assert_eq!(settings.jwt, None);
    assert!(Authenticator::load(settings).unwrap().allows_anonymous());
}

// --- the rules ---

#[tokio::test(start_paused = true)]
async fn a_listed_user_with_the_right_password_is_let_in() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_an_unknown_user_or_no_password_is_bad_credentials() {
    let file = PasswordFile::with_alice();
    // Anonymous clients are allowed: a username still has to be right.
    let auth = load(Some(&file), true);
    let refused = Err(Refusal::BadCredentials);
    assert_eq!(auth.authenticate(alice(b"wrong")).await, refused);
    assert_eq!(
        auth.authenticate(login(Some("mallory"), Some(ALICE_PASSWORD)))
            .await,
        refused
    );
    assert_eq!(auth.authenticate(login(Some(ALICE), None)).await, refused);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_user_costs_a_verification_like_a_known_one() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    let refused = auth
        .authenticate(login(Some("mallory"), Some(ALICE_PASSWORD)))
        .await;
    assert_eq!(refused, Err(Refusal::BadCredentials));
    assert_eq!(auth.argon2_runs(), 1, "the decoy hash is verified");
}

#[tokio::test(start_paused = true)]
async fn a_certificate_identity_needs_nothing_else() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    let by_certificate = Credentials {
        cert_identity: Some("device-17"),
        ..login(None, None)
    };
    assert_eq!(auth.authenticate(by_certificate).await, ADMITTED);
    // The identity stands in for the username: a stale password does not matter.
    let with_stale_password = Credentials {
        cert_identity: Some("device-17"),
        ..alice(b"wrong")
    };
    assert_eq!(auth.authenticate(with_stale_password).await, ADMITTED);
    assert_eq!(auth.argon2_runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_file_a_username_is_anonymous() {
    let open = load(None, true);
    assert_eq!(open.authenticate(alice(b"anything")).await, ADMITTED);
    let closed = load(None, false);
    assert_eq!(
        closed.authenticate(alice(b"anything")).await,
        Err(Refusal::NotAuthorized)
    );
}

#[tokio::test(start_paused = true)]
async fn no_username_follows_the_anonymous_setting() {
    let file = PasswordFile::with_alice();
    assert_eq!(
        load(Some(&file), true)
            .authenticate(login(None, None))
            .await,
        ADMITTED
    );
    let closed = load(Some(&file), false);
    assert_eq!(
        closed.authenticate(login(None, None)).await,
        Err(Refusal::NotAuthorized)
    );
    // MQTT 5 allows a password without a username; it proves nothing and is ignored.
    assert_eq!(
        closed.authenticate(login(None, Some(ALICE_PASSWORD))).await,
        Err(Refusal::NotAuthorized)
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_answered_after_the_failure_delay() {
    let auth = load(None, false);
    let started = tokio::time::Instant::now();
    assert_eq!(
        auth.authenticate(login(None, None)).await,
        Err(Refusal::NotAuthorized)
    );
    assert!(started.elapsed() >= FAILURE_DELAY);

    let started = tokio::time::Instant::now();
    assert_eq!(
        load(None, true).authenticate(login(None, None)).await,
        ADMITTED
    );
    assert!(
        started.elapsed() < FAILURE_DELAY,
        "a success is not delayed"
    );
}

#[test]
fn refusal_reasons_are_listed() {
    for refusal in [
        Refusal::BadCredentials,
        Refusal::NotAuthorized,
        Refusal::RateLimited,
    ] {
        assert!(Refusal::REASONS.contains(&refusal.reason()), "{refusal:?}");
    }
}

#[test]
fn debug_output_hides_the_password() {
    let shown = format!("{:?}", alice(b"hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("104, 117"), "{shown}"); // "hu" as bytes
    assert!(shown.contains("redacted"), "{shown}");
}

// --- the verification cache ---

#[tokio::test(start_paused = true)]
async fn a_verified_password_is_not_verified_again() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    assert_eq!(auth.argon2_runs(), 1);
    for _ in 0..3 {
        assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    }
    assert_eq!(auth.argon2_runs(), 1, "later attempts hit the cache");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_is_never_cached() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    for runs in 2..=3 {
        assert_eq!(
            auth.authenticate(alice(b"wrong")).await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(auth.argon2_runs(), runs, "each wrong attempt runs argon2");
    }
    // Nor does it displace the right one.
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    assert_eq!(auth.argon2_runs(), 3);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_users_cached_and_drops_changed_ones() {
    let alice_line = format!("{ALICE}:{}\n", cheap_hash(ALICE_PASSWORD));
    let file = PasswordFile::new(&alice_line);
    let auth = load(Some(&file), false);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    assert_eq!(auth.argon2_runs(), 1);

    // Bob is added, Alice's line is untouched: her entry survives.
    file.rewrite(&format!("{alice_line}bob:{}\n", cheap_hash(b"bob's")));
    assert_eq!(auth.reload().unwrap(), 2);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
    assert_eq!(auth.argon2_runs(), 1);
    assert_eq!(
        auth.authenticate(login(Some("bob"), Some(b"bob's"))).await,
        ADMITTED
    );

    // Alice's password changes: the cached one no longer gets in.
    file.rewrite(&format!("{ALICE}:{}\n", cheap_hash(b"new password")));
    assert_eq!(auth.reload().unwrap(), 1);
    assert_eq!(
        auth.authenticate(alice(ALICE_PASSWORD)).await,
        Err(Refusal::BadCredentials)
    );
    assert_eq!(auth.authenticate(alice(b"new password")).await, ADMITTED);
    assert_eq!(
        auth.authenticate(login(Some("bob"), Some(b"bob's"))).await,
        Err(Refusal::BadCredentials),
        "bob was removed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cache_entry_is_bound_to_the_hash_it_was_verified_against() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);

    // Swap the users behind the cache's back, as a reload racing a verification would.
    let mut replaced = Users::default();
    replaced
        .by_name
        .insert(ALICE.to_owned(), cheap_hash(b"new password"));
    *auth.users.write().unwrap() = Arc::new(replaced);
    assert_eq!(
        auth.authenticate(alice(ALICE_PASSWORD)).await,
        Err(Refusal::BadCredentials),
        "the cached MAC covers the old hash, so it does not match"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_keeps_the_previous_users() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    file.rewrite("alice:not-a-hash\n");
    match auth.reload() {
        Err(AuthError::Line { line: 1, .. }) => {}
        other => panic!("expected a line 1 error, got {other:?}"),
    }
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);

    std::fs::remove_file(&file.path).unwrap();
    assert!(matches!(auth.reload(), Err(AuthError::Read { .. })));
    assert_eq!(auth.authenticate(alice(ALICE_PASSWORD)).await, ADMITTED);
}

#[test]
fn reload_without_a_file_reads_nothing() {
    assert_eq!(load(None, true).reload().unwrap(), 0);
}

// --- the failure limit ---

#[tokio::test(start_paused = true)]
async fn too_many_failures_from_one_address_are_refused_unchecked() {
    let file = PasswordFile::with_alice();
    let auth = load(Some(&file), false);
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            auth.authenticate(login(None, None)).await,
            Err(Refusal::NotAuthorized)
        );
    }
    let started = tokio::time::Instant::now();
    assert_eq!(
        auth.authenticate(alice(ALICE_PASSWORD)).await,
        Err(Refusal::RateLimited),
        "even the right password"
    );
    assert_eq!(auth.argon2_runs(), 0, "nothing was verified");
    assert!(
        started.elapsed() < FAILURE_DELAY,
        "answered without the delay"
    );

    let elsewhere = Credentials {
        addr: OTHER_CLIENT,
        ..alice(ALICE_PASSWORD)
    };
    assert_eq!(auth.authenticate(elsewhere).await, ADMITTED);
}

#[test]
fn the_limit_is_reached_at_max_failures() {
    let mut limiter = Limiter::new(MAX_TRACKED_SOURCES);
    let t0 = Instant::now();
    for _ in 1..MAX_FAILURES {
        limiter.record_failure(CLIENT, t0);
    }
    assert!(!limiter.is_limited(CLIENT, t0));
    limiter.record_failure(CLIENT, t0);
    assert!(limiter.is_limited(CLIENT, t0));
    assert!(!limiter.is_limited(OTHER_CLIENT, t0));
}

#[test]
fn the_limit_lifts_when_the_window_from_the_first_failure_closes() {
    let mut limiter = Limiter::new(MAX_TRACKED_SOURCES);
    let t0 = Instant::now();
    limiter.record_failure(CLIENT, t0);
    let late = t0 + Duration::from_secs(30);
    for _ in 1..MAX_FAILURES {
        limiter.record_failure(CLIENT, late);
    }
    assert!(limiter.is_limited(CLIENT, late));
    let just_before = t0 + FAILURE_WINDOW - Duration::from_millis(1);
    assert!(limiter.is_limited(CLIENT, just_before));
    let closed = t0 + FAILURE_WINDOW;
    assert!(!limiter.is_limited(CLIENT, closed));

    // The next failure opens a fresh window with a count of one.
    limiter.record_failure(CLIENT, closed);
    for _ in 2..MAX_FAILURES {
        limiter.record_failure(CLIENT, closed);
    }
    assert!(!limiter.is_limited(CLIENT, closed));
}

#[test]
fn ipv6_sources_count_by_slash_64_and_mapped_ipv4_as_ipv4() {
    let mut limiter = Limiter::new(MAX_TRACKED_SOURCES);
    let t0 = Instant::now();
    for host in 0..MAX_FAILURES {
        let addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, u16::try_from(host).unwrap());
        limiter.record_failure(IpAddr::V6(addr), t0);
    }
    let same_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
    let next_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
    assert!(limiter.is_limited(same_64, t0));
    assert!(!limiter.is_limited(next_64, t0));

    for _ in 0..MAX_FAILURES {
        limiter.record_failure(IpAddr::V6(CLIENT_V4.to_ipv6_mapped()), t0);
    }
    assert!(limiter.is_limited(CLIENT, t0));
    assert!(
        !limiter.is_limited(OTHER_CLIENT, t0),
        "IPv4 is not one bucket"
    );
}

fn nth_v4(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + u32::try_from(n).unwrap()))
}

#[test]
fn the_table_never_holds_more_than_its_capacity() {
    let mut limiter = Limiter::new(MAX_TRACKED_SOURCES);
    let t0 = Instant::now();
    for n in 0..=MAX_TRACKED_SOURCES {
        limiter.record_failure(nth_v4(n), t0);
    }
    assert_eq!(limiter.tracked(), MAX_TRACKED_SOURCES);
}

#[test]
fn a_full_table_drops_closed_windows_first_then_the_oldest() {
    let mut limiter = Limiter::new(3);
    let t0 = Instant::now();
    let limit = |limiter: &mut Limiter, addr: IpAddr, at: Instant| {
        for _ in 0..MAX_FAILURES {
            limiter.record_failure(addr, at);
        }
    };
    limit(&mut limiter, nth_v4(0), t0);
    limit(&mut limiter, nth_v4(1), t0 + Duration::from_secs(10));
    limit(&mut limiter, nth_v4(2), t0 + Duration::from_secs(20));
    assert_eq!(limiter.tracked(), 3);

    // All windows open: the oldest (source 0) makes room.
    let t1 = t0 + Duration::from_secs(30);
    limit(&mut limiter, nth_v4(3), t1);
    assert_eq!(limiter.tracked(), 3);
    assert!(!limiter.is_limited(nth_v4(0), t1));
    assert!(limiter.is_limited(nth_v4(1), t1));
    assert!(limiter.is_limited(nth_v4(3), t1));

    // Sources 1 and 2 have closed their windows: both go, the open ones stay.
    let t2 = t0 + Duration::from_secs(80);
    limiter.record_failure(nth_v4(4), t2);
    assert_eq!(limiter.tracked(), 2);
    assert!(limiter.is_limited(nth_v4(3), t2));
}

// --- `berth passwd` helpers ---

#[test]
fn hash_password_makes_a_default_argon2id_hash_that_verifies() {
    let phc = hash_password(b"s3cret").unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(phc.contains("m=19456,t=2,p=1"), "{phc}");
    check_phc(&phc).unwrap();
    // Default parameters make this the slowest test here (debug builds run argon2 slowly).
    assert!(argon2_verify(&phc, b"s3cret"));
}

#[test]
fn argon2_verify_rejects_a_wrong_password() {
    let phc = cheap_hash(b"s3cret");
    assert!(argon2_verify(&phc, b"s3cret"));
    assert!(!argon2_verify(&phc, b"s3creT"));
    assert!(!argon2_verify("garbage", b"s3cret"));
}

#[test]
fn set_user_line_appends_a_new_user() {
    assert_eq!(set_user_line("", "alice", "$h1").unwrap(), "alice:$h1\n");
    assert_eq!(
        set_user_line("# users\nbob:$h2", "alice", "$h1").unwrap(),
        "# users\nbob:$h2\nalice:$h1\n"
    );
}

#[test]
fn set_user_line_replaces_in_place_and_keeps_everything_else() {
    let before = "# users\r\nalice:$old\r\n\r\n# alice:$commented\r\nbob:$h2\r\n";
    assert_eq!(
        set_user_line(before, "alice", "$new").unwrap(),
        "# users\r\nalice:$new\r\n\r\n# alice:$commented\r\nbob:$h2\r\n"
    );
    // A name that is a prefix of another is not that other.
    assert_eq!(
        set_user_line("alicex:$h\n", "alice", "$new").unwrap(),
        "alicex:$h\nalice:$new\n"
    );
}

#[test]
fn set_user_line_drops_later_duplicates() {
    assert_eq!(
        set_user_line("alice:$1\nbob:$2\nalice:$3\n", "alice", "$new").unwrap(),
        "alice:$new\nbob:$2\n"
    );
}

#[test]
fn set_user_line_output_loads() {
    let text = set_user_line("# users\n", "alice", &cheap_hash(b"a")).unwrap();
    let text = set_user_line(&text, "bob", &cheap_hash(b"b")).unwrap();
    let text = set_user_line(&text, "alice", &cheap_hash(b"c")).unwrap();
    let users = parse(&text).unwrap();
    assert_eq!(users.by_name.len(), 2);
    let alice = users.by_name.get("alice").unwrap();
    assert!(argon2_verify(alice, b"c"));
}

#[test]
fn set_user_line_refuses_names_the_file_cannot_hold() {
    for name in ["", "al:ice", "al\nice", "al\rice", "#alice", " #alice"] {
        let error = set_user_line("", name, "$h").unwrap_err();
        assert!(!error.is_empty(), "{name:?}");
    }
    assert!(set_user_line("", "alice", "$h\nbob:$x").is_err());
}
