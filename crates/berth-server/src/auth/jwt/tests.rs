//! JWT passwords through [`Authenticator::authenticate`].

use std::net::{IpAddr, Ipv4Addr};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::super::{
    AuthError, AuthSettings, Authenticated, Authenticator, Credentials, FAILURE_DELAY,
    MAX_FAILURES, Refusal,
};
use super::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const SECRET: &[u8] = b"a shared secret of more than 32 bytes, for tests";
const DEVICE: &str = "device-17";

/// A fixed P-256 key pair for tests only (PKCS#8 private key, SPKI public key).
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHbFAeWjRbCy9iavM
7DHatuns+GbLb/sUINdei5B1CEehRANCAASOMapzpUXbftvEzj3QcEVMTsm3Dqlo
A+hIsE2tkHt4D/2aCM+huzMgRugOvQMsNtlzxxIMpPWBigemFngGv8VG
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjjGqc6VF237bxM490HBFTE7Jtw6p
aAPoSLBNrZB7eA/9mgjPobszIEboDr0DLDbZc8cSDKT1gYoHphZ4Br/FRg==
-----END PUBLIC KEY-----
";
/// A P-384 public key: a valid EC key, but not for ES256.
const EC_P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE0R+EgLhptSOtOk7CPCbbv2Haop59k1I5
Tn5aqaVlkudoJJYfhod9jCLo72BFQudJIrgYx9tXxa9Bc2syuF4pkPk3odgpjSxj
uQpbsXnXSpNkqTcyu2enB3fmVFVNAv5y
-----END PUBLIC KEY-----
";
/// A fixed RSA 2048 key pair for tests only.
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDeNmfZnN04kbxM
WYR7KQiVn9MJ3zqJloP2ceLVILVBrn7hH/IfOniYUD4hNvhUVdoTVI5x5ue2lGUd
vL29CDBVBLYN+QOUaEgrjP7aUgx1RLFoARzhHWnPdKRJQz/grwH/4ou7MfX1c4xM
N5ZcUJAn4oCjXeJgL8XGXMOk5lTAvIYYKgDaareL0LjRE2WwG+sBgKZ0eWaJXfSK
eIb2bUhHZ+o/X9YJQ0SzdAjHs35VUnXkfQAk2zmBdJD8PGolu/FixzWNA/YUHJML
B/AEC2qLbPKjmgpBVL62A4gg8r+wEcJExF+Alzpdw2rWBHNDRTdUSeJ7wSLw+cTC
jIZbj/yTAgMBAAECggEAZPOHk4PhtrjyuCb0+nTmWv9cg4AgGnDAa95KZHPzFK9f
Igx+1XQdZGkUCMft4naMV7rS6ekyfK6HD473DiFhv8YfpVJrL2l+3BY2k92xnjcC
d9MFmTnhH6gImOYN55fqSyNTQsyMRqHja57XVwIcs5oBwfY9iWA6tAbhtREVEOfc
Cz55Qjdn4ghjVeJv1iG9F4LTIyiIqS5jQPxph50rT4rMqzMQ86GYHWOInNwRqCmO
2EvW6sqAhhar8N9IyjNyLpWSxyUo9R5/6lNWgjAT7s0w+YY3hH8TGZwYht9mAXQU
/dSUVvCPCC87b56J7UIVb2LcEjW8z5r4fThUkU7tzQKBgQD4MzNmtuZWoBnABRAn
vlL8+G8gY5QTwLCYO3AIVQkuJQrsdikv4YlYh53C6+hxlBhvoMoNphlNpbphf8w3
693QJx4Iy/AUBuM7NFce1uc7wAP6z1BbV+szn42U3wUo08uB+U97edFAszzvHZMH
YCNi39faXz/BO9xEV80eMV2avQKBgQDlMiHnImpE52VlqDLYIuSk9O2CNtEgrP2L
S4GoITGWiCpjir/c6DpQVRgslb3dQHP/hB2SgwKRoKNwRgW1s7c8lFuyegN/h89D
DLCYT8QIJX9D6LT/Ze1S1QSNEDR90/I+D1mUyx2BdMizoKkXJQZV2IxLn8xLMthT
8N55ZQARjwKBgAdNOk3jQ5N40kkb3QXOS5K1nE9PnqOWH5va48ja95Ir9M5QC5Yl
BG1eT/3UAtqUiMN/73HHWSc3oOwNXmymu7fL7s5DcaSlLzomqAl4OQVA+N0ADFUj
mP/Dyd5/UR+KW4pPU09GnilRHJHMRO8KnP/jpe3+r1l38VrxWk9xFFfhAoGBALCJ
3PNb3t8UHVYgKImy1sr4nbke4BZ7KRCSKFyItNluKLhjt0VA2ynlYal17bjuXGsE
KIMhxmjFgx6H0P4UX5+Z5seik+83fL34mE25oxVjTJPSOxg+On8C9W5yfPwutPh4
elfR2/hLLAywQ45ARpD5K5dUjtedYmPFtJds5JChAoGAdnj9EtHy+Nc/AlH4GS7h
Z6u3k/mSeIuG7/MUObCDBe8GdV/xne+nKpvKi9OdkVyDIk/+54V9ZXQcpvjPpH4f
DDHwPKVrCnZ57ptCs2ZdVCX/94xM9z6Je14CIBPzmnYlhRkoXkHJXqqJe+z3w1cP
pH3liEoYqIdOc0/jRvMlveg=
-----END PRIVATE KEY-----
";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3jZn2ZzdOJG8TFmEeykI
lZ/TCd86iZaD9nHi1SC1Qa5+4R/yHzp4mFA+ITb4VFXaE1SOcebntpRlHby9vQgw
VQS2DfkDlGhIK4z+2lIMdUSxaAEc4R1pz3SkSUM/4K8B/+KLuzH19XOMTDeWXFCQ
J+KAo13iYC/FxlzDpOZUwLyGGCoA2mq3i9C40RNlsBvrAYCmdHlmiV30iniG9m1I
R2fqP1/WCUNEs3QIx7N+VVJ15H0AJNs5gXSQ/DxqJbvxYsc1jQP2FByTCwfwBAtq
i2zyo5oKQVS+tgOIIPK/sBHCRMRfgJc6XcNq1gRzQ0U3VEnie8Ei8PnEwoyGW4/8
kwIDAQAB
-----END PUBLIC KEY-----
";

/// A key file in its own temporary directory.
struct KeyFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl KeyFile {
    fn new(contents: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.key");
        std::fs::write(&path, contents).unwrap();
        KeyFile { _dir: dir, path }
    }

    fn settings(&self, algorithm: JwtAlgorithm) -> AuthSettings {
        AuthSettings {
            allow_anonymous: false,
            password_file: None,
            jwt: Some(JwtSettings {
                algorithm,
                key_file: self.path.clone(),
            }),
        }
    }

    fn load(&self, algorithm: JwtAlgorithm) -> Authenticator {
        Authenticator::load(self.settings(algorithm)).unwrap()
    }

    fn load_error(&self, algorithm: JwtAlgorithm) -> AuthError {
        Authenticator::load(self.settings(algorithm)).unwrap_err()
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A token for `claims`, signed with `alg` and `key`.
fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &serde_json::Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

/// `sub` DEVICE, valid for ten minutes.
fn device_claims() -> serde_json::Value {
    json!({ "sub": DEVICE, "exp": now() + 600 })
}

fn with_token<'a>(username: Option<&'a str>, token: &'a str) -> Credentials<'a> {
    Credentials {
        username,
        password: Some(token.as_bytes()),
        cert_identity: None,
        addr: CLIENT,
    }
}

fn as_device() -> Result<Authenticated, Refusal> {
    Ok(Authenticated {
        username: Some(DEVICE.to_owned()),
        grants: None,
    })
}

#[test]
fn only_three_base64url_segments_are_a_token() {
    for token in ["a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.sig-_0"] {
        assert_eq!(as_token(token.as_bytes()), Some(token), "{token}");
    }
    for password in [
        "", "hunter2", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b.", "a.b=.c", "a b.c.d", "a.b/c.d",
        "ä.b.c",
    ] {
        assert_eq!(as_token(password.as_bytes()), None, "{password:?}");
    }
    assert_eq!(as_token(b"a.\xff.c"), None);
}

#[tokio::test(start_paused = true)]
async fn a_valid_hs256_token_admits_its_subject() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let token = hs256(&device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        as_device()
    );
    assert_eq!(
        auth.authenticate(with_token(Some(DEVICE), &token)).await,
        as_device(),
        "a username equal to sub"
    );
    // A `nbf` in the past is fine.
    let begun = hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "nbf": now() - 5 }));
    assert_eq!(
        auth.authenticate(with_token(None, &begun)).await,
        as_device()
    );
    // The audience is not checked.
    let other_audience = hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "aud": "else" }));
    assert_eq!(
        auth.authenticate(with_token(None, &other_audience)).await,
        as_device()
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_without_sub_keeps_the_username() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let token = hs256(&json!({ "exp": now() + 600 }));
    assert_eq!(
        auth.authenticate(with_token(Some("sensor"), &token)).await,
        Ok(Authenticated::UNCHANGED)
    );
}

#[tokio::test(start_paused = true)]
async fn expired_missing_exp_and_immature_tokens_are_refused() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let refused = Err(Refusal::BadCredentials);
    for claims in [
        json!({ "sub": DEVICE, "exp": now() - 1 }),
        json!({ "sub": DEVICE }),
        json!({ "sub": DEVICE, "exp": "tomorrow" }),
        json!({ "sub": DEVICE, "exp": now() + 600, "nbf": now() + 300 }),
    ] {
        let token = hs256(&claims);
        assert_eq!(
            auth.authenticate(with_token(None, &token)).await,
            refused,
            "{claims}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_signed_with_another_secret_is_refused() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, also longer than 32 bytes"),
        &device_claims(),
    );
    assert_eq!(
        auth.authenticate(with_token(None, &forged)).await,
        Err(Refusal::BadCredentials)
    );
    // A valid token with its signature cut off or altered.
    let valid = hs256(&device_claims());
    let (unsigned, _) = valid.rsplit_once('.').unwrap();
    let tampered = format!("{unsigned}.AAAA");
    assert_eq!(
        auth.authenticate(with_token(None, &tampered)).await,
        Err(Refusal::BadCredentials)
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_with_another_algorithm_is_refused() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    // The right secret, the wrong algorithm.
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET),
        &device_claims(),
    );
    assert_eq!(
        auth.authenticate(with_token(None, &hs512)).await,
        Err(Refusal::BadCredentials)
    );

    // The confusion attack: HS256 keyed with the ES256 public key, which is no secret.
    let public = KeyFile::new(EC_PUBLIC.as_bytes());
    let auth = public.load(JwtAlgorithm::Es256);
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
        &device_claims(),
    );
    assert_eq!(
        auth.authenticate(with_token(None, &confused)).await,
        Err(Refusal::BadCredentials)
    );
}

#[tokio::test(start_paused = true)]
async fn a_username_other_than_sub_is_refused() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let token = hs256(&device_claims());
    assert_eq!(
        auth.authenticate(with_token(Some("device-18"), &token))
            .await,
        Err(Refusal::BadCredentials)
    );
    for sub in [json!(""), json!(17), json!(null)] {
        let odd = hs256(&json!({ "sub": sub, "exp": now() + 600 }));
        assert_eq!(
            auth.authenticate(with_token(None, &odd)).await,
            Err(Refusal::BadCredentials),
            "sub {sub}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_password_file_a_username_needs_a_token() {
    let file = KeyFile::new(SECRET);
    let auth = Authenticator::load(AuthSettings {
        allow_anonymous: true,
        ..file.settings(JwtAlgorithm::Hs256)
    })
    .unwrap();
    let refused = Err(Refusal::BadCredentials);
    let password = with_token(Some(DEVICE), "not a token");
    assert_eq!(auth.authenticate(password).await, refused);
    let no_password = Credentials {
        password: None,
        ..password
    };
    assert_eq!(auth.authenticate(no_password).await, refused);
    // No username, no password: the anonymous setting, as without JWT.
    let anonymous = Credentials {
        username: None,
        ..no_password
    };
    assert_eq!(
        auth.authenticate(anonymous).await,
        Ok(Authenticated::UNCHANGED)
    );
    let closed = file.load(JwtAlgorithm::Hs256);
    assert_eq!(
        closed.authenticate(anonymous).await,
        Err(Refusal::NotAuthorized)
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_password_file_other_passwords_follow_it() {
    let key = KeyFile::new(SECRET);
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let salt =
        argon2::password_hash::SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let phc = argon2::PasswordHasher::hash_password(
        &argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        b"plain password",
        &salt,
    )
    .unwrap()
    .to_string();
    let passwords = KeyFile::new(format!("alice:{phc}\n").as_bytes());
    let auth = Authenticator::load(AuthSettings {
        password_file: Some(passwords.path.clone()),
        ..key.settings(JwtAlgorithm::Hs256)
    })
    .unwrap();
    let alice = with_token(Some("alice"), "plain password");
    assert_eq!(auth.authenticate(alice).await, Ok(Authenticated::UNCHANGED));
    let wrong = with_token(Some("alice"), "wrong password");
    assert_eq!(auth.authenticate(wrong).await, Err(Refusal::BadCredentials));
    let token = hs256(&device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        as_device()
    );
}

#[tokio::test(start_paused = true)]
async fn a_valid_es256_token_is_accepted() {
    let file = KeyFile::new(EC_PUBLIC.as_bytes());
    let auth = file.load(JwtAlgorithm::Es256);
    let private = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &private, &device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        as_device()
    );
    let expired = sign(
        Algorithm::ES256,
        &private,
        &json!({ "sub": DEVICE, "exp": now() - 1 }),
    );
    assert_eq!(
        auth.authenticate(with_token(None, &expired)).await,
        Err(Refusal::BadCredentials)
    );
}

#[tokio::test(start_paused = true)]
async fn a_valid_rs256_token_is_accepted() {
    let file = KeyFile::new(RSA_PUBLIC.as_bytes());
    let auth = file.load(JwtAlgorithm::Rs256);
    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::RS256, &private, &device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        as_device()
    );
    // Signed with the EC key instead: refused.
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let es256 = sign(Algorithm::ES256, &ec, &device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &es256)).await,
        Err(Refusal::BadCredentials)
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_token_costs_the_failure_delay_and_counts_against_the_source() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let expired = hs256(&json!({ "sub": DEVICE, "exp": now() - 60 }));
    let started = tokio::time::Instant::now();
    assert_eq!(
        auth.authenticate(with_token(None, &expired)).await,
        Err(Refusal::BadCredentials)
    );
    assert!(started.elapsed() >= FAILURE_DELAY);
    for _ in 1..MAX_FAILURES {
        assert_eq!(
            auth.authenticate(with_token(None, &expired)).await,
            Err(Refusal::BadCredentials)
        );
    }
    let valid = hs256(&device_claims());
    assert_eq!(
        auth.authenticate(with_token(None, &valid)).await,
        Err(Refusal::RateLimited),
        "even a valid token"
    );
}

#[tokio::test(start_paused = true)]
async fn reload_reads_the_key_again_and_keeps_it_on_error() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let old = hs256(&device_claims());
    let new_secret = b"the rotated secret, again longer than 32 bytes";
    std::fs::write(&file.path, new_secret).unwrap();
    assert!(auth.reload_jwt_key().unwrap());
    assert_eq!(
        auth.authenticate(with_token(None, &old)).await,
        Err(Refusal::BadCredentials)
    );
    let new = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(new_secret),
        &device_claims(),
    );
    let other_source = Credentials {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        ..with_token(None, &new)
    };
    assert_eq!(auth.authenticate(other_source).await, as_device());

    std::fs::write(&file.path, b"short\n").unwrap();
    assert!(matches!(
        auth.reload_jwt_key(),
        Err(AuthError::JwtKey { .. })
    ));
    std::fs::remove_file(&file.path).unwrap();
    assert!(matches!(
        auth.reload_jwt_key(),
        Err(AuthError::JwtKeyRead { .. })
    ));
    assert_eq!(auth.authenticate(other_source).await, as_device());
}

#[test]
fn reload_without_jwt_reads_nothing() {
    let auth = Authenticator::load(AuthSettings::default()).unwrap();
    assert!(!auth.reload_jwt_key().unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_secret_loses_its_trailing_line_break_only() {
    let token = hs256(&device_claims());
    let mut with_line_break = SECRET.to_vec();
    with_line_break.extend_from_slice(b"\r\n");
    let auth = KeyFile::new(&with_line_break).load(JwtAlgorithm::Hs256);
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        as_device()
    );
    let mut with_space = SECRET.to_vec();
    with_space.extend_from_slice(b" \n");
    let auth = KeyFile::new(&with_space).load(JwtAlgorithm::Hs256);
    assert_eq!(
        auth.authenticate(with_token(None, &token)).await,
        Err(Refusal::BadCredentials)
    );
}

#[test]
fn a_bad_key_file_names_its_path() {
    let missing_dir = tempfile::tempdir().unwrap();
    let missing = missing_dir.path().join("no-such-key");
    let error = Authenticator::load(AuthSettings {
        jwt: Some(JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            key_file: missing.clone(),
        }),
        ..AuthSettings::default()
    })
    .unwrap_err();
    assert!(matches!(error, AuthError::JwtKeyRead { .. }), "{error}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    let cases: [(&[u8], JwtAlgorithm, &str); 6] = [
        (b"too short\n", JwtAlgorithm::Hs256, "at least 32 bytes"),
        (
            b"not a key at all",
            JwtAlgorithm::Es256,
            "not a PEM EC public key",
        ),
        (
            EC_PRIVATE.as_bytes(),
            JwtAlgorithm::Es256,
            "not a PEM EC public key",
        ),
        (
            EC_P384_PUBLIC.as_bytes(),
            JwtAlgorithm::Es256,
            "not a P-256",
        ),
        (
            EC_PUBLIC.as_bytes(),
            JwtAlgorithm::Rs256,
            "not a PEM RSA public key",
        ),
        (RSA_PUBLIC.as_bytes(), JwtAlgorithm::Es256, "not a P-256"),
    ];
    for (contents, algorithm, expected) in cases {
        let file = KeyFile::new(contents);
        let error = file.load_error(algorithm);
        let message = error.to_string();
        assert!(matches!(error, AuthError::JwtKey { .. }), "{message}");
        assert!(
            message.contains(&file.path.display().to_string()),
            "{message}"
        );
        assert!(message.contains(expected), "{algorithm:?}: {message}");
    }
}

#[test]
fn algorithms_are_spelled_as_in_jose() {
    let names: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(names, ["HS256", "RS256", "ES256"]);
}

/// The device as core's ACL sees it once connected (client id `DEVICE` too).
fn device_principal() -> berth_core::acl::Principal {
    berth_core::acl::Principal {
        username: Some(DEVICE.to_owned()),
        client_id: DEVICE.to_owned(),
        ..Default::default()
    }
}

fn topic_filter(text: &str) -> berth_codec::TopicFilter {
    berth_codec::TopicFilter::parse(text).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_acl_claim_grants_its_topics_with_placeholders_bound() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let token = hs256(&json!({
        "sub": DEVICE,
        "exp": now() + 600,
        "acl": {
            "pub": ["devices/%c/telemetry"],
            "sub": ["devices/%u/cmd/+"],
            "all": ["fleet/#"],
        },
    }));
    let admitted = auth
        .authenticate(with_token(None, &token))
        .await
        .expect("admitted");
    assert_eq!(admitted.username.as_deref(), Some(DEVICE));
    let grants = admitted.grants.expect("the claim's grants");
    let who = device_principal();
    assert!(grants.may_publish(&who, "devices/device-17/telemetry"));
    assert!(!grants.may_publish(&who, "devices/device-18/telemetry"));
    assert!(
        !grants.may_publish(&who, "devices/device-17/cmd/reboot"),
        "granted for subscribing only"
    );
    assert!(grants.may_subscribe(&who, &topic_filter("devices/device-17/cmd/+")));
    assert!(grants.may_receive(&who, "devices/device-17/cmd/reboot"));
    assert!(!grants.may_subscribe(&who, &topic_filter("devices/device-17/telemetry")));
    assert!(grants.may_publish(&who, "fleet/status"));
    assert!(grants.may_subscribe(&who, &topic_filter("fleet/#")));
    // A wider filter is held when part of it is granted; delivery keeps the rest out.
    assert!(grants.may_subscribe(&who, &topic_filter("#")));
    assert!(!grants.may_receive(&who, "elsewhere"));
}

#[tokio::test(start_paused = true)]
async fn without_an_acl_claim_there_are_no_grants_and_an_empty_one_grants_nothing() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let token = hs256(&device_claims());
    let admitted = auth.authenticate(with_token(None, &token)).await.unwrap();
    assert_eq!(admitted.grants, None, "the rules file alone decides");

    let empty = hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "acl": {} }));
    let admitted = auth.authenticate(with_token(None, &empty)).await.unwrap();
    let grants = admitted.grants.expect("grants, empty");
    assert!(grants.is_empty());
    assert!(!grants.may_publish(&device_principal(), "anything"));
    // Lists may be left out or empty.
    let some =
        hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "acl": { "pub": [], "all": ["x"] } }));
    let admitted = auth.authenticate(with_token(None, &some)).await.unwrap();
    assert!(
        admitted
            .grants
            .unwrap()
            .may_publish(&device_principal(), "x")
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_acl_claim_refuses_the_token_as_not_authorized() {
    let file = KeyFile::new(SECRET);
    let auth = file.load(JwtAlgorithm::Hs256);
    let cases = [
        json!(null),
        json!(["devices/#"]),
        json!("devices/#"),
        json!({ "publish": ["devices/#"] }),
        json!({ "pub": "devices/#" }),
        json!({ "pub": [17] }),
        json!({ "sub": ["a/#/b"] }),
        json!({ "all": ["devices/x%c"] }),
        json!({ "all": ["$share/g/devices/#"] }),
        json!({ "pub": [""] }),
    ];
    for (index, acl) in cases.into_iter().enumerate() {
        let token = hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "acl": acl }));
        let other_source = Credentials {
            // Each from its own address: ten refusals from one would rate-limit it.
            addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, u8::try_from(index).unwrap())),
            ..with_token(None, &token)
        };
        assert_eq!(
            auth.authenticate(other_source).await,
            Err(Refusal::NotAuthorized),
            "acl {acl}"
        );
    }
    // A subject mismatch is still a bad credential, whatever the claim holds.
    let token = hs256(&json!({ "sub": DEVICE, "exp": now() + 600, "acl": 5 }));
    let other = Credentials {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200)),
        ..with_token(Some("someone-else"), &token)
    };
    assert_eq!(auth.authenticate(other).await, Err(Refusal::BadCredentials));
}
