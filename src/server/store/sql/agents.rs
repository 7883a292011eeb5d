// Agents and their credentials. Included by postgres.rs and sqlite.rs (see core.rs).

fn agent_from_row(row: &DbRow) -> Result<Agent, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(ceiling) = row.try_get("ceiling")?;
    Ok(Agent {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        kind: parse_text(row.try_get("kind")?)?,
        owner: row.try_get("owner")?,
        team: row.try_get("team")?,
        description: row.try_get("description")?,
        ceiling,
        max_ttl_seconds: u32_from_db(row.try_get("max_ttl_seconds")?)?,
        require_binding: row.try_get("require_binding")?,
        status: parse_text(row.try_get("status")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn agent_key_from_row(row: &DbRow) -> Result<AgentKey, StoreError> {
    use sqlx::Row as _;
    Ok(AgentKey {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A positive count or TTL as the INTEGER column type both databases decode.
fn i32_for_db(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

async fn insert_secret(
    conn: &mut DbConnection,
    agent_id: &str,
    secret: &NewSecret,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_secrets (id, agent_id, secret_hash, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret.info.id)
    .bind(agent_id)
    .bind(&secret.hash[..])
    .bind(&secret.info.created_by)
    .bind(db_time(secret.info.created_at))
    .execute(conn)
    .await
    .map_err(StoreError::from)
    .map_err(exists(format!("an active secret of agent `{agent_id}`")))?;
    Ok(())
}

#[async_trait::async_trait]
impl AgentStore for ThisStore {
    #[tracing::instrument(skip(self), err)]
    async fn inventory_guard(&self) -> Result<InventoryGuard, StoreError> {
        let generation: i64 =
            sqlx::query_scalar("SELECT generation FROM inventory_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(InventoryGuard(generation))
    }

    #[tracing::instrument(skip_all, fields(id = %agent.id), err)]
    async fn insert_agent(
        &self,
        agent: &Agent,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        sqlx::query(
            "INSERT INTO agents (id, display_name, kind, owner, team, description, ceiling, \
             max_ttl_seconds, status, version, created_at, updated_at, require_binding) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&agent.id)
        .bind(&agent.display_name)
        .bind(agent.kind.as_str())
        .bind(&agent.owner)
        .bind(&agent.team)
        .bind(&agent.description)
        .bind(sqlx::types::Json(&agent.ceiling))
        .bind(i32_for_db(agent.max_ttl_seconds))
        .bind(agent.status.as_str())
        .bind(agent.version)
        .bind(db_time(agent.created_at))
        .bind(db_time(agent.updated_at))
        .bind(agent.require_binding)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!("agent `{}`", agent.id)))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        sqlx::query("SELECT * FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_agents(
        &self,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Vec<Agent>, StoreError> {
        sqlx::query(
            "SELECT * FROM agents WHERE \
             (CAST($1 AS TEXT) IS NULL OR status = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR kind = $2) AND \
             (CAST($3 AS TEXT) IS NULL OR owner = $3) AND \
             (CAST($4 AS TEXT) IS NULL OR team = $4) AND \
             (CAST($5 AS TEXT) IS NULL OR id > $5) \
             ORDER BY id LIMIT $6",
        )
        .bind(&filter.status)
        .bind(&filter.kind)
        .bind(&filter.owner)
        .bind(&filter.team)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(id = %agent.id), err)]
    async fn update_agent(
        &self,
        agent: &Agent,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        let updated = sqlx::query(
            "UPDATE agents SET display_name = $2, owner = $3, team = $4, description = $5, \
             ceiling = $6, max_ttl_seconds = $7, status = $8, version = $9, updated_at = $10, \
             require_binding = $12 WHERE id = $1 AND version = $11",
        )
        .bind(&agent.id)
        .bind(&agent.display_name)
        .bind(&agent.owner)
        .bind(&agent.team)
        .bind(&agent.description)
        .bind(sqlx::types::Json(&agent.ceiling))
        .bind(i32_for_db(agent.max_ttl_seconds))
        .bind(agent.status.as_str())
        .bind(agent.version)
        .bind(db_time(agent.updated_at))
        .bind(agent.version - 1)
        .bind(agent.require_binding)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(changed_meanwhile(format!("agent `{}`", agent.id)));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn agent_secret(&self, agent_id: &str) -> Result<Option<AgentSecretInfo>, StoreError> {
        use sqlx::Row as _;
        let row = sqlx::query(
            "SELECT id, created_by, created_at FROM agent_secrets \
             WHERE agent_id = $1 AND revoked_at IS NULL",
        )
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AgentSecretInfo {
                id: row.try_get("id")?,
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, err)]
    async fn agent_by_secret(&self, hash: &SecretHash) -> Result<Option<Agent>, StoreError> {
        sqlx::query(
            "SELECT a.* FROM agents a JOIN agent_secrets s ON s.agent_id = a.id \
             WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND a.status = 'active'",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    #[tracing::instrument(skip_all, err)]
    async fn active_agent_secrets(&self) -> Result<Vec<(SecretHash, Agent)>, StoreError> {
        use sqlx::Row as _;
        sqlx::query(
            "SELECT a.*, s.secret_hash FROM agents a JOIN agent_secrets s ON s.agent_id = a.id \
             WHERE s.revoked_at IS NULL AND a.status = 'active'",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get("secret_hash")?;
            let hash = SecretHash::try_from(hash.as_slice())
                .map_err(|_| StoreError::Corrupt("a secret hash is not 32 bytes".to_owned()))?;
            Ok((hash, agent_from_row(row)?))
        })
        .collect()
    }

    #[tracing::instrument(skip(self, change, at, audit), err)]
    async fn change_agent_secret(
        &self,
        agent_id: &str,
        change: &SecretChange,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE inventory_state SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        if matches!(change, SecretChange::Rotate(_) | SecretChange::Revoke) {
            let revoked = sqlx::query(
                "UPDATE agent_secrets SET revoked_at = $2 \
                 WHERE agent_id = $1 AND revoked_at IS NULL",
            )
            .bind(agent_id)
            .bind(db_time(at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if revoked == 0 {
                return Err(StoreError::NotFound(format!(
                    "agent `{agent_id}` has no active secret"
                )));
            }
        }
        if let SecretChange::Issue(secret) | SecretChange::Rotate(secret) = change {
            insert_secret(&mut tx, agent_id, secret).await?;
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn agent_keys(&self, agent_id: &str) -> Result<Vec<AgentKey>, StoreError> {
        sqlx::query(
            "SELECT * FROM agent_keys WHERE agent_id = $1 AND removed_at IS NULL \
             ORDER BY created_at, id",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_key_from_row)
        .collect()
    }

    #[tracing::instrument(skip(self), err)]
    async fn all_agent_keys(&self) -> Result<Vec<AgentKey>, StoreError> {
        sqlx::query(
            "SELECT k.* FROM agent_keys k JOIN agents a ON a.id = k.agent_id \
             WHERE k.removed_at IS NULL AND a.status = 'active' \
             ORDER BY k.agent_id, k.created_at, k.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_key_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(agent = %key.agent_id), err)]
    async fn insert_agent_key(
        &self,
        key: &AgentKey,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO agent_keys (id, agent_id, algorithm, public_key, created_at) \
             VALUES ($1, $2, 'ed25519', $3, $4)",
        )
        .bind(key.id)
        .bind(&key.agent_id)
        .bind(&key.public_key)
        .bind(db_time(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists("this public key".to_owned()))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, at, audit), err)]
    async fn remove_agent_key(
        &self,
        agent_id: &str,
        key_id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query(
            "UPDATE agent_keys SET removed_at = $3 \
             WHERE id = $1 AND agent_id = $2 AND removed_at IS NULL",
        )
        .bind(key_id)
        .bind(agent_id)
        .bind(db_time(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "agent `{agent_id}` has no key {key_id}"
            )));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
