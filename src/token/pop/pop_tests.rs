//! Holder keys, proofs and the binding's moves, against RFC vectors and a thief's attempts.

use biscuit_auth::KeyPair;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::proof::{self, check, create, normalize_url, Expected, ProofError};
use super::replay::{ProofSettings, Proofs};
use super::*;
use crate::token::attenuate::{attenuate, Attenuation};
use crate::token::attest::rebind;
use crate::token::keys::KeySet;
use crate::token::mint::{mint, MandateSpec};
use crate::token::verify::{self, AccessRequest, AgentKeys, Trust, VerifyOptions};
use crate::token::Right;
use crate::token::TokenError;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

/// RFC 8037 appendix A.1: an Ed25519 key pair.
fn rfc8037_key() -> serde_json::Value {
    json!({
        "kty": "OKP", "crv": "Ed25519",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    })
}

#[test]
fn thumbprints_and_signatures_match_rfc_8037() {
    let secret = HolderSecret::from_jwk(&rfc8037_key()).unwrap();
    // RFC 8037 appendix A.3.
    assert_eq!(
        secret.public().thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // RFC 8037 appendix A.4: Ed25519 is deterministic, so the signature is the RFC's.
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let expected =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    assert_eq!(
        URL_SAFE_NO_PAD.encode(secret.sign(input.as_bytes())),
        expected
    );
    let signature = URL_SAFE_NO_PAD.decode(expected).unwrap();
    assert!(secret.public().verifies(input.as_bytes(), &signature));
    assert!(!secret.public().verifies(b"another message", &signature));
}

#[test]
fn only_public_ed25519_and_p256_jwks_are_holder_keys() {
    let refused = |jwk: serde_json::Value| HolderKey::from_jwk(&jwk).unwrap_err().0;
    assert!(refused(rfc8037_key()).contains("private key"));
    assert!(refused(json!({"kty": "RSA", "n": "x", "e": "AQAB"})).contains("only Ed25519"));
    assert!(refused(json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})).contains("32 bytes"));
    assert!(refused(json!({"kty": "OKP", "crv": "Ed25519"})).contains("missing"));
    let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
    assert!(refused(json!({"kty": "EC", "crv": "P-256", "x": zero, "y": zero})).contains("P-256"));
    assert!(refused(json!("a string")).contains("object"));
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let small_order =
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(identity)});
    assert!(refused(small_order).contains("weak"));
    for alg in ALGORITHMS {
        let secret = HolderSecret::generate(alg).unwrap();
        let public = HolderKey::from_jwk(&secret.public().to_jwk()).unwrap();
        assert_eq!(&public, secret.public());
        assert_eq!(public.algorithm(), alg);
        assert!(is_thumbprint(&public.thumbprint()));
        let again = HolderSecret::from_jwk(&secret.to_jwk()).unwrap();
        assert_eq!(again.public(), secret.public());
    }
    // A private JWK whose `d` belongs to another key.
    let mut mixed = HolderSecret::generate("EdDSA").unwrap().to_jwk();
    mixed["x"] = json!("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert!(HolderSecret::from_jwk(&mixed).is_err());
    assert!(HolderSecret::generate("RS256").is_err());
}

const URL: &str = "https://crm.example.com/v1/contacts";

/// What a call of `POST` on [`URL`] presenting `token` expects (the test leaks the hash).
fn expected<'a>(token: &str, holder: &'a str) -> Expected<'a> {
    let ath: &'static str = Box::leak(proof::token_hash(token).into_boxed_str());
    Expected {
        method: "POST",
        url: URL,
        ath: Some(ath),
        holder: Some(holder),
        now: at(0),
        max_age: Duration::seconds(60),
        max_ahead: Duration::seconds(30),
    }
}

#[test]
fn a_proof_checks_its_method_url_time_token_and_key() {
    for alg in ALGORITHMS {
        let holder = HolderSecret::generate(alg).unwrap();
        let jkt = holder.public().thumbprint();
        let proof = create(&holder, "POST", URL, Some("the-token"), None, at(0));
        let checked = check(&proof, &expected("the-token", &jkt)).unwrap();
        assert_eq!(checked.jkt, jkt);
        assert_eq!(checked.htm, "POST");
        let refused = |proof: &str, expected: &Expected<'_>| check(proof, expected).unwrap_err();
        assert_eq!(
            refused(
                &proof,
                &Expected {
                    method: "GET",
                    ..expected("the-token", &jkt)
                }
            ),
            ProofError::Method
        );
        let other_url = "https://crm.example.com/v1/other";
        assert_eq!(
            refused(
                &proof,
                &Expected {
                    url: other_url,
                    ..expected("the-token", &jkt)
                }
            ),
            ProofError::Url
        );
        assert_eq!(
            refused(&proof, &expected("another-token", &jkt)),
            ProofError::TokenHash
        );
        let stranger = HolderSecret::generate(alg).unwrap().public().thumbprint();
        assert_eq!(
            refused(&proof, &expected("the-token", &stranger)),
            ProofError::WrongKey
        );
        let old = create(&holder, "POST", URL, Some("the-token"), None, at(-61));
        assert_eq!(
            refused(&old, &expected("the-token", &jkt)),
            ProofError::Stale
        );
        let ahead = create(&holder, "POST", URL, Some("the-token"), None, at(31));
        assert_eq!(
            refused(&ahead, &expected("the-token", &jkt)),
            ProofError::Stale
        );
        // A query, and a default port, do not change the URL a proof is for.
        let query = create(
            &holder,
            "POST",
            "https://CRM.example.com:443/v1/contacts?x=1",
            Some("the-token"),
            None,
            at(0),
        );
        assert!(check(&query, &expected("the-token", &jkt)).is_ok());
        // Without `ath` the proof does not say which token it presents.
        let no_ath = create(&holder, "POST", URL, None, None, at(0));
        assert_eq!(
            refused(&no_ath, &expected("the-token", &jkt)),
            ProofError::TokenHash
        );
        // One flipped signature byte.
        let (signed, signature) = proof.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(
            refused(&forged, &expected("the-token", &jkt)),
            ProofError::Signature
        );
    }
}

/// A proof with `header` and `claims`, signed by `holder`.
fn signed(holder: &HolderSecret, header: serde_json::Value, claims: serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(holder.sign(input.as_bytes()))
    )
}

#[test]
fn malformed_proofs_are_refused_before_their_claims_are_trusted() {
    let holder = HolderSecret::generate("EdDSA").unwrap();
    let jwk = holder.public().to_jwk();
    let claims = json!({"jti": "1", "htm": "POST", "htu": URL, "iat": at(0).timestamp()});
    let header = |typ: &str, alg: &str| json!({"typ": typ, "alg": alg, "jwk": jwk});
    let malformed = |proof: &str| match proof::parse(proof) {
        Err(ProofError::Malformed(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(proof::parse(&signed(
        &holder,
        header("dpop+jwt", "EdDSA"),
        claims.clone()
    ))
    .is_ok());
    assert!(malformed(&signed(&holder, header("JWT", "EdDSA"), claims.clone())).contains("typ"));
    assert!(
        malformed(&signed(&holder, header("dpop+jwt", "none"), claims.clone())).contains("alg")
    );
    assert!(malformed(&signed(
        &holder,
        header("dpop+jwt", "ES256"),
        claims.clone()
    ))
    .contains("match"));
    let crit = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk, "crit": ["x"]});
    assert!(malformed(&signed(&holder, crit, claims.clone())).contains("crit"));
    let private = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": holder.to_jwk()});
    assert!(malformed(&signed(&holder, private, claims.clone())).contains("private"));
    let no_jti = json!({"htm": "POST", "htu": URL, "iat": 1});
    assert!(malformed(&signed(&holder, header("dpop+jwt", "EdDSA"), no_jti)).contains("required"));
    let text_iat = json!({"jti": "1", "htm": "POST", "htu": URL, "iat": "now"});
    assert!(malformed(&signed(&holder, header("dpop+jwt", "EdDSA"), text_iat)).contains("iat"));
    assert!(malformed("a.b").contains("three parts"));
    assert!(malformed(&"a".repeat(5000)).contains("4096"));
}

#[test]
fn urls_normalize_as_rfc_3986_says() {
    let n = |url| normalize_url(url);
    assert_eq!(
        n("HTTPS://Api.Example.com:443/a?b#c").as_deref(),
        Some("https://api.example.com/a")
    );
    assert_eq!(n("http://h:80").as_deref(), Some("http://h/"));
    assert_eq!(n("http://h:8080/x").as_deref(), Some("http://h:8080/x"));
    assert_eq!(
        n("https://h/A").as_deref(),
        Some("https://h/A"),
        "paths are case-sensitive"
    );
    assert_eq!(n("ftp://h/x"), None);
    assert_eq!(n("/relative"), None);
    assert_eq!(n("https://user@h/"), None);
}

#[test]
fn the_replay_cache_refuses_a_second_use_and_fails_closed_when_full() {
    let holder = HolderSecret::generate("ES256").unwrap();
    let jkt = holder.public().thumbprint();
    let settings = ProofSettings {
        replay_capacity: 2,
        ..ProofSettings::default()
    };
    let proofs = Proofs::new(settings, [7; 32]);
    let first = create(&holder, "POST", URL, Some("t"), None, at(0));
    proofs.check(&first, &expected("t", &jkt)).unwrap();
    assert_eq!(
        proofs.check(&first, &expected("t", &jkt)).unwrap_err(),
        ProofError::Replayed
    );
    let second = create(&holder, "POST", URL, Some("t"), None, at(0));
    proofs.check(&second, &expected("t", &jkt)).unwrap();
    let third = create(&holder, "POST", URL, Some("t"), None, at(0));
    assert_eq!(
        proofs.check(&third, &expected("t", &jkt)).unwrap_err(),
        ProofError::Busy
    );
    assert_eq!(proofs.remembered(), 2);
    // Once the first two have left the window, there is room again.
    let later = create(&holder, "POST", URL, Some("t"), None, at(62));
    let now = Expected {
        now: at(62),
        ..expected("t", &jkt)
    };
    proofs.check(&later, &now).unwrap();
    assert_eq!(proofs.remembered(), 1);
}

#[test]
fn nonces_are_required_when_configured_and_expire_after_two_periods() {
    let holder = HolderSecret::generate("EdDSA").unwrap();
    let jkt = holder.public().thumbprint();
    let settings = ProofSettings {
        require_nonce: true,
        ..ProofSettings::default()
    };
    let proofs = Proofs::new(settings.clone(), [1; 32]);
    let without = create(&holder, "POST", URL, Some("t"), None, at(0));
    assert_eq!(
        proofs.check(&without, &expected("t", &jkt)).unwrap_err(),
        ProofError::Nonce
    );
    assert_eq!(ProofError::Nonce.code(), "use_dpop_nonce");
    let nonce = proofs.nonce(at(0));
    let with = create(&holder, "POST", URL, Some("t"), Some(&nonce), at(0));
    proofs.check(&with, &expected("t", &jkt)).unwrap();
    assert!(
        proofs.nonce_current(&nonce, at(300)),
        "the next period still accepts it"
    );
    assert!(!proofs.nonce_current(&nonce, at(600)));
    assert!(!proofs.nonce_current("garbage", at(0)));
    // Another key's nonces are not this verifier's.
    let other = Proofs::new(settings, [2; 32]);
    assert!(!other.nonce_current(&nonce, at(0)));
}

fn right(tool: &str, operation: &str) -> Right {
    Right {
        tool: tool.into(),
        operation: operation.into(),
    }
}

fn bound_mandate(root: &KeyPair, jkt: Option<String>) -> String {
    let spec = MandateSpec {
        approvals: vec![],
        mandate_id: "01900000-0000-7000-8000-000000000001".into(),
        task_id: "t".into(),
        task_digest: vec![0; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://idp.example.com/".into(),
        agent_id: "bot".into(),
        rights: vec![right("crm", "read"), right("crm", "write")],
        expires_at: at(600),
        constraints: vec![],
        holder_key: jkt,
    };
    mint(&spec, root, 1).unwrap().token
}

/// Checks `token` and authorizes a CRM read by the holder of `proven`.
fn held(token: &str, root: &KeyPair, proven: Option<&str>) -> Result<verify::Verified, TokenError> {
    let keys = KeySet::from([(1, root.public())]);
    let agents = AgentKeys::new();
    let trust = Trust {
        keys: &keys,
        agent_keys: &agents,
        is_revoked: &|_| false,
    };
    let options = VerifyOptions::default();
    let checked = verify::check(token, &trust, &options)?;
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: at(0),
    };
    checked.authorize_held(&|_| false, &request, None, None, proven, &options)
}

fn proof_error(result: Result<verify::Verified, TokenError>) -> ProofError {
    match result {
        Err(TokenError::Proof(error)) => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bound_mandate_is_usable_only_by_its_holder_and_the_binding_moves_only_with_its_signature() {
    let root = KeyPair::new();
    let orchestrator = HolderSecret::generate("EdDSA").unwrap();
    let sub_agent = HolderSecret::generate("ES256").unwrap();
    let thief = HolderSecret::generate("EdDSA").unwrap();
    let (orch, sub, stolen) = (
        orchestrator.public().thumbprint(),
        sub_agent.public().thumbprint(),
        thief.public().thumbprint(),
    );
    let token = bound_mandate(&root, Some(orch.clone()));
    assert_eq!(
        held(&token, &root, Some(&orch)).unwrap().holder_key,
        Some(orch.clone())
    );
    assert_eq!(proof_error(held(&token, &root, None)), ProofError::Missing);
    assert_eq!(
        proof_error(held(&token, &root, Some(&stolen))),
        ProofError::WrongKey
    );

    // The thief appends a binding to their own key, signed by their own key.
    let forged = rebind(&token, &thief, &stolen).unwrap();
    assert!(matches!(
        held(&forged, &root, Some(&stolen)),
        Err(TokenError::ForgedBinding(_))
    ));
    // A holder's plain block cannot state the binding either: the vocabulary refuses it.
    let spliced = biscuit_auth::UnverifiedBiscuit::from_base64(&token)
        .unwrap()
        .append(
            biscuit_auth::BlockBuilder::new()
                .code(format!("holder_key(\"{stolen}\");"))
                .unwrap(),
        )
        .unwrap()
        .to_base64()
        .unwrap();
    assert!(matches!(
        held(&spliced, &root, Some(&stolen)),
        Err(TokenError::NotMandateBlock { reason, .. }) if reason.contains("holder's signature")
    ));

    // The orchestrator delegates to the sub-agent and moves the binding with its signature.
    let narrowed = attenuate(
        &token,
        &Attenuation {
            rights: Some(vec![right("crm", "read")]),
            delegate: Some("researcher".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let passed = rebind(&narrowed, &orchestrator, &sub).unwrap();
    let verified = held(&passed, &root, Some(&sub)).unwrap();
    assert_eq!(verified.holder_key, Some(sub.clone()));
    assert_eq!(verified.hops[0].agent, "researcher");
    assert_eq!(
        proof_error(held(&passed, &root, Some(&orch))),
        ProofError::WrongKey
    );
    // Only the current holder moves it on: the orchestrator no longer can.
    let again = rebind(&passed, &orchestrator, &orch).unwrap();
    assert!(matches!(
        held(&again, &root, Some(&orch)),
        Err(TokenError::ForgedBinding(_))
    ));

    // A bearer mandate takes no proof, and cannot be bound offline.
    let bearer = bound_mandate(&root, None);
    assert!(held(&bearer, &root, None).is_ok());
    assert_eq!(
        proof_error(held(&bearer, &root, Some(&orch))),
        ProofError::Unbound
    );
    let bound_later = rebind(&bearer, &orchestrator, &orch).unwrap();
    assert!(matches!(
        held(&bound_later, &root, Some(&orch)),
        Err(TokenError::ForgedBinding(_))
    ));
}

#[test]
fn a_verifier_that_checks_no_proof_refuses_a_bound_mandate() {
    // A plain Biscuit authorizer with the schema's policy, as another language's verifier
    // without proof support would run it: the authority's `check if holder_proof($jkt)` fails.
    let root = KeyPair::new();
    let holder = HolderSecret::generate("EdDSA").unwrap();
    let token = bound_mandate(&root, Some(holder.public().thumbprint()));
    let biscuit = biscuit_auth::Biscuit::from_base64(&token, root.public()).unwrap();
    let run = |extra: &str| {
        let code = format!(
            "time({}); tool(\"crm\"); operation(\"read\"); {extra} \
             allow if mandate_schema(1), right($t, $o), tool($t), operation($o);",
            at(0).to_rfc3339()
        );
        biscuit_auth::AuthorizerBuilder::new()
            .code(code)
            .unwrap()
            .build(&biscuit)
            .unwrap()
            .authorize()
    };
    assert!(run("").is_err());
    let proven = format!("holder_proof(\"{}\");", holder.public().thumbprint());
    assert!(run(&proven).is_ok());
}
