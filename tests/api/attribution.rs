//! Every action traces back to a human: alice → bot → research (attested) → summariser
//! (claimed) → three calls to the example service, reported by its layer; one query by
//! principal returns the three actions with their whole chains, and the NDJSON export too.

use std::sync::Arc;
use std::time::Duration;

use mandate::clock::Clock;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
use mandate::verifier::receipts::ReceiptSender;
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::downstream::start_downstream;
use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::TestApp;

both_stores!(
    one_query_by_principal_returns_every_action_with_its_whole_chain,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let research_key = crate::helpers::fixtures::register_sub_agent(&app, "research").await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let (_, minted) = app
            .agent(&secret)
            .mint_body(mint_body(
                &jwt,
                json!([{"tool": "crm", "operations": ["read", "write"]}]),
            ))
            .await;
        let token = minted["token"].as_str().unwrap();
        let to_research = attenuate(
            token,
            &Attenuation {
                delegate: Some("research".into()),
                ..Attenuation::default()
            },
        )
        .unwrap();
        let attested = attest(&to_research, "research", &research_key).unwrap();
        let to_summariser = attenuate(
            &attested,
            &Attenuation {
                delegate: Some("summariser".into()),
                ..Attenuation::default()
            },
        )
        .unwrap();

        let verifier = Arc::new(app.verifier());
        let reporter = crate::helpers::fixtures::reporter(&app, "crm-api").await;
        let receipts = ReceiptSender::spawn(
            app.base.clone(),
            reporter.clone(),
            Duration::from_millis(50),
        );
        let downstream = start_downstream(verifier, Some(receipts)).await;
        let client = reqwest::Client::new();
        for (method, path) in [
            (Method::GET, "/tickets"),
            (Method::GET, "/tickets/acct-1"),
            (Method::POST, "/tickets/acct-2"),
        ] {
            let response = client
                .request(method, format!("{downstream}{path}"))
                .bearer_auth(&to_summariser)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }

        let deadline = crate::helpers::real_now() + Duration::from_secs(5);
        let actions = loop {
            let actions = app
                .admin_ok(
                    Method::GET,
                    "/v1/admin/attribution?principal=alice",
                    None,
                    200,
                )
                .await;
            if actions.as_array().unwrap().len() == 3 {
                break actions;
            }
            assert!(
                crate::helpers::real_now() < deadline,
                "receipts never arrived: {actions}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let operations: Vec<(&str, Option<&str>)> = actions
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["operation"].as_str().unwrap(), a["resource"].as_str()))
            .collect();
        let mut sorted = operations.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("read", None),
                ("read", Some("acct-1")),
                ("write", Some("acct-2"))
            ]
        );
        for action in actions.as_array().unwrap() {
            assert_eq!(
                action["principal"],
                json!({"subject": "alice", "issuer": idp.issuer})
            );
            assert_eq!(action["orchestrator"], "bot");
            assert_eq!(
                action["hops"],
                json!([{"agent": "research", "attested": true}, {"agent": "summariser", "attested": false}])
            );
            assert_eq!(action["tool"], "crm");
            assert_eq!(action["outcome"], "success");
            assert_eq!(action["mandate_id"], minted["mandate_id"]);
            assert_eq!(action["reporter"], "crm-api", "who reported it");
        }

        let response = app
            .call(
                Method::GET,
                "/v1/admin/attribution?principal=alice&format=ndjson",
                Some(crate::helpers::ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        let text = response.text().await.unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["principal"]["subject"], "alice");

        for (query, expected) in [
            ("agent=bot", 3),
            ("agent=other", 0),
            ("tool=crm", 3),
            ("principal=bob", 0),
            ("from=2030-01-01T00:00:00Z", 0),
        ] {
            let found = app
                .admin_ok(
                    Method::GET,
                    &format!("/v1/admin/attribution?{query}"),
                    None,
                    200,
                )
                .await;
            assert_eq!(found.as_array().unwrap().len(), expected, "{query}");
        }
        // A receipt must carry a mandate: nothing of a bad batch is recorded.
        let before = app.audit_len().await;
        let bad = json!({"receipts": [
            {"token": to_summariser, "tool": "crm", "operation": "read", "outcome": "success", "occurred_at": "2026-03-01T09:00:00Z"},
            {"token": "forged", "tool": "crm", "operation": "read", "outcome": "success", "occurred_at": "2026-03-01T09:00:00Z"},
        ]});
        let response = app
            .call(Method::POST, "/v1/receipts", Some(&reporter), Some(&bad))
            .await;
        let problem = crate::helpers::assert_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], "receipts[1].token");
        // Nor may it report what its mandate never allowed.
        let delete = json!({"receipts": [{"token": to_summariser, "tool": "crm", "operation": "delete",
                                      "outcome": "success", "occurred_at": "2026-03-01T09:00:00Z"}]});
        let response = app
            .call(Method::POST, "/v1/receipts", Some(&reporter), Some(&delete))
            .await;
        let problem = crate::helpers::assert_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], "receipts[0].operation");
        // Only a registered reporter, by its credential, reports at all.
        let read = json!({"receipts": [{"token": to_summariser, "tool": "crm", "operation": "read",
                                      "outcome": "success", "occurred_at": "2026-03-01T09:00:00Z"}]});
        for credential in [
            None,
            Some("mnd_rep_not-a-real-credential"),
            Some(secret.as_str()),
        ] {
            let response = app
                .call(Method::POST, "/v1/receipts", credential, Some(&read))
                .await;
            crate::helpers::assert_problem(response, 401).await;
        }
        assert_eq!(app.audit_len().await, before);
        // A disabled reporter's credential is refused.
        app.admin_ok(
            Method::POST,
            "/v1/admin/reporters/crm-api/disable",
            None,
            200,
        )
        .await;
        let response = app
            .call(Method::POST, "/v1/receipts", Some(&reporter), Some(&read))
            .await;
        crate::helpers::assert_problem(response, 401).await;
        let all = app
            .admin_ok(Method::GET, "/v1/admin/attribution", None, 200)
            .await;
        assert_eq!(all.as_array().unwrap().len(), 3);
        assert_eq!(
            app.admin_ok(Method::GET, "/v1/admin/audit/verify", None, 200)
                .await["intact"],
            true
        );
    }
);
