//! The conformance vectors every mandate/v1 verifier must agree with (`tests/vectors/`): tokens
//! made by this implementation, the calls made with them and the verdict and read-out mandate's
//! own verifier gives each call. The Python and TypeScript clients run every vector.
//!
//! Regenerate with `MANDATE_WRITE_VECTORS=1 cargo test --test api vectors::`. Without it, the
//! test fails when the checked-in file is stale: when mandate's verifier no longer reaches a
//! recorded verdict, or when the generator would now write other cases, calls or verdicts.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use biscuit_auth::{BlockBuilder, KeyPair, UnverifiedBiscuit};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use mandate::clock::{ManualClock, SharedClock};
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::{attest, rebind};
use mandate::token::constraints::{ArgConstraint, Constraint, Scalar};
use mandate::token::keys::format_public_key;
use mandate::token::mint::{mint, MandateSpec};
use mandate::token::pop::{proof, HolderSecret};
use mandate::token::Right;
use mandate::verifier::{Access, Presentation, RevocationCheck, Verifier, VerifierSettings};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mandate-v1.json");

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Vectors {
    about: String,
    /// `GET /.well-known/mandate-keys` as a verifier fetches it.
    keys: Value,
    /// `GET /.well-known/mandate-agent-keys`.
    agent_keys: Value,
    /// `GET /v1/revocations?after=0`: the feed a verifier has followed.
    revocations: Value,
    /// The verifier's settings the verdicts assume.
    settings: Value,
    /// Holder keys (private JWKs, for tests only), by name: clients may sign their own proofs.
    holders: BTreeMap<String, Value>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    description: String,
    token: String,
    /// Made in order against one verifier (a proof seen once is refused the second time).
    calls: Vec<Call>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Call {
    tool: String,
    operation: String,
    resource: Option<String>,
    /// The call's JSON arguments (`null`: the verifier states none).
    arguments: Option<Value>,
    /// The verifier's clock.
    now: DateTime<Utc>,
    /// `Bearer`, or `DPoP` with `proof`.
    scheme: String,
    proof: Option<String>,
    method: String,
    url: String,
    expect: Expect,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `allow` or `deny`.
    verdict: String,
    /// The refusal's code (`TokenError::code`), when denied.
    error: Option<String>,
    /// Who acts, when allowed: the verifier's read-out.
    verified: Option<Value>,
}

/// When every vector's verifier reads its clock.
fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_315_200, 0).unwrap() // 2026-06-01T12:00:00Z
}

const URL: &str = "https://crm.example.com/v1/tickets";
const METHOD: &str = "POST";

fn right(tool: &str, operation: &str) -> Right {
    Right {
        tool: tool.into(),
        operation: operation.into(),
    }
}

fn limit(tool: &str, operation: &str, argument: &str, constraint: Constraint) -> ArgConstraint {
    ArgConstraint {
        tool: tool.into(),
        operation: operation.into(),
        argument: argument.into(),
        constraint,
    }
}

/// The keys a generation signs with.
struct Keys {
    root: KeyPair,
    stranger_root: KeyPair,
    helper: KeyPair,
    reviewer: KeyPair,
    holders: BTreeMap<&'static str, HolderSecret>,
}

impl Keys {
    fn new() -> Self {
        let holders = [
            ("orchestrator", "EdDSA"),
            ("helper", "ES256"),
            ("stranger", "EdDSA"),
        ]
        .into_iter()
        .map(|(name, alg)| (name, HolderSecret::generate(alg).unwrap()))
        .collect();
        Self {
            root: KeyPair::new(),
            stranger_root: KeyPair::new(),
            helper: KeyPair::new(),
            reviewer: KeyPair::new(),
            holders,
        }
    }

    fn holder(&self, name: &str) -> &HolderSecret {
        &self.holders[name]
    }

    fn jkt(&self, name: &str) -> String {
        self.holder(name).public().thumbprint()
    }
}

/// A mandate for alice through `support-orchestrator`, alive five minutes from [`epoch`].
fn spec(id: &str) -> MandateSpec {
    MandateSpec {
        approvals: vec![],
        mandate_id: format!("0195f0c8-0000-7000-8000-{id:0>12}"),
        task_id: format!("task-{id}"),
        task_digest: vec![0x3f; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://login.example.com/".into(),
        agent_id: "support-orchestrator".into(),
        rights: vec![
            right("crm", "read"),
            right("crm", "write"),
            right("calendar", "read"),
        ],
        expires_at: epoch() + Duration::minutes(5),
        constraints: vec![],
        holder_key: None,
    }
}

fn minted(spec: &MandateSpec, keys: &Keys) -> String {
    mint(spec, &keys.root, 1).unwrap().token
}

/// Appends a first-party block of Datalog `source`, as any Biscuit holder can.
fn append(token: &str, source: &str) -> String {
    let block = BlockBuilder::new().code(source).unwrap();
    UnverifiedBiscuit::from_base64(token)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn narrow(token: &str, attenuation: Attenuation) -> String {
    attenuate(token, &attenuation).unwrap()
}

fn delegate(token: &str, agent: &str) -> String {
    narrow(
        token,
        Attenuation {
            delegate: Some(agent.into()),
            ..Attenuation::default()
        },
    )
}

/// One call's request, filled in by the generator's run of mandate's verifier.
struct Ask {
    tool: &'static str,
    operation: &'static str,
    resource: Option<&'static str>,
    arguments: Option<Value>,
    now: DateTime<Utc>,
    proof: Option<String>,
    url: &'static str,
}

fn ask(tool: &'static str, operation: &'static str) -> Ask {
    Ask {
        tool,
        operation,
        resource: None,
        arguments: None,
        now: epoch(),
        proof: None,
        url: URL,
    }
}

impl Ask {
    fn on(mut self, resource: &'static str) -> Self {
        self.resource = Some(resource);
        self
    }
    fn with(mut self, arguments: Value) -> Self {
        self.arguments = Some(arguments);
        self
    }
    fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }
    fn proved(mut self, proof: String) -> Self {
        self.proof = Some(proof);
        self
    }
    fn addressed(mut self, url: &'static str) -> Self {
        self.url = url;
        self
    }
}

/// A proof whose `htu` is written as given, query included (`proof::create` drops the query,
/// as a client should): verifiers ignore it.
fn proof_with_htu(holder: &HolderSecret, htu: &str, token: &str, at: DateTime<Utc>) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header = json!({"typ": "dpop+jwt", "alg": holder.public().algorithm(),
                        "jwk": holder.public().to_jwk()});
    let claims = json!({"jti": uuid::Uuid::now_v7().to_string(), "htm": METHOD, "htu": htu,
                        "iat": at.timestamp(), "ath": proof::token_hash(token)});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(holder.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// A proof by holder `who` for a call presenting `token`.
fn proof_for(keys: &Keys, who: &str, token: &str) -> String {
    proof::create(keys.holder(who), METHOD, URL, Some(token), None, epoch())
}

/// A case before the verdicts: its token and the calls made with it.
struct Draft {
    name: &'static str,
    description: &'static str,
    token: String,
    asks: Vec<Ask>,
}

fn draft(name: &'static str, description: &'static str, token: String, asks: Vec<Ask>) -> Draft {
    Draft {
        name,
        description,
        token,
        asks,
    }
}

/// Every case, with the revocation ids the feed lists.
fn drafts(keys: &Keys) -> (Vec<Draft>, Vec<Vec<u8>>) {
    let mut cases = Vec::new();
    let mut revoked = Vec::new();
    let valid = minted(&spec("1"), keys);
    cases.push(draft(
        "valid",
        "A fresh mandate used for a granted right; an operation it does not grant is refused.",
        valid.clone(),
        vec![
            ask("crm", "read"),
            ask("calendar", "read").on("team-calendar"),
            ask("crm", "delete"),
            ask("billing", "read"),
        ],
    ));

    let narrowed = narrow(
        &valid,
        Attenuation {
            rights: Some(vec![right("crm", "read")]),
            resources: Some(vec!["acme/api".into(), "acme/web".into()]),
            expires_at: Some(epoch() + Duration::minutes(2)),
            delegate: Some("helper".into()),
            constraints: vec![],
        },
    );
    cases.push(draft(
        "narrowed",
        "A holder's block keeps crm read on two resources for two minutes and names a claimed \
         delegate.",
        narrowed.clone(),
        vec![
            ask("crm", "read").on("acme/api"),
            ask("crm", "read"),
            ask("crm", "read").on("acme/billing"),
            ask("crm", "write").on("acme/api"),
            ask("crm", "read")
                .on("acme/web")
                .at(epoch() + Duration::minutes(3)),
        ],
    ));
    cases.push(draft(
        "narrowed_to_nothing",
        "A holder's `check if false` leaves no right usable.",
        narrow(
            &valid,
            Attenuation {
                rights: Some(vec![]),
                ..Attenuation::default()
            },
        ),
        vec![ask("crm", "read")],
    ));

    let mut constrained_spec = spec("2");
    constrained_spec.constraints = vec![
        limit("crm", "write", "ticket", Constraint::Prefix("T-".into())),
        limit("crm", "write", "title", Constraint::MaxLength(12)),
        limit("crm", "read", "path", Constraint::Glob("docs/*.md".into())),
    ];
    let constrained = narrow(
        &minted(&constrained_spec, keys),
        Attenuation {
            constraints: vec![
                limit(
                    "crm",
                    "write",
                    "priority",
                    Constraint::Range {
                        min: Some(1),
                        max: Some(3),
                    },
                ),
                limit(
                    "crm",
                    "write",
                    "labels",
                    Constraint::OneOf(vec![
                        Scalar::Text("bug".into()),
                        Scalar::Text("triage".into()),
                    ]),
                ),
                limit(
                    "crm",
                    "write",
                    "options.owner",
                    Constraint::Equals(Scalar::Text("alice".into())),
                ),
                limit(
                    "crm",
                    "write",
                    "notify",
                    Constraint::Equals(Scalar::Boolean(false)),
                ),
            ],
            ..Attenuation::default()
        },
    );
    let write = |arguments: Value| ask("crm", "write").with(arguments);
    let good = json!({"ticket": "T-17", "title": "Refund", "priority": 2, "labels": ["bug"],
                      "options": {"owner": "alice"}, "notify": false, "note": 1.5});
    let with = |key: &str, value: Value| {
        let mut arguments = good.clone();
        arguments[key] = value;
        arguments
    };
    let mut without_owner = good.clone();
    without_owner["options"] = json!({});
    cases.push(draft(
        "constrained",
        "Argument constraints from the authority (prefix, max_length, glob) and from a holder's \
         block (range, one_of, equals on a nested path and a boolean): every one holds, on the \
         call's own arguments only.",
        constrained,
        vec![
            write(good.clone()),
            write(with("ticket", json!("X-17"))),
            write(with("title", json!("A much longer title"))),
            write(with("priority", json!(5))),
            write(with("priority", json!(2.0))),
            write(with("labels", json!(["bug", "wontfix"]))),
            write(with("labels", json!("triage"))),
            write(with("notify", json!(true))),
            write(without_owner),
            ask("crm", "write"),
            ask("crm", "read").with(json!({"path": "docs/guide.md"})),
            ask("crm", "read").with(json!({"path": "src/main.rs"})),
            ask("calendar", "read").with(json!({"path": "anything"})),
        ],
    ));

    let approval = |arguments: Option<Value>| mandate::token::approval::Approval {
        id: "0195f0c8-0000-7000-8000-0000000000a1".into(),
        tool: "crm".into(),
        operation: "delete".into(),
        approved_at: epoch() - Duration::minutes(1),
        approvers: vec![
            mandate::token::approval::Approver {
                subject: "bob".into(),
                issuer: "https://login.example.com/".into(),
            },
            mandate::token::approval::Approver {
                subject: "carol".into(),
                issuer: "https://login.example.com/".into(),
            },
        ],
        arguments_sha256: arguments.map(|a| mandate::token::canonical::arguments_digest(Some(&a))),
    };
    let approved = |id: &str, arguments: Option<Value>| {
        let mut spec = spec(id);
        spec.rights.push(right("crm", "delete"));
        spec.rights.sort();
        spec.approvals = vec![approval(arguments)];
        minted(&spec, keys)
    };
    cases.push(draft(
        "approved",
        "crm delete was gated behind human approval: bob and carol approved it, and the read-out \
         names them.",
        approved("a1", None),
        vec![ask("crm", "delete"), ask("crm", "read")],
    ));
    let bound = json!({"id": "cust-42", "hard": false, "reason": "dupé", "n": 1e21});
    cases.push(draft(
        "approved_for_one_call",
        "The approval of crm delete is bound to one call's arguments (SHA-256 of RFC 8785 \
         canonical JSON): the same arguments in any order pass; other arguments, none, or the \
         bound ones nested deeper are refused as arguments_not_approved. Other operations are \
         not bound.",
        approved("a2", Some(bound.clone())),
        vec![
            ask("crm", "delete")
                .with(json!({"n": 1e21, "reason": "dupé", "hard": false, "id": "cust-42"})),
            ask("crm", "delete")
                .with(json!({"id": "cust-43", "hard": false, "reason": "dupé", "n": 1e21})),
            ask("crm", "delete").with(json!({"id": "cust-42"})),
            ask("crm", "delete"),
            ask("crm", "delete").with(json!({"call": bound})),
            ask("crm", "write").with(json!({"anything": true})),
        ],
    ));

    let to_helper = delegate(&valid, "helper");
    let attested = attest(&to_helper, "helper", &keys.helper).unwrap();
    cases.push(draft(
        "attested",
        "The orchestrator delegates to helper, which signs its hop with its registered key.",
        attested.clone(),
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "attested_then_claimed",
        "After helper's attested hop, helper names reviewer, who does not sign: one hop \
         attested, one claimed.",
        delegate(&attested, "reviewer"),
        vec![ask("crm", "write")],
    ));
    cases.push(draft(
        "claimed",
        "A hop named by the holder and never signed by the delegate stays claimed.",
        to_helper.clone(),
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "forged_attestation_wrong_key",
        "helper's hop signed with reviewer's key: the key is not registered for helper.",
        attest(&to_helper, "helper", &keys.reviewer).unwrap(),
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "forged_attestation_not_delegated",
        "helper attests a hop nobody delegated to it.",
        attest(&valid, "helper", &keys.helper).unwrap(),
        vec![ask("crm", "read")],
    ));

    cases.push(draft(
        "wrong_root_key",
        "Signed by another key under kid 1: the signature does not verify under mandate's key.",
        mint(&spec("3"), &keys.stranger_root, 1).unwrap().token,
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "unknown_root_key",
        "Signed under a kid mandate does not publish.",
        mint(&spec("4"), &keys.stranger_root, 7).unwrap().token,
        vec![ask("crm", "read")],
    ));
    let expiry = epoch() + Duration::minutes(5);
    cases.push(draft(
        "expired",
        "Within the verifier's 30 s clock skew past expiry the mandate still works, to the end \
         of the 30th second (expiry is compared in whole seconds); after it, it has expired.",
        valid.clone(),
        vec![
            ask("crm", "read").at(expiry + Duration::seconds(29)),
            ask("crm", "read").at(expiry + Duration::seconds(30)),
            // Expiry is compared in whole seconds after the skew.
            ask("crm", "read").at(expiry + Duration::milliseconds(30_500)),
            ask("crm", "read").at(expiry + Duration::seconds(31)),
        ],
    ));

    let revoked_mandate = mint(&spec("5"), &keys.root, 1).unwrap();
    revoked.push(revoked_mandate.revocation_id.clone());
    cases.push(draft(
        "revoked",
        "The mandate's revocation id is in the feed.",
        delegate(&revoked_mandate.token, "helper"),
        vec![ask("crm", "read")],
    ));
    let branch_parent = delegate(&minted(&spec("6"), keys), "helper");
    let branch = delegate(&branch_parent, "reviewer");
    let ids = UnverifiedBiscuit::from_base64(&branch)
        .unwrap()
        .revocation_identifiers();
    revoked.push(ids.last().unwrap().clone());
    cases.push(draft(
        "revoked_branch",
        "The feed lists the last block's revocation id: this branch is revoked.",
        branch,
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "revoked_branch_parent",
        "The parent of a revoked branch still works.",
        branch_parent,
        vec![ask("crm", "read")],
    ));

    let mut bound_spec = spec("7");
    bound_spec.holder_key = Some(keys.jkt("orchestrator"));
    let bound = minted(&bound_spec, keys);
    let good_proof = proof_for(keys, "orchestrator", &bound);
    let proof = |holder: &HolderSecret, method: &str, url: &str, token: &str, at| {
        proof::create(holder, method, url, Some(token), None, at)
    };
    let orchestrator = keys.holder("orchestrator");
    cases.push(draft(
        "bound",
        "A mandate bound to the orchestrator's Ed25519 key: its proof for this call is \
         accepted once; a replay, a missing proof, another key's proof, another method or URL, \
         a stale proof and a proof for another token are refused. URLs compare normalized, \
         without query or fragment.",
        bound.clone(),
        vec![
            ask("crm", "read").proved(good_proof.clone()),
            ask("crm", "read").proved(good_proof),
            ask("crm", "read"),
            ask("crm", "read").proved(proof_for(keys, "stranger", &bound)),
            ask("crm", "read").proved(proof(orchestrator, "GET", URL, &bound, epoch())),
            ask("crm", "read").proved(proof(
                orchestrator,
                METHOD,
                "https://crm.example.com/v1/other",
                &bound,
                epoch(),
            )),
            ask("crm", "read").proved(proof(
                orchestrator,
                METHOD,
                URL,
                &bound,
                epoch() - Duration::seconds(61),
            )),
            ask("crm", "read").proved(proof(orchestrator, METHOD, URL, &valid, epoch())),
            ask("crm", "read").proved("not.a.proof".into()),
            ask("crm", "read").proved(proof_with_htu(
                orchestrator,
                "HTTPS://CRM.example.com:443/v1/tickets?page=2#top",
                &bound,
                epoch() - Duration::seconds(59),
            )),
            ask("crm", "read")
                .proved(proof_for(keys, "orchestrator", &bound))
                .addressed("https://crm.example.com/v1/tickets?page=3"),
        ],
    ));
    let mut p256_spec = spec("8");
    p256_spec.holder_key = Some(keys.jkt("helper"));
    let p256 = minted(&p256_spec, keys);
    cases.push(draft(
        "bound_p256",
        "A mandate bound to a P-256 key, proved with ES256.",
        p256.clone(),
        vec![ask("crm", "read").proved(proof_for(keys, "helper", &p256))],
    ));
    cases.push(draft(
        "unbound_with_proof",
        "An unbound mandate presented with a proof is refused: it must come as Bearer.",
        valid.clone(),
        vec![ask("crm", "read").proved(proof_for(keys, "orchestrator", &valid))],
    ));
    let handed = attest(
        &rebind(
            &delegate(&bound, "helper"),
            orchestrator,
            &keys.jkt("helper"),
        )
        .unwrap(),
        "helper",
        &keys.helper,
    )
    .unwrap();
    cases.push(draft(
        "rebound",
        "The orchestrator delegates to helper, moves the binding to helper's P-256 key and \
         helper attests: helper's proof is accepted, the orchestrator's no longer.",
        handed.clone(),
        vec![
            ask("crm", "read").proved(proof_for(keys, "helper", &handed)),
            ask("crm", "read").proved(proof_for(keys, "orchestrator", &handed)),
        ],
    ));
    cases.push(draft(
        "forged_binding",
        "A key other than the holder's signs the move of the binding to itself.",
        rebind(&bound, keys.holder("stranger"), &keys.jkt("stranger")).unwrap(),
        vec![ask("crm", "read").proved(proof_for(keys, "stranger", &bound))],
    ));
    cases.push(draft(
        "forged_binding_unbound",
        "A bearer mandate cannot be bound offline.",
        rebind(&valid, keys.holder("stranger"), &keys.jkt("stranger")).unwrap(),
        vec![ask("crm", "read")],
    ));

    let hostile = [
        (
            "hostile_rule",
            "A block carrying a rule.",
            "granted($t) <- right($t, $o);",
        ),
        (
            "hostile_join",
            "A block whose rule joins its own facts: costly inside one evaluation step.",
            "n(1); n(2); n(3); n(4); big($a, $b, $c, $d) <- n($a), n($b), n($c), n($d);",
        ),
        (
            "hostile_claimed_hop",
            "A hop stated in a block nobody signed.",
            "hop(\"helper\");",
        ),
        (
            "hostile_holder_key",
            "A binding moved by a first-party block.",
            "holder_key(\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\");",
        ),
        (
            "hostile_extra_right",
            "A block stating a right.",
            "right(\"crm\", \"delete\");",
        ),
        (
            "hostile_check_all",
            "`check all` is not a narrowing shape.",
            "check all time($t), $t <= 2030-01-01T00:00:00Z;",
        ),
        (
            "hostile_reject_if",
            "`reject if` is not a narrowing shape.",
            "reject if tool(\"billing\");",
        ),
        (
            "hostile_trusting",
            "A check with a trust scope.",
            "check if right(\"crm\", \"read\") trusting authority;",
        ),
        (
            "hostile_other_operator",
            "A rights check with an operator outside the vocabulary.",
            "check if tool($t), operation($o), $t.starts_with(\"c\");",
        ),
        (
            "hostile_constraint_mismatch",
            "A constraint fact whose check is not the one it compiles to.",
            "constraint(\"crm\", \"write\", \"ticket\", \"prefix\", \"T-\"); \
             check if tool($tool), operation($operation), !($tool == \"crm\" && $operation == \
             \"write\") or arg(\"ticket\", $value), $value.starts_with(\"\");",
        ),
        (
            "hostile_quoted_string",
            "A delegate whose name carries a quote.",
            "delegate(\"help\\\"er\");",
        ),
        (
            "hostile_two_delegates",
            "A block naming two delegates.",
            "delegate(\"helper\"); delegate(\"reviewer\");",
        ),
    ];
    for (name, description, source) in hostile {
        cases.push(draft(
            name,
            description,
            append(&valid, source),
            vec![ask("crm", "read")],
        ));
    }
    let mut deep = valid.clone();
    for i in 0..16 {
        deep = delegate(&deep, &format!("agent-{i}"));
    }
    cases.push(draft(
        "too_many_blocks",
        "Seventeen blocks: more than a verifier accepts.",
        deep,
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "too_large",
        "More than 16 KiB: refused before it is decoded.",
        format!("{valid}{}", "A".repeat(16 * 1024)),
        vec![ask("crm", "read")],
    ));
    cases.push(draft(
        "malformed",
        "Not a Biscuit.",
        "bm90IGEgYmlzY3VpdA".into(),
        vec![ask("crm", "read")],
    ));
    (cases, revoked)
}

/// The verifier's revocation list: the feed fixture.
struct Feed(HashSet<Vec<u8>>);

impl RevocationCheck for Feed {
    fn is_revoked(&self, id: &[u8]) -> bool {
        self.0.contains(id)
    }
}

/// Serves the key documents of `vectors` as mandate does.
async fn serve_keys(vectors: &Vectors) -> String {
    use axum::routing::get;
    let keys = vectors.keys.clone();
    let agents = vectors.agent_keys.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/mandate-keys",
            get(move || async move { axum::Json(keys) }),
        )
        .route(
            "/.well-known/mandate-agent-keys",
            get(move || async move { axum::Json(agents) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// mandate's verifier, reading its clock from `clock`, trusting `vectors`' keys and feed.
fn verifier(base: &str, vectors: &Vectors, clock: &Arc<ManualClock>) -> Verifier {
    let revoked = vectors.revocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| hex::decode(item["revocation_id"].as_str().unwrap()).unwrap())
        .collect();
    let shared: SharedClock = clock.clone();
    Verifier::new(VerifierSettings::new(base), Arc::new(Feed(revoked)), shared).unwrap()
}

/// mandate's verdict on one call.
async fn verdict(verifier: &Verifier, clock: &ManualClock, token: &str, call: &Ask) -> Expect {
    clock.set(call.now);
    let presented = Presentation {
        token,
        proof: call.proof.as_deref(),
        method: METHOD,
        url: call.url,
    };
    let access = Access {
        tool: call.tool.into(),
        operation: call.operation.into(),
        resource: call.resource.map(str::to_owned),
    };
    match verifier
        .verify_presented(&presented, &access, call.arguments.as_ref())
        .await
    {
        Ok(verified) => Expect {
            verdict: "allow".into(),
            error: None,
            verified: Some(serde_json::to_value(verified).unwrap()),
        },
        Err(error) => Expect {
            verdict: "deny".into(),
            error: Some(error.code().into()),
            verified: None,
        },
    }
}

/// The settings of the verifier the verdicts come from: `VerifierSettings::new`'s defaults.
fn settings() -> Value {
    let settings = VerifierSettings::new("");
    let options = &settings.options;
    json!({
        "max_token_bytes": options.max_bytes,
        "max_blocks": options.max_blocks,
        "clock_skew_seconds": options.skew.num_seconds(),
        "proof_max_age_seconds": settings.proofs.max_age.num_seconds(),
        "proof_max_ahead_seconds": settings.proofs.max_ahead.num_seconds(),
        "run_limits": {"max_facts": options.limits.max_facts,
                       "max_iterations": options.limits.max_iterations,
                       "max_time_ms": options.limits.max_time.as_millis()},
    })
}

/// A fresh generation: new keys and tokens, and mandate's verdict on every call.
async fn generate() -> Vectors {
    let keys = Keys::new();
    let (drafts, revoked) = drafts(&keys);
    let published = |key: &KeyPair| format_public_key(&key.public());
    let mut vectors = Vectors {
        about: "mandate/v1 conformance vectors (docs/token-schema.md), written by \
                `MANDATE_WRITE_VECTORS=1 cargo test --test api vectors::`. Each call is made \
                in order against one verifier trusting `keys`, `agent_keys` and the \
                `revocations` feed, with `settings`, its clock at `now`, presenting `token` \
                with `scheme` (and `proof`) for `method` `url`; it must reach `expect`."
            .into(),
        keys: json!({"keys": [{"kid": 1, "algorithm": "ed25519",
                               "public_key": published(&keys.root), "status": "active",
                               "created_at": "2026-01-02T03:04:05Z"}]}),
        agent_keys: json!({"agents": [
            {"agent": "helper", "public_keys": [published(&keys.helper)]},
            {"agent": "reviewer", "public_keys": [published(&keys.reviewer)]},
        ]}),
        revocations: json!({
            "items": revoked.iter().enumerate().map(|(i, id)| json!({
                "seq": i + 1, "revocation_id": hex::encode(id),
                "expires_at": epoch() + Duration::minutes(5),
            })).collect::<Vec<_>>(),
            "next_after": revoked.len(),
            "kept_past_expiry_seconds": mandate::token::verify::KEEP_REVOKED_SECONDS,
        }),
        settings: settings(),
        holders: keys
            .holders
            .iter()
            .map(|(name, key)| ((*name).to_owned(), key.to_jwk()))
            .collect(),
        cases: Vec::new(),
    };
    let base = serve_keys(&vectors).await;
    for draft in drafts {
        let clock = Arc::new(ManualClock::new(epoch()));
        let verifier = verifier(&base, &vectors, &clock);
        let mut calls = Vec::new();
        for ask in &draft.asks {
            calls.push(Call {
                tool: ask.tool.into(),
                operation: ask.operation.into(),
                resource: ask.resource.map(str::to_owned),
                arguments: ask.arguments.clone(),
                now: ask.now,
                scheme: if ask.proof.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                }
                .into(),
                proof: ask.proof.clone(),
                method: METHOD.into(),
                url: ask.url.into(),
                expect: verdict(&verifier, &clock, &draft.token, ask).await,
            });
        }
        vectors.cases.push(Case {
            name: draft.name.into(),
            description: draft.description.into(),
            token: draft.token,
            calls,
        });
    }
    vectors
}

/// What stays the same from one generation to the next: everything but key material, tokens'
/// signatures, proofs' signatures and `jti`s, and the revocation ids they make. A token reads
/// as its blocks' Datalog, a proof as its claims, a holder's thumbprint as the holder's name and
/// a token's hash as the first case holding that token.
fn shape(vectors: &Vectors) -> Value {
    let holders: BTreeMap<String, String> = vectors
        .holders
        .iter()
        .map(|(name, jwk)| {
            let key = HolderSecret::from_jwk(jwk).unwrap();
            (key.public().thumbprint(), name.clone())
        })
        .collect();
    let mut hashes = BTreeMap::new();
    for case in &vectors.cases {
        hashes
            .entry(proof::token_hash(&case.token))
            .or_insert_with(|| case.name.clone());
    }
    let mut value = serde_json::to_value(vectors).unwrap();
    value["holders"] = json!(vectors.holders.keys().collect::<Vec<_>>());
    for key in value["keys"]["keys"].as_array_mut().unwrap() {
        key["public_key"] = Value::Null;
    }
    for agent in value["agent_keys"]["agents"].as_array_mut().unwrap() {
        agent["public_keys"] = json!(agent["public_keys"].as_array().unwrap().len());
    }
    for item in value["revocations"]["items"].as_array_mut().unwrap() {
        item["revocation_id"] = Value::Null;
    }
    for case in value["cases"].as_array_mut().unwrap() {
        case["token"] = blocks(case["token"].as_str().unwrap(), &holders);
        for call in case["calls"].as_array_mut().unwrap() {
            call["proof"] = match call["proof"].as_str() {
                Some(jwt) => claims(jwt, &holders, &hashes),
                None => Value::Null,
            };
            if let Some(verified) = call["expect"]["verified"].as_object_mut() {
                verified.remove("revocation_ids");
                if let Some(Value::String(jkt)) = verified.get_mut("holder_key") {
                    *jkt = holders[jkt.as_str()].clone();
                }
            }
        }
    }
    value
}

/// A token's blocks as printed Datalog, holders' thumbprints by name (the length of what is
/// not a Biscuit).
fn blocks(token: &str, holders: &BTreeMap<String, String>) -> Value {
    let Ok(biscuit) = UnverifiedBiscuit::from_base64(token) else {
        return json!({"unreadable_bytes": token.len()});
    };
    (0..biscuit.block_count())
        .map(|i| {
            let source = biscuit.print_block_source(i).unwrap();
            holders
                .iter()
                .fold(source, |source, (jkt, name)| source.replace(jkt, name))
        })
        .collect()
}

/// A proof's header and claims, with what a generation draws at random named instead.
fn claims(
    jwt: &str,
    holders: &BTreeMap<String, String>,
    hashes: &BTreeMap<String, String>,
) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let part = |i: usize| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(i)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(mut header), Some(mut claims)) = (part(0), part(1)) else {
        return json!({"unreadable": jwt});
    };
    let key = mandate::token::pop::HolderKey::from_jwk(&header["jwk"]).unwrap();
    header["jwk"] = json!(holders[&key.thumbprint()]);
    claims["jti"] = Value::Null;
    claims["iat"] = json!(claims["iat"].as_i64().unwrap() - epoch().timestamp());
    claims["ath"] = json!(hashes.get(claims["ath"].as_str().unwrap()));
    json!({"header": header, "claims": claims})
}

/// Where two JSON values first differ, as a path (`cases[3].calls[0].expect`).
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, format!("{at}.{k}")),
                _ => Some(format!("{at}.{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a} against {b}")),
    }
}

#[tokio::test]
async fn conformance_vectors_are_current() {
    let fresh = generate().await;
    if std::env::var_os("MANDATE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&fresh).unwrap();
        std::fs::write(PATH, text + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(PATH).unwrap_or_else(|e| {
        panic!("{PATH}: {e}; write it with MANDATE_WRITE_VECTORS=1 cargo test --test api vectors::")
    });
    let recorded: Vectors = serde_json::from_str(&text).unwrap();
    if let Some(path) = first_difference(&shape(&recorded), &shape(&fresh), String::new()) {
        panic!("the vectors are stale at {path}: regenerate them (MANDATE_WRITE_VECTORS=1)");
    }
    // The recorded tokens and proofs still get their recorded verdicts from mandate's verifier.
    let base = serve_keys(&recorded).await;
    for case in &recorded.cases {
        let clock = Arc::new(ManualClock::new(epoch()));
        let verifier = verifier(&base, &recorded, &clock);
        for (i, call) in case.calls.iter().enumerate() {
            clock.set(call.now);
            let presented = Presentation {
                token: &case.token,
                proof: call.proof.as_deref(),
                method: &call.method,
                url: &call.url,
            };
            let access = Access {
                tool: call.tool.clone(),
                operation: call.operation.clone(),
                resource: call.resource.clone(),
            };
            let got = match verifier
                .verify_presented(&presented, &access, call.arguments.as_ref())
                .await
            {
                Ok(verified) => (Some(serde_json::to_value(verified).unwrap()), None),
                Err(error) => (None, Some(error.code().to_owned())),
            };
            assert_eq!(
                got,
                (call.expect.verified.clone(), call.expect.error.clone()),
                "case {} call {i}",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn the_vectors_cover_every_refusal_a_client_must_reach() {
    let vectors = generate().await;
    let errors: HashSet<String> = vectors
        .cases
        .iter()
        .flat_map(|c| &c.calls)
        .filter_map(|call| call.expect.error.clone())
        .collect();
    for code in [
        "not_authorized",
        "argument_not_allowed",
        "expired",
        "revoked",
        "forged_attestation",
        "forged_binding",
        "bad_signature",
        "unknown_key",
        "invalid_dpop_proof",
        "not_mandate_block",
        "too_many_blocks",
        "too_large",
        "malformed",
    ] {
        assert!(errors.contains(code), "no vector is refused with {code}");
    }
    let allowed = vectors
        .cases
        .iter()
        .flat_map(|c| &c.calls)
        .filter(|call| call.expect.verdict == "allow")
        .count();
    assert!(allowed >= 10, "only {allowed} allowed calls");
    for case in &vectors.cases {
        let Some(expected) = case.name.strip_prefix("hostile_") else {
            continue;
        };
        assert_eq!(
            case.calls[0].expect.error.as_deref(),
            Some("not_mandate_block"),
            "hostile case {expected}"
        );
    }
}
