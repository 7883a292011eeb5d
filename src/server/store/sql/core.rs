// Health, migrations, root keys and the audit trail, in SQL that Postgres and SQLite both accept
// (`$N` parameters, `RETURNING`, `ON CONFLICT`). Included by postgres.rs and sqlite.rs, each of
// which defines `Db` (the sqlx database), `ThisStore` and `BACKEND`.

type DbRow = <Db as sqlx::Database>::Row;
type DbConnection = <Db as sqlx::Database>::Connection;

fn root_key_from_row(row: &DbRow) -> Result<RootKeyRecord, StoreError> {
    use sqlx::Row as _;
    Ok(RootKeyRecord {
        kid: kid_from_db(row.try_get("kid")?)?,
        algorithm: row.try_get("algorithm")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn audit_from_row(row: &DbRow) -> Result<AuditEvent, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(details) = row.try_get("details")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        occurred_at: row.try_get("occurred_at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: AuditOutcome::parse(row.try_get("outcome")?)?,
        details,
        prev_hash: hex::encode(row.try_get::<Vec<u8>, _>("prev_hash")?),
        hash: hex::encode(row.try_get::<Vec<u8>, _>("hash")?),
        mac: match (
            row.try_get::<Option<Vec<u8>>, _>("mac")?,
            row.try_get::<Option<i64>, _>("mac_kid")?,
        ) {
            (Some(tag), Some(kid)) => Some(crate::server::audit_seal::Mac {
                kid: kid_from_db(kid)?,
                tag: hex::encode(tag),
            }),
            _ => None,
        },
    })
}

/// The key a store seals with now, if it has one.
fn sealer(seal: &Seal) -> Option<std::sync::Arc<crate::server::audit_seal::AuditSeal>> {
    seal.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn checkpoint_from_row(row: &DbRow) -> Result<Checkpoint, StoreError> {
    use sqlx::Row as _;
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        kid: kid_from_db(row.try_get("kid")?)?,
        signature: row.try_get("signature")?,
        signed_at: row.try_get("signed_at")?,
    })
}

async fn insert_audit(
    conn: &mut DbConnection,
    seal: Option<&crate::server::audit_seal::AuditSeal>,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StoreError> {
    // Appends are serialised (see serialize_audit): the head read here stays the head.
    serialize_audit(conn).await?;
    let head: Option<(i64, Vec<u8>)> = sqlx::query_as(CHAIN_HEAD).fetch_optional(&mut *conn).await?;
    let Some(Chained {
        seq,
        stored,
        prev_hash: prev,
        hash,
        mac,
    }) = chain(head, &[event], seal).pop()
    else {
        return Err(StoreError::Corrupt(
            "an audit event was chained to nothing".to_owned(),
        ));
    };
    let row = sqlx::query(
        "INSERT INTO audit_events \
         (seq, id, occurred_at, actor, action, target, outcome, details, prev_hash, hash, \
         mac, mac_kid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *",
    )
    .bind(seq)
    .bind(stored.id)
    .bind(stored.occurred_at)
    .bind(&stored.actor)
    .bind(&stored.action)
    .bind(&stored.target)
    .bind(stored.outcome.as_str())
    .bind(sqlx::types::Json(&stored.details))
    .bind(&prev)
    .bind(&hash)
    .bind(mac.as_ref().and_then(|m| hex::decode(&m.tag).ok()))
    .bind(mac.as_ref().map(|m| i64::from(m.kid)))
    .fetch_one(conn)
    .await?;
    audit_from_row(&row)
}

/// The audit chain's last event (seq and hash), if any; read under the chain's lock.
const CHAIN_HEAD: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";

/// An audit event ready to append: its seq, the event as stored, the hashes linking it, and
/// its MAC.
struct Chained {
    seq: i64,
    stored: NewAuditEvent,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    mac: Option<crate::server::audit_seal::Mac>,
}

/// `events` linked in order after `head` (the chain's last seq and hash, `None` if empty),
/// each sealed with `seal`.
fn chain(
    head: Option<(i64, Vec<u8>)>,
    events: &[&NewAuditEvent],
    seal: Option<&crate::server::audit_seal::AuditSeal>,
) -> Vec<Chained> {
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_vec()));
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let stored = NewAuditEvent {
            occurred_at: db_time(event.occurred_at),
            ..(*event).clone()
        };
        let hash = chain_hash(&prev, seq, &stored);
        let mac = seal.and_then(|seal| seal.seal(seq, &hash));
        let prev_hash = std::mem::replace(&mut prev, hash.clone());
        rows.push(Chained {
            seq,
            stored,
            prev_hash,
            hash,
            mac,
        });
    }
    rows
}

/// Mandates issued per agent, by the minute they expire in (see `agent_issuance_counts`).
type IssuanceCounts<'a> = std::collections::BTreeMap<(&'a str, i64), i64>;

/// Appends `events` to the chain in order (the head is read once).
async fn append_audit_events(
    conn: &mut DbConnection,
    seal: Option<&crate::server::audit_seal::AuditSeal>,
    events: &[&NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // Appends are serialised (see serialize_audit): the head read here stays the head.
    serialize_audit(conn).await?;
    let head: Option<(i64, Vec<u8>)> = sqlx::query_as(CHAIN_HEAD).fetch_optional(&mut *conn).await?;
    insert_chained(conn, &chain(head, events, seal), &IssuanceCounts::new()).await
}

/// Advances the inventory generation if it is still `guard`; first write of a change's
/// transaction.
async fn advance_inventory(conn: &mut DbConnection, guard: InventoryGuard) -> Result<(), StoreError> {
    let advanced = sqlx::query(
        "UPDATE inventory_state SET generation = generation + 1 WHERE id = 1 AND generation = $1",
    )
    .bind(guard.0)
    .execute(conn)
    .await?
    .rows_affected();
    if advanced == 1 {
        Ok(())
    } else {
        Err(inventory_moved())
    }
}

#[async_trait::async_trait]
impl CoreStore for ThisStore {
    fn backend(&self) -> Backend {
        BACKEND
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    #[tracing::instrument(skip(self), err)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.run_migrations().await
    }

    #[tracing::instrument(skip(self, key, at), fields(kid = key.kid), err)]
    async fn register_root_key(
        &self,
        key: &NewRootKey,
        at: DateTime<Utc>,
    ) -> Result<RootKeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO root_keys (kid, algorithm, public_key, created_at) \
             VALUES ($1, 'ed25519', $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(i64::from(key.kid))
        .bind(&key.public_key)
        .bind(db_time(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            insert_audit(&mut tx, sealer(&self.seal).as_deref(), &root_key_registered(key, at)).await?;
        }
        let stored = sqlx::query("SELECT * FROM root_keys WHERE kid = $1")
            .bind(i64::from(key.kid))
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(root_key_from_row)
            .transpose()?;
        let record = check_root_key(key, stored)?;
        tx.commit().await?;
        Ok(record)
    }

    #[tracing::instrument(skip(self), err)]
    async fn root_keys(&self) -> Result<Vec<RootKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM root_keys ORDER BY kid")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(root_key_from_row)
            .collect()
    }

    fn seal_audit(&self, seal: std::sync::Arc<crate::server::audit_seal::AuditSeal>) {
        *self
            .seal
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seal);
    }

    #[tracing::instrument(skip(self), err)]
    async fn audit_mac_start(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT seq FROM audit_mac_start")
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0))
    }

    #[tracing::instrument(skip(self, event), fields(action = %event.action), err)]
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
        let mut tx = self.begin().await?;
        let stored = insert_audit(&mut tx, sealer(&self.seal).as_deref(), event).await?;
        tx.commit().await?;
        Ok(stored)
    }

    #[tracing::instrument(skip(self), err)]
    async fn audit_events(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    #[tracing::instrument(skip(self), err)]
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as(CHAIN_HEAD).fetch_optional(&self.pool).await?)
    }

    #[tracing::instrument(skip(self), err)]
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkpoint_from_row)
            .collect()
    }

    #[tracing::instrument(skip(self), err)]
    async fn latest_checkpoint(&self, kids: &[u32]) -> Result<Option<Checkpoint>, StoreError> {
        let mut query =
            sqlx::QueryBuilder::<Db>::new("SELECT * FROM audit_checkpoints WHERE kid IN (NULL");
        for kid in kids {
            query.push(", ").push_bind(i64::from(*kid));
        }
        query.push(") ORDER BY seq DESC LIMIT 1");
        query
            .build()
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(checkpoint_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn checkpoints_after(&self, after: i64) -> Result<Vec<Checkpoint>, StoreError> {
        sqlx::query("SELECT * FROM audit_checkpoints WHERE seq > $1 ORDER BY seq")
            .bind(after)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkpoint_from_row)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(seq = checkpoint.seq), err)]
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, kid, signature, signed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(i64::from(checkpoint.kid))
        .bind(&checkpoint.signature)
        .bind(db_time(checkpoint.signed_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn close(&self) {
        self.stop_background();
        self.pool.close().await;
    }
}
