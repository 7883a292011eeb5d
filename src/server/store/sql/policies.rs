// Policies and live mandate counts. Included by postgres.rs and sqlite.rs (see core.rs).

fn policy_from_row(row: &DbRow) -> Result<Policy, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(subjects) = row.try_get("subjects")?;
    let sqlx::types::Json(groups) = row.try_get("groups")?;
    let agents: Option<sqlx::types::Json<Vec<String>>> = row.try_get("agents")?;
    let sqlx::types::Json(grants) = row.try_get("grants")?;
    Ok(Policy {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        issuer: row.try_get("issuer_id")?,
        subjects,
        groups,
        agents: agents.map_or(AgentScope::Any, |ids| AgentScope::Listed(ids.0)),
        grants,
        max_ttl_seconds: u32_from_db(row.try_get("max_ttl_seconds")?)?,
        require_binding: row.try_get("require_binding")?,
        enabled: row.try_get("enabled")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// NULL stands for "any agent".
fn agents_for_db(scope: &AgentScope) -> Option<sqlx::types::Json<&[String]>> {
    match scope {
        AgentScope::Any => None,
        AgentScope::Listed(ids) => Some(sqlx::types::Json(ids.as_slice())),
    }
}

#[async_trait::async_trait]
impl PolicyStore for ThisStore {
    #[tracing::instrument(skip_all, fields(id = %policy.id), err)]
    async fn insert_policy(
        &self,
        policy: &Policy,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        sqlx::query(
            "INSERT INTO policies (id, name, description, issuer_id, subjects, groups, agents, \
             grants, max_ttl_seconds, enabled, version, created_at, updated_at, require_binding) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&policy.id)
        .bind(&policy.name)
        .bind(&policy.description)
        .bind(&policy.issuer)
        .bind(sqlx::types::Json(&policy.subjects))
        .bind(sqlx::types::Json(&policy.groups))
        .bind(agents_for_db(&policy.agents))
        .bind(sqlx::types::Json(&policy.grants))
        .bind(i32_for_db(policy.max_ttl_seconds))
        .bind(policy.enabled)
        .bind(policy.version)
        .bind(db_time(policy.created_at))
        .bind(db_time(policy.updated_at))
        .bind(policy.require_binding)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!("policy `{}`", policy.id)))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn policy(&self, id: &str) -> Result<Option<Policy>, StoreError> {
        sqlx::query("SELECT * FROM policies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(policy_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_policies(
        &self,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Vec<Policy>, StoreError> {
        sqlx::query(
            "SELECT * FROM policies WHERE \
             (CAST($1 AS BOOLEAN) IS NULL OR enabled = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR issuer_id = $2) AND \
             (CAST($3 AS TEXT) IS NULL OR id > $3) \
             ORDER BY id LIMIT $4",
        )
        .bind(filter.enabled)
        .bind(&filter.issuer)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(policy_from_row)
        .collect()
    }

    #[tracing::instrument(skip(self), err)]
    async fn all_policies(&self) -> Result<Vec<Policy>, StoreError> {
        sqlx::query("SELECT * FROM policies ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(policy_from_row)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(id = %policy.id), err)]
    async fn update_policy(
        &self,
        policy: &Policy,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        let updated = sqlx::query(
            "UPDATE policies SET name = $2, description = $3, subjects = $4, groups = $5, \
             agents = $6, grants = $7, max_ttl_seconds = $8, enabled = $9, version = $10, \
             updated_at = $11, require_binding = $13 WHERE id = $1 AND version = $12",
        )
        .bind(&policy.id)
        .bind(&policy.name)
        .bind(&policy.description)
        .bind(sqlx::types::Json(&policy.subjects))
        .bind(sqlx::types::Json(&policy.groups))
        .bind(agents_for_db(&policy.agents))
        .bind(sqlx::types::Json(&policy.grants))
        .bind(i32_for_db(policy.max_ttl_seconds))
        .bind(policy.enabled)
        .bind(policy.version)
        .bind(db_time(policy.updated_at))
        .bind(policy.version - 1)
        .bind(policy.require_binding)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(changed_meanwhile(format!("policy `{}`", policy.id)));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, audit), err)]
    async fn delete_policy(
        &self,
        id: &str,
        version: i64,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        let deleted = sqlx::query("DELETE FROM policies WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(changed_meanwhile(format!("policy `{id}`")));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn live_mandate_counts(
        &self,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        use sqlx::Row as _;
        sqlx::query(
            "SELECT agent_id, count(*) AS live FROM mandates m WHERE expires_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.mandate_id = m.id) \
             GROUP BY agent_id",
        )
        .bind(db_time(now))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("agent_id")?, row.try_get("live")?)))
        .collect()
    }
}
