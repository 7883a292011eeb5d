//! The documented Postgres roles (deploy/postgres/roles.sql and grants.sql): an owner applies
//! the migrations, and the service runs as an application role that may append to and read
//! the audit trail, never change or delete it, even with the triggers out of the way.

use std::process::Command;

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::json;

use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::postgres::Cluster;
use crate::helpers::{TestApp, TestDatabase};

/// Runs a file of deploy/postgres/ with psql as `user`, with `vars` set.
fn psql(url: &str, file: &str, vars: &[&str]) {
    let path = format!("{}/deploy/postgres/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("psql");
    command.args([url, "-v", "ON_ERROR_STOP=1", "-q", "-f", &path]);
    for var in vars {
        command.args(["-v", var]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_application_role_appends_to_the_audit_trail_and_cannot_change_it() {
    let cluster = tokio::task::spawn_blocking(Cluster::create)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let superuser = cluster.url();
    let as_role = |role: &str| superuser.replacen("postgres@", &format!("{role}@"), 1);
    psql(
        &superuser,
        "roles.sql",
        &["owner=mandate_owner", "app=mandate_app"],
    );
    let migrate = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MANDATE_DATABASE_URL", as_role("mandate_owner"))
        .env("MANDATE_LOG", "error")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    psql(
        &as_role("mandate_owner"),
        "grants.sql",
        &["app=mandate_app"],
    );

    // The service starts as the application role (nothing left to migrate) and works.
    let app = TestApp::spawn_on(TestDatabase::at(&as_role("mandate_app"))).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let (status, minted) = app
        .agent(&secret)
        .mint_body(mint_body(
            &jwt,
            json!([{"tool": "crm", "operations": ["read"]}]),
        ))
        .await;
    assert_eq!(status, 201, "{minted}");

    // As that role, with everything it can do to get the triggers out of the way.
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&as_role("mandate_app"))
        .await
        .unwrap();
    for statement in [
        "SET session_replication_role = replica",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_mac_start SET seq = 1000000",
        "DELETE FROM _sqlx_migrations",
    ] {
        let refused = sqlx::query(statement).execute(&mut conn).await.unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{statement}: {message}"
        );
    }
    let report = app
        .admin_ok(Method::GET, "/v1/admin/audit/verify", None, 200)
        .await;
    assert_eq!(report["intact"], true, "{report}");
}
