//! No token leaves unless its issuance row and audit event are committed: with Postgres down
//! the mint answers 503, and when the record cannot be written nothing is issued at all.

use mandate::clock::Clock;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::postgres::Cluster;
use crate::helpers::{assert_problem, Backend, TestApp, TestDatabase};

#[tokio::test]
async fn mint_answers_503_without_a_token_while_postgres_is_down_and_recovers() {
    let cluster = tokio::task::spawn_blocking(Cluster::create)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_on(TestDatabase::at(&cluster.url())).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
    let (status, _) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 201);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        cluster
    })
    .await
    .unwrap();
    // Each answer waits out the pool's acquire timeout (5 s); one is enough to show it.
    for _ in 0..1 {
        let response = app.agent(&secret).mint_response(&body).await;
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("\"token\""),
            "a token left without its record: {text}"
        );
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], 503, "{problem}");
    }
    assert_eq!(app.get("/readyz").await.status(), 503);

    tokio::task::spawn_blocking(move || cluster.start().unwrap())
        .await
        .unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        let (status, _) = app.agent(&secret).mint_body(body.clone()).await;
        if status == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "minting works again once Postgres is back");
    assert_eq!(app.count("SELECT count(*) FROM mandates").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'mandate.issued'")
            .await,
        2
    );
}

both_stores!(
    a_mandate_whose_audit_event_cannot_be_written_is_not_issued,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        // The audit insert of an issuance fails after the issuance row was written.
        let refuse = match backend {
            Backend::Postgres => vec![
                "CREATE FUNCTION refuse_issued() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.action = 'mandate.issued' THEN RAISE EXCEPTION 'disk full'; END IF; \
             RETURN NEW; END $$",
                "CREATE TRIGGER refuse_issued BEFORE INSERT ON audit_events FOR EACH ROW \
             EXECUTE FUNCTION refuse_issued()",
            ],
            Backend::Sqlite => vec![
                "CREATE TRIGGER refuse_issued BEFORE INSERT ON audit_events \
             WHEN NEW.action = 'mandate.issued' BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            ],
        };
        for statement in refuse {
            app.execute(statement).await;
        }
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
        let response = app.agent(&secret).mint_response(&body).await;
        let problem = assert_problem(response, 500).await;
        assert!(problem.get("token").is_none());
        assert!(
            !problem.to_string().contains("disk full"),
            "internal causes stay internal"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM mandates").await,
            0,
            "rolled back whole"
        );
    }
);
