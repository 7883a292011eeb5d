//! The store conformance suite: the same assertions against Postgres and SQLite.

use chrono::Duration;
use mandate::server::store::{
    new_id, AuditOutcome, NewAuditEvent, NewRootKey, SharedStore, StoreError,
};

use crate::both_stores;
use crate::helpers::{test_epoch, Backend, TestDatabase};

/// A fresh database and its migrated store; keep the database alive as long as the store.
pub async fn migrated(backend: Backend) -> (TestDatabase, SharedStore) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    (db, store)
}

fn key(kid: u32, hex_digit: char) -> NewRootKey {
    NewRootKey {
        kid,
        public_key: format!("ed25519/{}", hex_digit.to_string().repeat(64)),
    }
}

fn event(action: &str, minutes: i64, outcome: AuditOutcome) -> NewAuditEvent {
    let at = test_epoch() + Duration::minutes(minutes);
    NewAuditEvent {
        id: new_id(at),
        occurred_at: at,
        actor: "admin:alice".to_owned(),
        action: action.to_owned(),
        target: (minutes % 2 == 0).then(|| format!("agent:bot-{minutes}")),
        outcome,
        details: serde_json::json!({"minutes": minutes, "note": "ünïcode ✓", "list": [1, 2]}),
    }
}

both_stores!(migrations_apply_once, |backend| async move {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    let first = store.migrate().await.unwrap();
    assert!(first.known >= 1);
    assert_eq!(first.applied, first.known);
    let second = store.migrate().await.unwrap();
    assert_eq!(second.applied, 0);
    assert_eq!(second.known, first.known);
    store.ping().await.unwrap();
});

both_stores!(
    a_root_key_keeps_the_time_it_was_first_registered,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let first = store
            .register_root_key(&key(1, 'a'), test_epoch())
            .await
            .unwrap();
        let again = store
            .register_root_key(&key(1, 'a'), test_epoch() + Duration::days(3))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.created_at, test_epoch());
        assert_eq!(first.algorithm, "ed25519");
        assert_eq!(store.root_keys().await.unwrap(), vec![first]);
        // Registered once, audited once.
        let events = store.audit_events(0, 100).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "root_key.registered");
        assert_eq!(events[0].actor, "system");
        assert_eq!(events[0].target.as_deref(), Some("root_key:1"));
        assert_eq!(events[0].details["kid"], 1);
    }
);

both_stores!(
    a_kid_is_never_rebound_to_another_public_key,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let original = store
            .register_root_key(&key(7, 'a'), test_epoch())
            .await
            .unwrap();
        let err = store
            .register_root_key(&key(7, 'b'), test_epoch())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("kid 7 is already bound")),
            "{err}"
        );
        assert_eq!(store.root_keys().await.unwrap(), vec![original]);
        assert_eq!(store.audit_events(0, 100).await.unwrap().len(), 1);
    }
);

both_stores!(
    a_public_key_cannot_take_a_second_kid,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        store
            .register_root_key(&key(1, 'c'), test_epoch())
            .await
            .unwrap();
        let err = store
            .register_root_key(&key(2, 'c'), test_epoch())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let kids: Vec<u32> = store
            .root_keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, vec![1]);
    }
);

both_stores!(root_keys_are_listed_by_kid, |backend| async move {
    let (_db, store) = migrated(backend).await;
    for (kid, digit) in [(9, 'd'), (2, 'e'), (u32::MAX, 'f')] {
        store
            .register_root_key(&key(kid, digit), test_epoch())
            .await
            .unwrap();
    }
    let kids: Vec<u32> = store
        .root_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec![2, 9, u32::MAX]);
});

both_stores!(
    audit_events_come_back_in_order_and_intact,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let written = [
            event("agent.created", 0, AuditOutcome::Success),
            event("mandate.denied", 1, AuditOutcome::Denied),
            event("mandate.issued", 2, AuditOutcome::Failure),
        ];
        let mut stored = Vec::new();
        for e in &written {
            stored.push(store.append_audit(e).await.unwrap());
        }
        assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq));
        for (w, s) in written.iter().zip(&stored) {
            assert_eq!(
                (
                    &s.id,
                    s.occurred_at,
                    &s.actor,
                    &s.action,
                    &s.target,
                    s.outcome,
                    &s.details
                ),
                (
                    &w.id,
                    w.occurred_at,
                    &w.actor,
                    &w.action,
                    &w.target,
                    w.outcome,
                    &w.details
                )
            );
        }
        assert_eq!(
            store.audit_events(0, 2).await.unwrap(),
            stored[..2].to_vec()
        );
        assert_eq!(
            store.audit_events(stored[1].seq, 10).await.unwrap(),
            stored[2..].to_vec()
        );
        assert!(store
            .audit_events(stored[2].seq, 10)
            .await
            .unwrap()
            .is_empty());
    }
);

both_stores!(
    a_duplicate_audit_event_id_is_refused,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let e = event("agent.created", 0, AuditOutcome::Success);
        store.append_audit(&e).await.unwrap();
        assert!(store.append_audit(&e).await.is_err());
        assert_eq!(store.audit_events(0, 10).await.unwrap().len(), 1);
    }
);

both_stores!(
    timestamps_keep_microseconds_on_both_stores,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let mut e = event("x", 0, AuditOutcome::Success);
        e.occurred_at = test_epoch() + Duration::nanoseconds(789);
        let stored = store.append_audit(&e).await.unwrap();
        assert_eq!(stored.occurred_at, test_epoch());
    }
);
