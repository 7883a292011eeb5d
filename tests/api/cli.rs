//! The `mandate` binary as an operator runs it: start, restart, migrate, bad configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use mandate::clock::Clock as _;
use mandate::server::store::CoreStore;
use mandate::server::store::SqliteStore;
use mandate::token::keys::{KeyStatus, KeysDocument};
use sqlx::Connection;

use crate::helpers::callers::MANDATES;
use crate::helpers::TestDb;

/// The binary with a clean environment: only PATH, plus what each test sets.
fn mandate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// The address in the "mandate is ready" line of a log, text or JSON.
fn listening_on(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("mandate is ready"))?;
    let (_, rest) = line
        .split_once("listen=")
        .or_else(|| line.split_once("\"listen\":\""))?;
    let end = rest.find(|c: char| c.is_whitespace() || c == '"')?;
    Some(rest[..end].to_owned())
}

/// A `mandate serve` process.
pub(crate) struct Running {
    child: Child,
    base: String,
    /// Where the process's stderr (its log) goes.
    pub(crate) stderr: PathBuf,
}

impl Running {
    /// Starts `serve` with `args` and `envs` on a port the kernel picks, and waits until it says
    /// where it listens and /healthz answers there. (A port found free beforehand could be taken
    /// by another test's connection before this process binds it.) The address comes from the
    /// info-level "mandate is ready" line: `MANDATE_LOG` must let it through.
    pub(crate) async fn start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Running {
        let stderr = tempfile::Builder::new()
            .prefix("stderr-")
            .suffix(".log")
            .tempfile_in(dir)
            .unwrap();
        let (file, stderr) = stderr.keep().unwrap();
        let child = mandate()
            .arg("serve")
            .args(args)
            .env("MANDATE_LISTEN", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut running = Running {
            child,
            base: String::new(),
            stderr,
        };
        let deadline = crate::helpers::real_now() + Duration::from_secs(30);
        loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("mandate exited with {status}: {}", running.log());
            }
            if let Some(listen) = listening_on(&running.log()) {
                running.base = format!("http://{listen}");
                if reqwest::get(running.url("/healthz")).await.is_ok() {
                    return running;
                }
            }
            assert!(
                crate::helpers::real_now() < deadline,
                "mandate did not start: {}",
                running.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let response = reqwest::get(self.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn keys(&self) -> KeysDocument {
        serde_json::from_value(self.json("/.well-known/mandate-keys").await).unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) async fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = crate::helpers::real_now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                crate::helpers::real_now() < deadline,
                "mandate ignored SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub(crate) fn generate_key(path: &Path) -> Output {
    mandate()
        .args(["keys", "generate", "--out"])
        .arg(path)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_embedded_default_keeps_its_key_and_data_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_str = data.to_str().unwrap();
    let env = [("MANDATE_DATA_DIR", data_str)];

    let first = Running::start(tmp.path(), &["--dev"], &env).await;
    assert_eq!(first.json("/healthz").await["status"], "ok");
    let ready = first.json("/readyz").await;
    assert_eq!(ready["store"], "sqlite");
    assert_eq!(ready["active_kid"], 1);
    let keys = first.keys().await;
    assert!(first.stop().await.success());
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].status, KeyStatus::Active);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("root-key-1.pem")), 0o600);

    // The embedded default needs no --dev to reuse what the first start created.
    let second = Running::start(tmp.path(), &[], &env).await;
    assert_eq!(second.keys().await, keys, "same key, same created_at");
    assert!(second.stop().await.success());

    let store = SqliteStore::open(&data.join("mandate.db"), 1)
        .await
        .unwrap();
    let events = store.audit_events(0, 100).await.unwrap();
    let registered: Vec<_> = events
        .iter()
        .filter(|e| e.action == "root_key.registered")
        .collect();
    assert_eq!(registered.len(), 1, "the key was recorded once: {events:?}");
    assert_eq!(store.migrate().await.unwrap().applied, 0);
}

#[tokio::test]
async fn the_same_binary_runs_on_postgres_and_migrates_once() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("MANDATE_DATABASE_URL", db.url.as_str()),
        ("MANDATE_DATA_DIR", data.to_str().unwrap()),
    ];
    let first = Running::start(tmp.path(), &["--dev"], &env).await;
    assert_eq!(first.json("/readyz").await["store"], "postgres");
    let keys = first.keys().await;
    assert!(first.stop().await.success());
    assert!(
        !data.join("mandate.db").exists(),
        "no SQLite file on Postgres"
    );

    let second = Running::start(tmp.path(), &["--dev"], &env).await;
    assert_eq!(second.keys().await, keys);
    assert!(second.stop().await.success());

    let out = mandate().arg("migrate").envs(env).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("migrations: 0 applied now, {known} known")
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(usize::try_from(rows).unwrap(), known);
    let keys_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM root_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys_rows, 1);
}

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let db = TestDb::create().await;
    let spawn = || {
        mandate()
            .arg("migrate")
            .env("MANDATE_DATABASE_URL", &db.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut applied = 0;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        applied += text
            .trim()
            .strip_prefix("migrations: ")
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("unexpected output {text}"));
    }
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        applied, known,
        "each of the {known} migrations applied once"
    );
}

#[tokio::test]
async fn configured_key_files_are_published_under_their_kids() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.pem"), tmp.path().join("new.pem"));
    assert!(generate_key(&old).status.success());
    assert!(generate_key(&new).status.success());
    let data = tmp.path().join("data");
    let keys = format!("5={},6={}", old.display(), new.display());
    let env = [
        ("MANDATE_DATA_DIR", data.to_str().unwrap()),
        ("MANDATE_ROOT_KEYS", keys.as_str()),
        ("MANDATE_ACTIVE_KID", "6"),
    ];
    let running = Running::start(tmp.path(), &[], &env).await;
    let doc = running.keys().await;
    assert!(running.stop().await.success());
    let published: Vec<_> = doc.keys.iter().map(|k| (k.kid, k.status)).collect();
    assert_eq!(
        published,
        vec![(5, KeyStatus::VerifyOnly), (6, KeyStatus::Active)]
    );
    let new_key = mandate::server::keys::load_key_file(&new).unwrap();
    assert_eq!(doc.key_set().unwrap()[&6], new_key.public());
    assert!(
        !data.join("root-key-1.pem").exists(),
        "no development key when keys are configured"
    );
}

#[test]
fn keys_generate_writes_an_owner_only_key_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("root.pem");
    let out = generate_key(&path);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("public key ed25519/"));
    assert_eq!(mode(&path), 0o600);
    let before = std::fs::read(&path).unwrap();
    let again = generate_key(&path);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot write key file"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the key is untouched"
    );
}

/// Runs `serve` expecting failure; returns its stderr.
fn failed_start(args: &[&str], envs: &[(&str, &str)]) -> String {
    // On port 0 unless a case names its own address: nothing assumes a fixed port is free.
    let out = mandate()
        .arg("serve")
        .args(args)
        .env("MANDATE_LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

/// Runs `serve` expecting it to refuse its configuration; returns its single stderr line.
fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let stderr = failed_start(args, envs);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("mandate: "), "{stderr}");
    stderr
}

/// One refused start-up: how it is started and what its error line must say.
struct Case<'a> {
    name: &'a str,
    args: Vec<&'a str>,
    envs: Vec<(&'a str, &'a str)>,
    expected: &'a str,
}

#[tokio::test]
async fn bad_configuration_stops_start_up_with_one_line_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_str = data.to_str().unwrap().to_owned();
    let open_key = tmp.path().join("open.pem");
    assert!(generate_key(&open_key).status.success());
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unknown_key_file = tmp.path().join("mandate.toml");
    std::fs::write(&unknown_key_file, "listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let db = TestDb::create().await;

    let missing = format!("1={}", tmp.path().join("missing.pem").display());
    let open = format!("1={}", open_key.display());
    let config = unknown_key_file.to_str().unwrap();
    let cases = [
        Case {
            name: "unreadable key file",
            args: vec![],
            envs: vec![("MANDATE_ROOT_KEYS", &missing)],
            expected: "cannot read key file",
        },
        Case {
            name: "key file readable by others",
            args: vec![],
            envs: vec![("MANDATE_ROOT_KEYS", &open)],
            expected: "is readable by group or others (mode 0644)",
        },
        Case {
            name: "malformed database URL",
            args: vec!["--dev"],
            envs: vec![("MANDATE_DATABASE_URL", "postgres//mandate:s3cret@db/m")],
            expected: "database_url: ",
        },
        Case {
            name: "unknown config key",
            args: vec!["--config", config],
            envs: vec![],
            expected: "line 2: unknown field `bogus`",
        },
        Case {
            name: "unknown environment variable",
            args: vec![],
            envs: vec![("MANDATE_LISTN", "127.0.0.1:1")],
            expected: "unknown environment variable MANDATE_LISTN",
        },
        Case {
            name: "port in use",
            args: vec!["--dev"],
            envs: vec![("MANDATE_LISTEN", &busy_addr)],
            expected: "cannot listen on",
        },
        Case {
            name: "postgres without keys or --dev",
            args: vec![],
            envs: vec![("MANDATE_DATABASE_URL", &db.url)],
            expected: "no root signing key configured",
        },
    ];
    for Case {
        name,
        args,
        mut envs,
        expected,
    } in cases
    {
        envs.push(("MANDATE_DATA_DIR", &data_str));
        let line = refused(&args, &envs);
        assert!(line.contains(expected), "{name}: {line}");
        assert!(!line.contains("s3cret"), "{name} leaks a secret: {line}");
        assert!(!data.exists(), "{name} created the data directory");
    }
    drop(busy);

    // No tables were created on Postgres either.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn a_dev_key_readable_by_others_stops_start_up_before_the_database_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let key = data.join("root-key-1.pem");
    assert!(generate_key(&key).status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let line = refused(&["--dev"], &[("MANDATE_DATA_DIR", data.to_str().unwrap())]);
    assert!(line.contains("readable by group or others"), "{line}");
    assert!(!data.join("mandate.db").exists());
}

#[tokio::test]
async fn a_kid_bound_to_another_key_stops_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.pem"), tmp.path().join("b.pem"));
    assert!(generate_key(&a).status.success());
    assert!(generate_key(&b).status.success());
    let data = tmp.path().join("data");
    let data_str = data.to_str().unwrap();
    let with_a = format!("1={}", a.display());
    let running = Running::start(
        tmp.path(),
        &[],
        &[
            ("MANDATE_DATA_DIR", data_str),
            ("MANDATE_ROOT_KEYS", &with_a),
        ],
    )
    .await;
    assert!(running.stop().await.success());
    let with_b = format!("1={}", b.display());
    let stderr = failed_start(
        &[],
        &[
            ("MANDATE_DATA_DIR", data_str),
            ("MANDATE_ROOT_KEYS", &with_b),
        ],
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("mandate: store: "), "{stderr}");
    assert!(
        last.contains("kid 1 is already bound to another public key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn admin_token_create_prints_a_working_token_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("MANDATE_DATA_DIR", data.to_str().unwrap())];
    let create = || {
        mandate()
            .args([
                "admin-token",
                "create",
                "--name",
                "reviewer",
                "--role",
                "auditor",
            ])
            .envs(env)
            .output()
            .unwrap()
    };
    let out = create();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("mnd_adm_"), "{token}");
    let again = create();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");

    let running = Running::start(tmp.path(), &[], &env).await;
    let client = reqwest::Client::new();
    let read = client
        .get(running.url("/v1/admin/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .post(running.url("/v1/admin/tools"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"id": "t", "display_name": "T", "kind": "api", "owner": "o",
                                  "operations": ["x"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
    assert!(running.stop().await.success());
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bootstrap = "mnd_adm_log-test-0123456789abcdefghijklmnopqrstuvwxyz";
    let env = [
        ("MANDATE_DATA_DIR", data.to_str().unwrap()),
        ("MANDATE_ADMIN_TOKEN", bootstrap),
        ("MANDATE_LOG", "trace"),
    ];
    let running = Running::start(tmp.path(), &[], &env).await;
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        client
            .post(running.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let created: serde_json::Value = post(
        "/v1/admin/tokens",
        bootstrap,
        serde_json::json!({"name": "ops", "role": "admin"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let agent = serde_json::json!({"id": "bot", "display_name": "Bot", "kind": "orchestrator",
                                   "owner": "alice@example.com"});
    assert_eq!(
        post("/v1/admin/agents", &token, agent)
            .await
            .unwrap()
            .status(),
        201
    );
    let issued: serde_json::Value =
        post("/v1/admin/agents/bot/secret", &token, serde_json::json!({}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let secret = issued["secret"].as_str().unwrap().to_owned();
    let log = running.log();
    assert!(running.stop().await.success());
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(
        log.contains("ops"),
        "requests are attributed to their token's name"
    );
    for value in [bootstrap, token.as_str(), secret.as_str()] {
        assert!(
            !log.contains(&value[8..]),
            "the log shows a secret: {value}"
        );
    }
}

/// The shell block after the README's `<!-- MARKER:` comment.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split_once(&format!("<!-- {marker}:"))
        .unwrap_or_else(|| panic!("the README has no `{marker}` block"))
        .1;
    let block = after.split_once("```sh\n").unwrap().1;
    block.split_once("```").unwrap().0.to_owned()
}

/// Runs a README block in `dir` as written: only the ports differ (a test cannot count on 8080
/// or 8090 being free), and `cargo run -q --release --` runs the binary under test (in a
/// subshell, such as a background job, by `exec`, as `cargo run` does: `$!` is the binary).
/// Nothing tells the block where the service listens.
async fn run_readme_block(marker: &str, dir: &Path, listen: &str) -> std::process::Output {
    // A gateway a block starts listens on a free port too.
    let gateway = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let script = format!(
        "set -euo pipefail\ncargo() {{ while [ \"$1\" != \"--\" ]; do shift; done; shift; \
         if [ \"$BASH_SUBSHELL\" -gt 0 ]; then exec \"$README_BIN\" \"$@\"; fi; \"$README_BIN\" \"$@\"; }}\n{}",
        readme_block(marker)
            .replace("127.0.0.1:8080", listen)
            .replace("127.0.0.1:8090", &gateway.to_string())
    );
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("README_BIN", env!("CARGO_BIN_EXE_mandate"))
            .env_remove("MANDATE_LISTEN")
            .env_remove("MANDATE_ADMIN_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_readme_walkthrough_mints_a_mandate_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout = tmp.path().join("stdout.log");
    let mut server = mandate()
        .args(["serve", "--dev"])
        .current_dir(tmp.path())
        .env("MANDATE_LISTEN", "127.0.0.1:0")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The walkthrough names the port the kernel picked.
    let deadline = crate::helpers::real_now() + Duration::from_secs(30);
    let (printed, listen) = loop {
        let printed = std::fs::read_to_string(&stdout).unwrap();
        let listen = printed
            .split_once("development mode on http://")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_owned);
        if let Some(listen) = listen {
            if reqwest::get(format!("http://{listen}/readyz"))
                .await
                .is_ok()
            {
                break (printed, listen);
            }
        }
        assert!(
            crate::helpers::real_now() < deadline,
            "mandate did not start: {printed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(printed.contains("Mint a mandate"), "{printed}");
    assert!(
        printed.contains(&format!("-X POST http://{listen}/v1/mandates")),
        "{printed}"
    );
    let out = run_readme_block("walkthrough", tmp.path(), &listen).await;
    // The first admin session runs against the same service, still running.
    let admin = run_readme_block("first admin session", tmp.path(), &listen).await;
    let approval = run_readme_block("approval walkthrough", tmp.path(), &listen).await;
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    assert!(out.status.success(), "{out:?}");
    assert!(admin.status.success(), "{admin:?}");
    // bob reads what he approves; the mandate goes through the gateway once.
    let said = String::from_utf8_lossy(&approval.stdout).into_owned();
    assert!(approval.status.success(), "{approval:?}");
    let lines: Vec<&str> = said.lines().collect();
    let gateway = lines
        .get(2)
        .and_then(|l| l.strip_prefix("mandate gateway listening on http://"))
        .unwrap_or_else(|| panic!("the gateway did not say where it listens: {said}"));
    assert_eq!(
        lines,
        [
            "dev-orchestrator asks to crm delete {\"id\":\"cust-42\"} for alice, for the task \
             \"Remove the duplicate record cust-42\"",
            "approved",
            format!("mandate gateway listening on http://{gateway}").as_str(),
            "first call: 200",
            "second call: 403",
        ],
        "{approval:?}"
    );
    // Two JSON documents: the tool as created, then every tool, the new one with its owner.
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&admin.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&admin.stdout)));
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["id"], "wiki", "{:?}", answers[0]);
    assert_eq!(answers[0]["owner"], "bob@example.com");
    let listed = answers[1]["items"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == "wiki" && t["owner"] == "bob@example.com"),
        "{listed:?}"
    );
    let minted: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        minted["scope"],
        serde_json::json!([{"tool": "crm", "operation": "read"}])
    );
    assert!(minted["token"].as_str().unwrap().len() > 100);
    assert!(minted["mandate_id"].is_string());
    // What the README says the seeded policy delegates is what it delegates.
    assert!(
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .unwrap()
            .contains("delegate CRM reads and writes, and calendar\nreads")
    );
    use sqlx::Connection as _;
    let db = tmp.path().join("mandate-data").join("mandate.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let grants: String = sqlx::query_scalar("SELECT grants FROM policies WHERE id = 'dev-staff'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&grants).unwrap(),
        serde_json::json!([{"tool": "crm", "operations": ["read", "write"]},
                           {"tool": "calendar", "operations": ["read"]},
                           {"tool": "crm", "operations": ["delete"],
                            "approval": {"approvers": {"subjects": ["bob"]}, "required": 1,
                                         "valid_seconds": 900, "bind_arguments": true}}])
    );
}

/// Runs `mandate ARGS` with `stdin` piped in; returns (success, stdout, stderr).
pub(crate) async fn mandate_with_stdin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = mandate()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn token_commands_attenuate_attest_inspect_and_verify_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = "mnd_adm_cli-token-test-0123456789abcdefghijklmnopqrstuvwxyz";
    let env = [
        ("MANDATE_DATA_DIR", data.to_str().unwrap()),
        ("MANDATE_ADMIN_TOKEN", admin),
    ];
    let running = Running::start(tmp.path(), &["--dev"], &env).await;
    let client = reqwest::Client::new();
    // A sub-agent with a key, registered over the admin API.
    let key_file = tmp.path().join("research.pem");
    assert!(generate_key(&key_file).status.success());
    let public = mandate::token::keys::format_public_key(
        &mandate::server::keys::load_key_file(&key_file)
            .unwrap()
            .public(),
    );
    for (path, body) in [
        (
            "/v1/admin/agents",
            serde_json::json!({"id": "research", "display_name": "R", "kind": "sub_agent", "owner": "o"}),
        ),
        (
            "/v1/admin/agents/research/keys",
            serde_json::json!({"public_key": public}),
        ),
    ] {
        let response = client
            .post(running.url(path))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    // Mint as the seeded orchestrator for a dev-idp principal.
    let secret = std::fs::read_to_string(data.join("dev-orchestrator.secret")).unwrap();
    let port = running.base.rsplit(':').next().unwrap().to_owned();
    let listen = format!("127.0.0.1:{port}");
    let login = mandate()
        .args(["dev", "login", "alice", "--group", "staff"])
        .env("MANDATE_DATA_DIR", &data)
        .env("MANDATE_LISTEN", &listen)
        .output()
        .unwrap();
    let jwt = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    let minted: serde_json::Value = client
        .post(running.url(MANDATES))
        .bearer_auth(secret.trim())
        .json(
            &serde_json::json!({"subject_token": jwt, "task": {"description": "t"},
                                  "scope": [{"tool": "crm", "operations": ["read", "write"]}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();

    let (ok, narrowed, err) = mandate_with_stdin(
        &[
            "token",
            "attenuate",
            "--right",
            "crm:read",
            "--delegate",
            "research",
            "--expires-in",
            "300",
        ],
        &token,
    )
    .await;
    assert!(ok, "{err}");
    let key = key_file.to_str().unwrap();
    let (ok, attested, err) = mandate_with_stdin(
        &["token", "attest", "--agent", "research", "--key", key],
        &narrowed,
    )
    .await;
    assert!(ok, "{err}");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &attested).unwrap();
    let file = token_file.to_str().unwrap();
    let (ok, chain, err) = mandate_with_stdin(&["token", "inspect", "--in", file], "").await;
    assert!(ok, "{err}");
    let chain: serde_json::Value = serde_json::from_str(&chain).unwrap();
    assert_eq!(chain["blocks"].as_array().unwrap().len(), 3);
    assert_eq!(chain["blocks"][2]["kind"], "attestation");

    // Argument constraints are added offline too, and read back; a malformed one is named.
    let (ok, constrained, err) = mandate_with_stdin(
        &[
            "token",
            "attenuate",
            "--constrain",
            r#"crm:write:ticket={"prefix":"T-"}"#,
            "--constrain",
            r#"crm:write:count={"range":{"min":1,"max":5}}"#,
        ],
        &token,
    )
    .await;
    assert!(ok, "{err}");
    let (ok, chain, err) = mandate_with_stdin(&["token", "inspect"], &constrained).await;
    assert!(ok, "{err}");
    let chain: serde_json::Value = serde_json::from_str(&chain).unwrap();
    assert_eq!(
        chain["blocks"][1]["constraints"][0],
        serde_json::json!({"tool": "crm", "operation": "write", "argument": "ticket",
                           "constraint": {"prefix": "T-"}})
    );
    assert_eq!(
        chain["blocks"][1]["constraints"].as_array().unwrap().len(),
        3
    );
    for (bad, named) in [
        (r#"crm:write:ticket={"regex":"x"}"#, "is not a constraint"),
        (
            r#"crm:write={"prefix":"T-"}"#,
            "is not `tool:operation:argument=CONSTRAINT`",
        ),
        (
            r#"crm:write:a b={"prefix":"T-"}"#,
            "is not an argument path",
        ),
        (r#"crm:write:n={"range":{}}"#, "a range needs"),
    ] {
        let (ok, _, err) =
            mandate_with_stdin(&["token", "attenuate", "--constrain", bad], &token).await;
        assert!(!ok);
        assert!(err.contains(named), "{bad}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let base = running.base.clone();
    let (ok, verified, err) = mandate_with_stdin(
        &[
            "token",
            "verify",
            "--in",
            file,
            "--mandate",
            &base,
            "--tool",
            "crm",
            "--operation",
            "read",
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["principal_subject"], "alice");
    assert_eq!(
        verified["hops"],
        serde_json::json!([{"agent": "research", "attested": true}])
    );
    let (ok, _, err) = mandate_with_stdin(
        &[
            "token",
            "verify",
            "--in",
            file,
            "--mandate",
            &base,
            "--tool",
            "crm",
            "--operation",
            "write",
        ],
        "",
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not authorized"), "{err}");
    // It prints when the token stops working: the narrower expiry its block states.
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(verified["expires_at"].clone()).unwrap();
    let left = expires - mandate::clock::Clock::now(&mandate::clock::SystemClock);
    assert!(left <= chrono::Duration::seconds(301), "{verified}");

    // The feed is read by default: a revoked branch is refused, unless asked not to read it.
    let response = client
        .post(running.url("/v1/revocations"))
        .json(&serde_json::json!({"token": attested, "reason": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let verify_read = |extra: &'static [&'static str]| {
        let base = base.clone();
        async move {
            let mut args = vec![
                "token",
                "verify",
                "--in",
                file,
                "--mandate",
                &base,
                "--tool",
                "crm",
                "--operation",
                "read",
            ];
            args.extend_from_slice(extra);
            mandate_with_stdin(&args, "").await
        }
    };
    let (ok, _, err) = verify_read(&[]).await;
    assert!(!ok);
    assert!(err.contains("revoked"), "{err}");
    let (ok, _, err) = verify_read(&["--no-revocations"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("not reading the revocation feed"), "{err}");

    // Offline: saved key documents, mandate stopped.
    let keys: String = reqwest::get(running.url("/.well-known/mandate-keys"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent_keys: String = reqwest::get(running.url("/.well-known/mandate-agent-keys"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(running.stop().await.success());
    std::fs::write(tmp.path().join("keys.json"), keys).unwrap();
    std::fs::write(tmp.path().join("agents.json"), agent_keys).unwrap();
    let keys_path = tmp.path().join("keys.json");
    let agents_path = tmp.path().join("agents.json");
    let (ok, verified, err) = mandate_with_stdin(
        &[
            "token",
            "verify",
            "--keys",
            keys_path.to_str().unwrap(),
            "--agent-keys",
            agents_path.to_str().unwrap(),
            "--tool",
            "crm",
            "--operation",
            "read",
        ],
        &attested,
    )
    .await;
    assert!(ok, "{err}");
    assert!(verified.contains("\"attested\": true"), "{verified}");
    let (ok, _, err) = mandate_with_stdin(&["token", "inspect"], "").await;
    assert!(!ok);
    assert!(err.contains("no token given"), "{err}");
}

/// Through `running`'s admin API: tool `crm` (read), orchestrator `bot`, issuer `idp` (the test
/// identity provider) and policy `p` (group `support` may delegate crm read to bot). Returns
/// bot's secret.
pub(crate) async fn seed_inventory(
    running: &Running,
    admin: &str,
    idp: &crate::helpers::idp::TestIdp,
) -> String {
    let client = reqwest::Client::new();
    for (path, body) in [
        (
            "/v1/admin/tools",
            serde_json::json!({"id": "crm", "display_name": "CRM", "kind": "api", "owner": "o", "operations": ["read"]}),
        ),
        (
            "/v1/admin/agents",
            serde_json::json!({"id": "bot", "display_name": "Bot", "kind": "orchestrator", "owner": "o", "ceiling": [{"tool": "crm", "operations": ["read"]}]}),
        ),
        (
            "/v1/admin/issuers",
            serde_json::json!({"id": "idp", "issuer_url": idp.issuer, "audiences": ["mandate"], "jwks_uri": idp.jwks_uri(), "allowed_algorithms": ["RS256"], "groups_claim": "groups"}),
        ),
        (
            "/v1/admin/policies",
            serde_json::json!({"id": "p", "issuer": "idp", "groups": ["support"], "agents": ["bot"], "grants": [{"tool": "crm", "operations": ["read"]}], "max_ttl_seconds": 300}),
        ),
    ] {
        let response = client
            .post(running.url(path))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{path}");
    }
    let issued: serde_json::Value = client
        .post(running.url("/v1/admin/agents/bot/secret"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    issued["secret"].as_str().unwrap().to_owned()
}

pub(crate) fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn two_processes_on_one_postgres_share_mandates_and_revocations() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("root-1.pem");
    assert!(generate_key(&key).status.success());
    let keys = format!("1={}", key.display());
    let admin = "mnd_adm_two-processes-0123456789abcdefghijklmnopqrstuvwxyz";
    let env = |dir: &str| {
        vec![
            ("MANDATE_DATABASE_URL".to_owned(), db.url.clone()),
            ("MANDATE_ROOT_KEYS".to_owned(), keys.clone()),
            ("MANDATE_ADMIN_TOKEN".to_owned(), admin.to_owned()),
            (
                "MANDATE_DATA_DIR".to_owned(),
                tmp.path().join(dir).display().to_string(),
            ),
        ]
    };
    let (env_a, env_b) = (env("a"), env("b"));
    let a = Running::start(tmp.path(), &[], &pairs(&env_a)).await;
    let b = Running::start(tmp.path(), &[], &pairs(&env_b)).await;
    let client = reqwest::Client::new();
    let idp = crate::helpers::idp::TestIdp::start().await;
    // The inventory goes in through A.
    let secret = &seed_inventory(&a, admin, &idp).await;
    // Real time: these processes run on the system clock.
    let jwt = idp.sign(
        "rsa-1",
        &idp.claims("alice", &["support"], mandate::clock::SystemClock.now()),
    );
    let minted: serde_json::Value = client
        .post(a.url(MANDATES))
        .bearer_auth(secret)
        .json(
            &serde_json::json!({"subject_token": jwt, "task": {"description": "t"},
                                  "scope": [{"tool": "crm", "operations": ["read"]}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{minted}"));
    let introspect = |base: &Running| {
        client
            .post(base.url("/v1/introspect"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"token": token}))
            .send()
    };
    let seen: serde_json::Value = introspect(&b).await.unwrap().json().await.unwrap();
    assert_eq!(seen["active"], true, "B knows A's mandate: {seen}");
    assert_eq!(seen["sub"], "alice");
    let id = minted["mandate_id"].as_str().unwrap();
    let revoked = client
        .post(b.url(&format!("/v1/mandates/{id}/revoke")))
        .bearer_auth(admin)
        .json(&serde_json::json!({"reason": "revoked through the other process"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let seen: serde_json::Value = introspect(&a).await.unwrap().json().await.unwrap();
    assert_eq!(seen["active"], false, "A sees B's revocation");
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());
}

#[tokio::test]
async fn a_sigterm_as_soon_as_the_service_answers_stops_it_cleanly() {
    // An orchestrator (Kubernetes, systemd) may stop a service the moment it first answers. The
    // signal must find its handler installed, or the process dies mid-request with status 143.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("MANDATE_DATA_DIR", data.to_str().unwrap())];
    for round in 0..20 {
        let running = Running::start(tmp.path(), &[], &env).await;
        let stderr = running.stderr.clone();
        let status = running.stop().await;
        let log = std::fs::read_to_string(&stderr).unwrap();
        assert!(status.success(), "round {round}: {status}: {log}");
        assert!(log.contains("stopped"), "round {round}: {log}");
        // A log written to a file carries no terminal colour codes.
        assert!(!log.contains('\x1b'), "round {round}: {log}");
    }
}

#[tokio::test]
async fn a_sigterm_during_start_up_stops_it_cleanly() {
    // Start-up waits for another replica's migrations: their lock is held here.
    let db = TestDb::create().await;
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(0x006d_616e_6461_7465_i64)
        .execute(&mut holder)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr.log");
    let mut child = mandate()
        .args(["serve", "--dev"])
        .env("MANDATE_DATABASE_URL", &db.url)
        .env("MANDATE_LISTEN", "127.0.0.1:0")
        .env("MANDATE_DATA_DIR", tmp.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = crate::helpers::real_now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "mandate exited: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        assert!(
            crate::helpers::real_now() < deadline,
            "mandate never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It stops while the lock is still held, cleanly and without serving.
    let starting = Running {
        child,
        base: String::new(),
        stderr: stderr.clone(),
    };
    let status = starting.stop().await;
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("stopped during start-up"), "{log}");
    assert!(!log.contains("mandate is ready"), "{log}");
}

#[tokio::test]
async fn the_development_issuer_is_trusted_only_while_dev_mode_runs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("MANDATE_DATA_DIR", data.to_str().unwrap())];
    let dev = Running::start(tmp.path(), &["--dev"], &env).await;
    assert!(dev.stop().await.success());
    // The same store, without --dev: the seeded issuer, policy and orchestrator remain.
    let plain = Running::start(tmp.path(), &[], &env).await;
    let port = plain.base.rsplit(':').next().unwrap().to_owned();
    let login = mandate()
        .args(["dev", "login", "alice", "--group", "staff"])
        .env("MANDATE_DATA_DIR", &data)
        .env("MANDATE_LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let jwt = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    let secret = std::fs::read_to_string(data.join("dev-orchestrator.secret")).unwrap();
    let response = reqwest::Client::new()
        .post(plain.url(MANDATES))
        .bearer_auth(secret.trim())
        .json(
            &serde_json::json!({"subject_token": jwt, "task": {"description": "t"},
                                  "scope": [{"tool": "crm", "operations": ["read"]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["reason"], "untrusted_issuer", "{problem}");
    assert!(plain.stop().await.success());
}
