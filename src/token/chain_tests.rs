//! Delegation chains: attenuation never widens, hops are attested only by registered keys, and
//! every damaged or hostile token is refused with a specific reason.

use biscuit_auth::KeyPair;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::attenuate::{attenuate, Attenuation};
use super::attest::{append_attestation, attest, attestation_request, sign_attestation};
use super::inspect::{inspect, BlockKind};
use super::keys::KeySet;
use super::mint::{mint, MandateSpec};
use super::verify::{verify_with, AccessRequest, AgentKeys, Hop, Trust, VerifyOptions};
use super::{Right, TokenError};

const TOOLS: [&str; 3] = ["crm", "mail", "wiki"];
const OPS: [&str; 3] = ["read", "write", "delete"];

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn right(tool: &str, operation: &str) -> Right {
    Right {
        tool: tool.into(),
        operation: operation.into(),
    }
}

fn all_pairs() -> Vec<Right> {
    TOOLS
        .iter()
        .flat_map(|t| OPS.iter().map(move |o| right(t, o)))
        .collect()
}

struct Fixture {
    root: KeyPair,
    keys: KeySet,
    agent_a: KeyPair,
    agent_keys: AgentKeys,
}

fn fixture() -> Fixture {
    let root = KeyPair::new();
    let agent_a = KeyPair::new();
    let agent_keys = AgentKeys::from([("agent-a".to_owned(), vec![agent_a.public()])]);
    Fixture {
        keys: KeySet::from([(1, root.public())]),
        root,
        agent_a,
        agent_keys,
    }
}

fn mandate(f: &Fixture, rights: Vec<Right>, expires: i64) -> String {
    let spec = MandateSpec {
        approvals: vec![],
        holder_key: None,
        mandate_id: "01900000-0000-7000-8000-000000000009".into(),
        task_id: "task".into(),
        task_digest: vec![1; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://idp.example.com/".into(),
        agent_id: "orchestrator".into(),
        rights,
        expires_at: at(expires),
        constraints: vec![],
    };
    mint(&spec, &f.root, 1).unwrap().token
}

fn check(
    f: &Fixture,
    token: &str,
    tool: &str,
    op: &str,
    now: i64,
) -> Result<super::verify::Verified, TokenError> {
    let trust = Trust {
        keys: &f.keys,
        agent_keys: &f.agent_keys,
        is_revoked: &|_| false,
    };
    let request = AccessRequest {
        tool: tool.into(),
        operation: op.into(),
        now: at(now),
    };
    verify_with(token, &trust, &request, None, &VerifyOptions::default())
}

fn restrict(rights: Vec<Right>) -> Attenuation {
    Attenuation {
        rights: Some(rights),
        ..Attenuation::default()
    }
}

#[test]
fn a_chain_reports_each_hop_attested_or_claimed() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read"), right("crm", "write")], 600);
    let to_a = attenuate(
        &token,
        &Attenuation {
            delegate: Some("agent-a".into()),
            rights: Some(vec![right("crm", "read")]),
            expires_at: Some(at(300)),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let attested = attest(&to_a, "agent-a", &f.agent_a).unwrap();
    let to_b = attenuate(
        &attested,
        &Attenuation {
            delegate: Some("agent-b".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let verified = check(&f, &to_b, "crm", "read", 0).unwrap();
    assert_eq!(
        verified.hops,
        vec![
            Hop {
                agent: "agent-a".into(),
                attested: true
            },
            Hop {
                agent: "agent-b".into(),
                attested: false
            },
        ]
    );
    assert_eq!(verified.agent_id, "orchestrator");
    assert_eq!(verified.principal_subject, "alice");
    assert_eq!(verified.revocation_ids.len(), 4);
    assert!(matches!(
        check(&f, &to_b, "crm", "write", 0),
        Err(TokenError::NotAuthorized(_))
    ));
    assert!(matches!(
        check(&f, &to_b, "crm", "read", 301),
        Err(TokenError::Expired)
    ));
    let chain = inspect(&to_b).unwrap();
    let kinds: Vec<BlockKind> = chain.blocks.iter().map(|b| b.kind).collect();
    assert_eq!(
        kinds,
        [
            BlockKind::Authority,
            BlockKind::Attenuation,
            BlockKind::Attestation,
            BlockKind::Attenuation
        ]
    );
    assert_eq!(chain.blocks[2].hop.as_deref(), Some("agent-a"));
    assert_eq!(chain.root_key_id, Some(1));
}

#[test]
fn an_attestation_signed_with_an_unregistered_key_is_forged() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    let to_a = attenuate(
        &token,
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let impostor = attest(&to_a, "agent-a", &KeyPair::new()).unwrap();
    assert!(matches!(
        check(&f, &impostor, "crm", "read", 0),
        Err(TokenError::ForgedAttestation(_))
    ));
    // A registered agent cannot attest for another one either.
    let to_b = attenuate(
        &token,
        &Attenuation {
            delegate: Some("agent-b".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let wrong_agent = attest(&to_b, "agent-a", &f.agent_a).unwrap();
    assert!(matches!(
        check(&f, &wrong_agent, "crm", "read", 0),
        Err(TokenError::ForgedAttestation(_))
    ));
}

#[test]
fn an_attestation_cannot_move_onto_another_token_or_before_its_delegation() {
    let f = fixture();
    let first = attenuate(
        &mandate(&f, vec![right("crm", "read")], 600),
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let second = attenuate(
        &mandate(&f, vec![right("crm", "read")], 600),
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let block = sign_attestation(
        &attestation_request(&first).unwrap(),
        "agent-a",
        &f.agent_a.private(),
    )
    .unwrap();
    let moved = append_attestation(&second, &block);
    assert!(
        moved.is_err()
            || matches!(
                check(&f, &moved.unwrap(), "crm", "read", 0),
                Err(TokenError::BadSignature | TokenError::Malformed)
            ),
        "a block signed for another token is refused"
    );
    // Attesting before being delegated to.
    let early = attest(
        &mandate(&f, vec![right("crm", "read")], 600),
        "agent-a",
        &f.agent_a,
    )
    .unwrap();
    let later = attenuate(
        &early,
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(matches!(
        check(&f, &later, "crm", "read", 0),
        Err(TokenError::ForgedAttestation(_))
    ));
}

#[test]
fn blocks_swapped_in_the_serialized_token_break_its_signatures() {
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine as _;
    use prost::Message as _;
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    let one = attenuate(&token, &restrict(vec![right("crm", "read")])).unwrap();
    let two = attenuate(
        &one,
        &Attenuation {
            delegate: Some("x".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let bytes = URL_SAFE.decode(&two).unwrap();
    let mut raw = biscuit_auth::format::schema::Biscuit::decode(bytes.as_slice()).unwrap();
    raw.blocks.swap(0, 1);
    let swapped = URL_SAFE.encode(raw.encode_to_vec());
    // The vocabulary is read before the signatures: it may be first to refuse.
    let err = check(&f, &swapped, "crm", "read", 0).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::BadSignature | TokenError::Malformed | TokenError::NotMandateBlock { .. }
        ),
        "{err}"
    );
}

#[test]
fn damaged_or_hostile_tokens_are_refused_with_a_reason_and_never_panic() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    assert!(matches!(
        check(&f, &token, "crm", "read", 601),
        Err(TokenError::Expired)
    ));
    let stranger = Fixture {
        keys: KeySet::from([(2, f.root.public())]),
        ..fixture()
    };
    assert!(matches!(
        check(&stranger, &token, "crm", "read", 0),
        Err(TokenError::UnknownKey)
    ));
    let other_root = Fixture {
        keys: KeySet::from([(1, KeyPair::new().public())]),
        ..fixture()
    };
    assert!(matches!(
        check(&other_root, &token, "crm", "read", 0),
        Err(TokenError::BadSignature)
    ));
    for cut in [1, 10, token.len() / 2, token.len() - 3] {
        let truncated = &token[..cut];
        let err = check(&f, truncated, "crm", "read", 0).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed | TokenError::BadSignature),
            "cut {cut}: {err}"
        );
    }
    // Flip one byte anywhere: always refused, never a panic.
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine as _;
    let bytes = URL_SAFE.decode(&token).unwrap();
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        assert!(
            check(&f, &URL_SAFE.encode(&flipped), "crm", "read", 0).is_err(),
            "byte {i}"
        );
    }
    let oversized = "A".repeat(VerifyOptions::default().max_bytes + 1);
    assert!(matches!(
        check(&f, &oversized, "crm", "read", 0),
        Err(TokenError::TooLarge)
    ));
    let mut long = token.clone();
    for i in 0..16 {
        long = attenuate(
            &long,
            &Attenuation {
                delegate: Some(format!("hop-{i}")),
                ..Attenuation::default()
            },
        )
        .unwrap();
    }
    assert!(matches!(
        check(&f, &long, "crm", "read", 0),
        Err(TokenError::TooManyBlocks)
    ));
    assert!(matches!(
        check(&f, "", "crm", "read", 0),
        Err(TokenError::Malformed)
    ));
    assert!(matches!(
        check(&f, "%%%", "crm", "read", 0),
        Err(TokenError::Malformed)
    ));
}

#[test]
fn a_revoked_id_anywhere_in_the_chain_refuses_the_token() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    let derived = attenuate(
        &token,
        &Attenuation {
            delegate: Some("a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let authority_id = inspect(&token).unwrap().blocks[0].revocation_id.clone();
    let trust = Trust {
        keys: &f.keys,
        agent_keys: &f.agent_keys,
        is_revoked: &|id: &[u8]| hex::encode(id) == authority_id,
    };
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: at(0),
    };
    let err = verify_with(&derived, &trust, &request, None, &VerifyOptions::default()).unwrap_err();
    assert!(matches!(err, TokenError::Revoked));
}

#[test]
fn a_resource_restriction_needs_the_call_to_name_an_allowed_resource() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    let narrowed = attenuate(
        &token,
        &Attenuation {
            resources: Some(vec!["acct-1".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let trust = Trust {
        keys: &f.keys,
        agent_keys: &f.agent_keys,
        is_revoked: &|_| false,
    };
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: at(0),
    };
    let options = VerifyOptions::default();
    assert!(verify_with(&narrowed, &trust, &request, Some("acct-1"), &options).is_ok());
    assert!(verify_with(&narrowed, &trust, &request, Some("acct-2"), &options).is_err());
    assert!(verify_with(&narrowed, &trust, &request, None, &options).is_err());
    assert!(matches!(
        attenuate(&token, &Attenuation::default()),
        Err(TokenError::EmptyAttenuation)
    ));
}

#[test]
fn clock_skew_is_tolerated_only_as_asked() {
    let f = fixture();
    let token = mandate(&f, vec![right("crm", "read")], 600);
    let trust = Trust {
        keys: &f.keys,
        agent_keys: &f.agent_keys,
        is_revoked: &|_| false,
    };
    let late = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: at(630),
    };
    let strict = VerifyOptions::default();
    let lenient = VerifyOptions {
        skew: Duration::seconds(60),
        ..VerifyOptions::default()
    };
    assert!(verify_with(&token, &trust, &late, None, &strict).is_err());
    assert!(verify_with(&token, &trust, &late, None, &lenient).is_ok());
}

fn subset(mask: u16) -> Vec<Right> {
    all_pairs()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| r)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever chain of attenuations is appended, every right of the derived token was granted
    /// by its parent, and it never outlives its parent.
    #[test]
    fn attenuation_never_widens(
        granted in 0u16..512,
        steps in proptest::collection::vec((proptest::option::of(0u16..512), proptest::option::of(0i64..900)), 1..4),
    ) {
        let f = fixture();
        let mut tokens = vec![mandate(&f, subset(granted), 600)];
        for (mask, expiry) in &steps {
            let attenuation = Attenuation {
                rights: mask.map(subset),
                expires_at: expiry.map(at),
                delegate: Some("next".into()),
                ..Attenuation::default()
            };
            let parent = tokens.last().unwrap().clone();
            tokens.push(attenuate(&parent, &attenuation).unwrap());
        }
        for pair in tokens.windows(2) {
            let (parent, child) = (&pair[0], &pair[1]);
            for r in all_pairs() {
                for now in [0, 299, 300, 600, 601, 899, 901] {
                    if check(&f, child, &r.tool, &r.operation, now).is_ok() {
                        prop_assert!(
                            check(&f, parent, &r.tool, &r.operation, now).is_ok(),
                            "{}:{} at {now} widened", r.tool, r.operation
                        );
                    }
                }
            }
        }
    }
}
