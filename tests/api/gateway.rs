//! `mandate gateway` with real parts: an MCP server built with the official MCP Python SDK
//! behind it, driven by the SDK's own client with a mandate minted from the test identity
//! provider (tests/mcp/). Needs `pip install -r tests/mcp/requirements.txt`; without it these
//! tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use mandate::clock::Clock;
use mandate::gateway::config::GatewayConfig;
use mandate::gateway::serve;
use mandate::token::attenuate::{attenuate, Attenuation};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::fixtures::{agent_secret, mint_setup};
use crate::helpers::{real_now, Backend, TestApp};

fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp")
}

/// Fails (never skips) when the MCP SDK is missing.
pub(crate) fn require_sdk() {
    let found = Command::new("python3")
        .args(["-c", "import mcp, httpx2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the MCP Python SDK is missing: python3 -m pip install -r tests/mcp/requirements.txt"
    );
}

/// The upstream MCP server, killed when dropped.
pub(crate) struct Upstream {
    child: Child,
    pub(crate) port: u16,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    pub(crate) async fn start() -> Upstream {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls.jsonl");
        let child = Command::new("python3")
            .arg(mcp_dir().join("upstream.py"))
            .args(["--port", &port.to_string(), "--calls"])
            .arg(&calls)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = real_now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "upstream did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Upstream {
            child,
            port,
            calls,
            _dir: dir,
        }
    }

    /// Every tool call the upstream executed.
    pub(crate) fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Runs the SDK client against `url` with `steps`; its one JSON line.
pub(crate) async fn client(url: &str, token: Option<&str>, steps: Value) -> Value {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(mcp_dir().join("client.py"))
        .args(["--url", url]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command.arg(steps.to_string()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "client printed {stdout:?}; stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The inventory: tool `tracker` (an MCP server), orchestrator `mcp-bot`, gateway `edge-gw`,
/// and two policies for group support: issues.create only in `acme/` repositories with
/// labels bug or triage, and the other tools unconstrained. Returns the bot's secret and the
/// gateway's credential.
pub(crate) async fn inventory(app: &TestApp) -> (String, String) {
    let operations = ["issues.create", "issues.read", "whoami", "secrets.leak"];
    let posts = [
        (
            "/v1/admin/tools",
            json!({"id": "tracker", "display_name": "Tracker MCP", "kind": "mcp_server",
                   "owner": "carol@example.com", "operations": operations}),
        ),
        (
            "/v1/admin/agents",
            json!({"id": "mcp-bot", "display_name": "MCP bot", "kind": "orchestrator",
                   "owner": "alice@example.com",
                   "ceiling": [{"tool": "tracker", "operations": operations}]}),
        ),
        (
            "/v1/admin/policies",
            json!({"id": "tracker-create", "issuer": "test-idp", "groups": ["support"],
                   "agents": ["mcp-bot"], "max_ttl_seconds": 600,
                   "grants": [{"tool": "tracker", "operations": ["issues.create"],
                               "constraints": {"repo": {"prefix": "acme/"},
                                               "labels": {"one_of": ["bug", "triage"]}}}]}),
        ),
        (
            "/v1/admin/policies",
            json!({"id": "tracker-rest", "issuer": "test-idp", "groups": ["support"],
                   "agents": ["mcp-bot"], "max_ttl_seconds": 600,
                   "grants": [{"tool": "tracker",
                               "operations": ["issues.read", "whoami", "secrets.leak"]}]}),
        ),
    ];
    for (path, body) in posts {
        app.admin_ok(Method::POST, path, Some(body), 201).await;
    }
    let secret = agent_secret(app, "/v1/admin/agents/mcp-bot/secret").await;
    let gateway = app
        .admin_ok(
            Method::POST,
            "/v1/admin/reporters",
            Some(
                json!({"id": "edge-gw", "display_name": "Edge gateway", "kind": "gateway",
                        "owner": "ops@example.com"}),
            ),
            201,
        )
        .await;
    (secret, gateway["secret"].as_str().unwrap().to_owned())
}

/// A gateway in front of `routes` (TOML `[[route]]`/`[[check]]` tables), on mandate's clock.
pub(crate) async fn gateway(app: &TestApp, credential: &str, routes: &str, dir: &Path) -> String {
    let config = format!(
        "mandate_url = \"{}\"\nlisten = \"127.0.0.1:0\"\nassertion_key_file = \"{}\"\n\
         max_revocation_age_seconds = 30\n{routes}",
        app.base,
        dir.join("assertion.pem").display()
    );
    let mut config = GatewayConfig::parse(&config, Some(credential)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    config.public_url = format!("http://{address}");
    let clock: mandate::clock::SharedClock = app.clock.clone();
    let prepared = serve::prepare(config, clock).await.unwrap();
    tokio::spawn(serve::run(prepared, listener, std::future::pending()));
    format!("http://{address}")
}

/// A mandate for alice (group support) asking for `operations` of tracker, handed on to a
/// researcher sub-agent (a claimed hop).
async fn mandate_for(
    app: &TestApp,
    idp: &crate::helpers::idp::TestIdp,
    secret: &str,
    operations: &[&str],
) -> (String, String) {
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let request = crate::helpers::callers::Mint::new(&jwt).scope("tracker", operations);
    let minted = app.agent(secret).mint(&request).await;
    let token = attenuate(
        minted["token"].as_str().unwrap(),
        &Attenuation {
            delegate: Some("researcher".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    (token, minted["mandate_id"].as_str().unwrap().to_owned())
}

fn claims(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

#[tokio::test]
async fn an_mcp_client_gets_through_the_gateway_only_what_its_mandate_allows() {
    require_sdk();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, _) = mint_setup(&app).await;
    let (secret, credential) = inventory(&app).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "[[route]]\npath = \"/mcp/tracker\"\ntool = \"tracker\"\nupstream = \"http://127.0.0.1:{}/mcp\"\n",
        upstream.port
    );
    let base = gateway(&app, &credential, &routes, dir.path()).await;
    let url = format!("{base}/mcp/tracker");
    let (token, mandate_id) = mandate_for(
        &app,
        &idp,
        &secret,
        &["issues.create", "whoami", "secrets.leak"],
    )
    .await;

    // tools/list shows only the granted tools; calls inside the constraints reach the upstream.
    let run = client(
        &url,
        Some(&token),
        json!([
            {"op": "list"},
            {"op": "call", "name": "issues.create",
             "arguments": {"repo": "acme/web", "title": "Broken", "labels": ["bug"]}},
            {"op": "call", "name": "whoami", "arguments": {}},
            {"op": "call", "name": "secrets.leak", "arguments": {}},
        ]),
    )
    .await;
    assert_eq!(run["ok"], true, "{run}");
    let results = run["results"].as_array().unwrap();
    let mut listed: Vec<&str> = results[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, ["issues.create", "secrets.leak", "whoami"]);
    assert_eq!(results[1]["isError"], false);
    assert_eq!(results[1]["content"][0], "created acme/web#1");

    // The upstream never sees the mandate; it gets a signed assertion of who acts instead
    // (which, echoed back, the scanner redacts as a JWT).
    let seen: Value = serde_json::from_str(results[2]["content"][0].as_str().unwrap()).unwrap();
    assert_eq!(seen["authorization_present"], false, "{seen}");
    assert_eq!(seen["mandate_assertion"], "[REDACTED:jwt]", "{seen}");
    let whoami = upstream
        .calls()
        .into_iter()
        .find(|c| c["tool"] == "whoami")
        .unwrap_or_default();
    assert!(whoami["headers"].get("authorization").is_none(), "{whoami}");
    let assertion = claims(
        whoami["headers"]["mandate-assertion"]
            .as_str()
            .unwrap_or_default(),
    );
    assert!(assertion.is_object(), "{whoami}");
    assert_eq!(assertion["sub"], "alice");
    assert_eq!(assertion["aud"], "tracker");
    assert_eq!(assertion["agent"], "mcp-bot");
    assert_eq!(
        assertion["hops"],
        json!([{"agent": "researcher", "attested": false}])
    );
    assert_eq!(assertion["mandate_id"], mandate_id);
    assert_eq!(assertion["call"]["operation"], "whoami");
    let jwks: Value = app
        .client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");

    // A secret in the upstream's answer is redacted, in the text and the structured content.
    let leak = results[3].to_string();
    assert!(!leak.contains("AKIAIOSFODNN7EXAMPLE"), "{leak}");
    assert!(!leak.contains("BEGIN PRIVATE KEY"), "{leak}");
    assert!(leak.contains("[REDACTED:aws-access-key]"), "{leak}");
    assert!(leak.contains("[REDACTED:private-key]"), "{leak}");

    // A call outside the constraints is refused naming the argument, and never reaches the
    // upstream; so is a tool the mandate does not grant.
    let outside = client(
        &url,
        Some(&token),
        json!([{"op": "call", "name": "issues.create",
                "arguments": {"repo": "evil/web", "title": "x", "labels": ["bug"]}}]),
    )
    .await;
    let refused = &outside["results"][0];
    assert_eq!(refused["status"], 403, "{outside}");
    assert_eq!(refused["code"], -32602, "{outside}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("argument `repo` must start with `acme/`"),
        "{message}"
    );
    assert!(
        refused["www_authenticate"]
            .as_str()
            .is_some_and(|w| w.contains("insufficient_scope")
                && w.contains("scope=\"tracker:issues.create\"")),
        "{outside}"
    );
    let ungranted = client(
        &url,
        Some(&token),
        json!([{"op": "call", "name": "issues.read", "arguments": {"repo": "acme/web"}}]),
    )
    .await;
    assert_eq!(ungranted["results"][0]["status"], 403, "{ungranted}");
    let executed: Vec<Value> = upstream.calls();
    let names: Vec<&str> = executed.iter().filter_map(|c| c["tool"].as_str()).collect();
    assert_eq!(
        names,
        ["issues.create", "whoami", "secrets.leak"],
        "{executed:?}"
    );
    assert!(executed.iter().all(|c| !c.to_string().contains("evil/web")));

    // No token: 401 pointing at metadata the client can fetch, naming mandate.
    let anonymous = client(&url, None, json!([{"op": "list"}])).await;
    assert_eq!(anonymous["ok"], false, "{anonymous}");
    assert_eq!(anonymous["status"], 401, "{anonymous}");
    let challenge = anonymous["www_authenticate"].as_str().unwrap_or_default();
    let metadata_url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        metadata_url,
        format!("{base}/.well-known/oauth-protected-resource/mcp/tracker")
    );
    let metadata: Value = app
        .client
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], url);
    assert_eq!(metadata["authorization_servers"], json!([app.base]));
    let server: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(server["issuer"], app.base);
    assert_eq!(
        server["token_endpoint"],
        format!("{}/oauth2/token", app.base)
    );

    // Each call appears in attribution with its chain and the reporting gateway.
    let mut actions = Vec::new();
    let started = real_now();
    while actions.len() < 5 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, found) = app
            .admin(Method::GET, "/v1/admin/attribution?principal=alice", None)
            .await;
        actions = found.as_array().cloned().unwrap_or_default();
    }
    assert_eq!(actions.len(), 5, "{actions:?}");
    for action in &actions {
        assert_eq!(action["reporter"], "edge-gw");
        assert_eq!(action["tool"], "tracker");
        assert_eq!(action["orchestrator"], "mcp-bot");
        assert_eq!(
            action["hops"],
            json!([{"agent": "researcher", "attested": false}])
        );
        assert_eq!(
            action["details"]["arguments_sha256"].as_str().map(str::len),
            Some(64)
        );
    }
    let outcome = |operation: &str, outcome: &str| {
        actions
            .iter()
            .find(|a| a["operation"] == operation && a["outcome"] == outcome)
            .cloned()
            .unwrap_or_else(|| panic!("no {outcome} {operation} in {actions:?}"))
    };
    outcome("issues.create", "success");
    let denied = outcome("issues.create", "denied");
    assert!(denied["details"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("repo"));
    assert_eq!(
        outcome("secrets.leak", "success")["details"]["output"],
        "redacted"
    );
    outcome("issues.read", "denied");

    // A revoked mandate is refused within a second of the revocation.
    let (status, _) = app.agent(&secret).revoke(&mandate_id, "task done").await;
    assert_eq!(status, 200);
    let revoked_at = real_now();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    loop {
        let response = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&ping)
            .send()
            .await
            .unwrap();
        if response.status() == 401 {
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap_or_default();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stdio_server_and_a_proxy_check_enforce_the_same_mandate() {
    require_sdk();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, _) = mint_setup(&app).await;
    let (secret, credential) = inventory(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("stdio-calls.jsonl");
    let routes = format!(
        "[[route]]\npath = \"/mcp/local\"\ntool = \"tracker\"\ncommand = [\"python3\", \"{}\", \"--stdio\", \"--calls\", \"{}\"]\n\
         [[check]]\nprefix = \"/tracker\"\ntool = \"tracker\"\noperations = {{ POST = \"issues.create\", GET = \"issues.read\" }}\n",
        mcp_dir().join("upstream.py").display(),
        calls.display()
    );
    let base = gateway(&app, &credential, &routes, dir.path()).await;
    let (token, _) = mandate_for(&app, &idp, &secret, &["issues.create"]).await;

    let run = client(
        &format!("{base}/mcp/local"),
        Some(&token),
        json!([
            {"op": "list"},
            {"op": "call", "name": "issues.create",
             "arguments": {"repo": "acme/cli", "title": "t", "labels": ["triage"]}},
        ]),
    )
    .await;
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["results"][0]["tools"], json!(["issues.create"]));
    assert_eq!(run["results"][1]["content"][0], "created acme/cli#1");
    let refused = client(
        &format!("{base}/mcp/local"),
        Some(&token),
        json!([{"op": "call", "name": "issues.create",
                "arguments": {"repo": "acme/cli", "title": "t", "labels": ["wontfix"]}}]),
    )
    .await;
    assert_eq!(refused["results"][0]["status"], 403, "{refused}");
    assert!(refused["results"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("argument `labels` must be one of `bug`, `triage`"));
    let executed = std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(executed.lines().count(), 1, "{executed}");

    // Envoy's ext_authz: the body as arguments; nginx's auth_request: the original URI's query.
    let envoy = |body: Value, token: Option<&str>| {
        let mut request = app
            .client
            .post(format!("{base}/check/envoy/tracker/issues"))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let allowed = envoy(json!({"repo": "acme/web", "labels": ["bug"]}), Some(&token))
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let assertion = claims(
        allowed.headers()["mandate-assertion"]
            .to_str()
            .unwrap_or_default(),
    );
    assert_eq!(assertion["call"]["operation"], "issues.create");
    let outside = envoy(json!({"repo": "evil/web", "labels": ["bug"]}), Some(&token))
        .await
        .unwrap();
    assert_eq!(outside.status(), 403);
    assert!(outside.headers()["www-authenticate"]
        .to_str()
        .unwrap_or_default()
        .contains("insufficient_scope"));
    let problem: Value = outside.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("repo"),
        "{problem}"
    );
    assert_eq!(envoy(json!({}), None).await.unwrap().status(), 401);
    let nginx = app
        .client
        .get(format!("{base}/check/nginx"))
        .bearer_auth(&token)
        .header("x-original-uri", "/tracker/issues?repo=acme/web")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(nginx.status(), 403, "issues.read is not in this mandate");
}

#[test]
fn the_documented_gateway_config_is_accepted_as_written() {
    let doc = include_str!("../../docs/gateway.md");
    let block = doc
        .split_once("<!-- gateway config:")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("gateway.credential");
    std::fs::write(&credential, "mnd_rep_documented\n").unwrap();
    std::fs::set_permissions(
        &credential,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Only the credential file's place differs: a test cannot write to the working directory.
    let text = block.replace("\"gateway.credential\"", &format!("{credential:?}"));
    let config = GatewayConfig::parse(&text, None).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.checks[0].operations["POST"], "issues.create");
    assert_eq!(config.credential.as_str(), "mnd_rep_documented");
    assert!(config.scanners.0.iter().any(|s| s.name == "ticket-secret"));
}

#[tokio::test]
async fn a_bad_gateway_config_stops_with_one_line_naming_the_problem() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    mint_setup(&app).await;
    let (_, credential) = inventory(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("assertion.pem");
    let path = dir.path().join("gateway.toml");
    let run = |config: String| {
        std::fs::write(&path, config).unwrap();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["gateway", "--config"])
            .arg(&path)
            .env("MANDATE_GATEWAY_CREDENTIAL", &credential)
            .output();
        async move {
            let output = output.await.unwrap();
            assert!(!output.status.success());
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            stderr
        }
    };
    let config = |mandate: &str, tool: &str, extra: &str| {
        format!(
            "mandate_url = \"{mandate}\"\nlisten = \"127.0.0.1:0\"\nassertion_key_file = \"{}\"\n{extra}\n\
             [[route]]\npath = \"/mcp/x\"\ntool = \"{tool}\"\nupstream = \"http://127.0.0.1:9/mcp\"\n",
            key.display()
        )
    };
    let unknown_key = run(config(&app.base, "tracker", "colour = \"blue\"")).await;
    assert!(
        unknown_key.contains("unknown field `colour`"),
        "{unknown_key}"
    );
    let unreachable = run(config("http://127.0.0.1:9", "tracker", "")).await;
    assert!(
        unreachable.contains("cannot reach mandate at http://127.0.0.1:9"),
        "{unreachable}"
    );
    let unknown_tool = run(config(&app.base, "nope", "")).await;
    assert!(
        unknown_tool.contains("tool `nope` is not an active tool"),
        "{unknown_tool}"
    );
    assert!(
        !unknown_tool.contains(&credential),
        "the credential is never printed"
    );
}
