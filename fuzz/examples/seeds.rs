//! Writes the checked-in seed corpus under `fuzz/seeds/<target>/`: valid inputs each target's
//! decoder accepts, so fuzzing starts from the real shapes. Run it after changing the token
//! schema or an endpoint's body: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
use mandate_fuzz as fixture;
use serde_json::json;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    if let Err(error) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), bytes))
    {
        panic!("{}: {error}", dir.display());
    }
}

fn text(mode: u8, text: &str) -> Vec<u8> {
    let mut bytes = vec![mode];
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn main() {
    let mandate = fixture::mandate();
    let narrowed = attenuate(
        &mandate,
        &Attenuation {
            rights: Some(vec![fixture::right("crm", "read")]),
            resources: Some(vec!["ACME".to_owned()]),
            expires_at: Some(fixture::now() + chrono::Duration::minutes(10)),
            delegate: Some("helper".to_owned()),
            constraints: vec![mandate::token::constraints::ArgConstraint {
                tool: "crm".to_owned(),
                operation: "write".to_owned(),
                argument: "id".to_owned(),
                constraint: mandate::token::constraints::Constraint::Prefix("T-".to_owned()),
            }],
        },
    )
    .unwrap_or_else(|e| panic!("attenuate: {e}"));
    let attested =
        attest(&narrowed, "helper", &fixture::helper()).unwrap_or_else(|e| panic!("attest: {e}"));
    for (name, token) in [
        ("mandate", &mandate),
        ("narrowed", &narrowed),
        ("attested", &attested),
    ] {
        write("token_verify", &format!("{name}-text"), &text(0, token));
        write(
            "token_verify",
            &format!("{name}-raw"),
            &fixture::token_bytes(token),
        );
    }

    // block_vocabulary: each documented shape as Datalog (mode 0), and hostile ones.
    for (name, source) in [
        ("delegate", "delegate(\"helper\");"),
        ("rights", "check if tool($t), operation($o), ($t == \"crm\" && $o == \"read\") || ($t == \"crm\" && $o == \"write\");"),
        ("never", "check if false;"),
        ("resources", "check if resource($r), {\"ACME\", \"acme/web\"}.contains($r);"),
        ("expiry", "check if time($t), $t <= 2027-01-15T08:00:00Z;"),
        ("join", "f(1); f(2); f(3); r($a) <- f($a), f($b), f($c), $a + $b + $c < 0;"),
        ("scope", "check if time($t), $t <= 2027-01-15T08:00:00Z trusting previous;"),
    ] {
        write("block_vocabulary", name, &text(0, source));
    }
    write(
        "block_vocabulary",
        "attested-raw",
        &fixture::token_bytes(&attested),
    );

    // attenuate_verify reads structure with `arbitrary`: a few byte patterns to start from.
    for (i, seed) in [[1u8; 32], [0x55; 32], [0xaa; 32], [0x0f; 32]]
        .iter()
        .enumerate()
    {
        write("attenuate_verify", &format!("pattern-{i}"), seed);
    }

    // jwt: signed header and claims (mode 1, split at 0xff), and a token as text (mode 0).
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"});
    let claims = json!({"iss": "https://idp.example.com/", "aud": "mandate", "sub": "alice",
        "groups": ["support"], "exp": 1_800_000_600, "iat": 1_800_000_000});
    let mut signed = vec![1];
    signed.extend(header.to_string().bytes());
    signed.push(0xff);
    signed.extend(claims.to_string().bytes());
    write("jwt", "signed", &signed);
    let mut expired = vec![1];
    expired.extend(header.to_string().bytes());
    expired.push(0xff);
    expired.extend(
        json!({"iss": "https://idp.example.com/", "aud": ["other", "mandate"],
        "sub": "alice", "exp": 1_700_000_000, "nbf": 1_900_000_000})
        .to_string()
        .bytes(),
    );
    write("jwt", "expired", &expired);
    write("jwt", "text", &text(0, "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8ifQ.c2ln"));

    // api_json: [endpoint index, content-type index, body…] as the target's tables order them.
    let bodies = [
        (
            0,
            json!({"subject_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "task": {"description": "Summarise tickets", "ref": "T-1"},
            "scope": [{"tool": "crm", "operations": ["read"]}], "ttl_seconds": 300}),
        ),
        (
            1,
            json!({"token": mandate, "tool": "crm", "operation": "read"}),
        ),
        (2, json!({"reason": "the task was cancelled"})),
        (
            3,
            json!({"receipts": [{"token": mandate, "tool": "crm", "operation": "read", "resource": "ACME",
            "outcome": "success", "occurred_at": "2027-01-15T08:00:00Z"}]}),
        ),
        (4, json!({"token": mandate, "reason": "leaked"})),
        (
            6,
            json!({"id": "wiki", "display_name": "Wiki", "kind": "mcp_server", "owner": "dan@example.com",
            "operations": ["pages.read"]}),
        ),
        (
            7,
            json!({"display_name": "CRM v2", "operations": ["read", "write", "export"]}),
        ),
        (
            8,
            json!({"id": "idp2", "issuer_url": "https://login.example.org/", "audiences": ["mandate"],
            "discovery": true, "allowed_algorithms": ["ES256"]}),
        ),
        (
            9,
            json!({"audiences": ["mandate", "api"], "jwks_uri": null}),
        ),
        (
            10,
            json!({"id": "summariser", "display_name": "Summariser", "kind": "sub_agent",
            "owner": "alice@example.com", "ceiling": [{"tool": "crm", "operations": ["read"]}], "max_ttl_seconds": 600}),
        ),
        (11, json!({"display_name": "Helper 2", "team": "support"})),
        (
            12,
            json!({"public_key": "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189"}),
        ),
        (
            13,
            json!({"id": "p2", "issuer": "idp", "subjects": ["alice"], "agents": ["bot"],
            "grants": [{"tool": "crm", "operations": ["read"]}], "max_ttl_seconds": 300}),
        ),
        (
            14,
            json!({"groups": ["support", "sales"], "max_ttl_seconds": 120}),
        ),
        (15, json!({"name": "auditor", "role": "reader"})),
        (
            16,
            json!({"agent": "bot", "reason": "incident", "principal": {"subject": "alice", "issuer": "https://idp.example.com/"}}),
        ),
    ];
    for (endpoint, body) in bodies {
        let mut seed = vec![endpoint, 0];
        seed.extend(body.to_string().bytes());
        write("api_json", &format!("endpoint-{endpoint:02}"), &seed);
    }
    let mut form = vec![5, 2];
    form.extend(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&scope=crm%3Aread");
    write("api_json", "endpoint-05-form", &form);

    // revocation_feed: a page (even first byte) and a stream (odd).
    let entry = json!({"seq": 3, "revocation_id": "0a1b2c", "mandate_id": "0192f3c0-0000-7000-8000-000000000001",
        "revoked_at": "2027-01-15T08:00:00Z", "expires_at": "2027-01-15T09:00:00Z"});
    let mut page = vec![0];
    page.extend(
        json!({"items": [entry], "next_after": 3})
            .to_string()
            .bytes(),
    );
    write("revocation_feed", "page", &page);
    let mut stream = vec![1];
    stream.extend(format!(": keep-alive\n\nid: 3\nevent: revocation\ndata: {entry}\n\n").bytes());
    write("revocation_feed", "stream", &stream);
}
