// Tools and issuers. Included by postgres.rs and sqlite.rs (see core.rs).

fn tool_from_row(row: &DbRow) -> Result<Tool, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(operations) = row.try_get("operations")?;
    Ok(Tool {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        kind: parse_text(row.try_get("kind")?)?,
        owner: row.try_get("owner")?,
        description: row.try_get("description")?,
        operations,
        status: parse_text(row.try_get("status")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn issuer_from_row(row: &DbRow) -> Result<Issuer, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(audiences) = row.try_get("audiences")?;
    let sqlx::types::Json(allowed_algorithms) = row.try_get("allowed_algorithms")?;
    Ok(Issuer {
        id: row.try_get("id")?,
        issuer_url: row.try_get("issuer_url")?,
        audiences,
        jwks_uri: row.try_get("jwks_uri")?,
        discovery: row.try_get("discovery")?,
        allowed_algorithms,
        subject_claim: row.try_get("subject_claim")?,
        groups_claim: row.try_get("groups_claim")?,
        client_claim: row.try_get("client_claim")?,
        single_use_tokens: row.try_get("single_use_tokens")?,
        status: parse_text(row.try_get("status")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl CatalogStore for ThisStore {
    #[tracing::instrument(skip_all, fields(id = %tool.id), err)]
    async fn insert_tool(
        &self,
        tool: &Tool,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        sqlx::query(
            "INSERT INTO tools (id, display_name, kind, owner, description, operations, status, \
             version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&tool.id)
        .bind(&tool.display_name)
        .bind(tool.kind.as_str())
        .bind(&tool.owner)
        .bind(&tool.description)
        .bind(sqlx::types::Json(&tool.operations))
        .bind(tool.status.as_str())
        .bind(tool.version)
        .bind(db_time(tool.created_at))
        .bind(db_time(tool.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!("tool `{}`", tool.id)))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn tool(&self, id: &str) -> Result<Option<Tool>, StoreError> {
        sqlx::query("SELECT * FROM tools WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(tool_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_tools(
        &self,
        filter: &ToolFilter,
        page: &PageRequest,
    ) -> Result<Vec<Tool>, StoreError> {
        sqlx::query(
            "SELECT * FROM tools WHERE \
             (CAST($1 AS TEXT) IS NULL OR status = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR kind = $2) AND \
             (CAST($3 AS TEXT) IS NULL OR owner = $3) AND \
             (CAST($4 AS TEXT) IS NULL OR id > $4) \
             ORDER BY id LIMIT $5",
        )
        .bind(&filter.status)
        .bind(&filter.kind)
        .bind(&filter.owner)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tool_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(id = %tool.id), err)]
    async fn update_tool(
        &self,
        tool: &Tool,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        let updated = sqlx::query(
            "UPDATE tools SET display_name = $2, owner = $3, description = $4, operations = $5, \
             status = $6, version = $7, updated_at = $8 WHERE id = $1 AND version = $9",
        )
        .bind(&tool.id)
        .bind(&tool.display_name)
        .bind(&tool.owner)
        .bind(&tool.description)
        .bind(sqlx::types::Json(&tool.operations))
        .bind(tool.status.as_str())
        .bind(tool.version)
        .bind(db_time(tool.updated_at))
        .bind(tool.version - 1)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(changed_meanwhile(format!("tool `{}`", tool.id)));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(id = %issuer.id), err)]
    async fn insert_issuer(
        &self,
        issuer: &Issuer,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        sqlx::query(
            "INSERT INTO issuers (id, issuer_url, audiences, jwks_uri, discovery, \
             allowed_algorithms, subject_claim, groups_claim, status, version, created_at, \
             updated_at, client_claim, single_use_tokens) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&issuer.id)
        .bind(&issuer.issuer_url)
        .bind(sqlx::types::Json(&issuer.audiences))
        .bind(&issuer.jwks_uri)
        .bind(issuer.discovery)
        .bind(sqlx::types::Json(&issuer.allowed_algorithms))
        .bind(&issuer.subject_claim)
        .bind(&issuer.groups_claim)
        .bind(issuer.status.as_str())
        .bind(issuer.version)
        .bind(db_time(issuer.created_at))
        .bind(db_time(issuer.updated_at))
        .bind(&issuer.client_claim)
        .bind(issuer.single_use_tokens)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!(
            "issuer `{}` or one with URL {}",
            issuer.id, issuer.issuer_url
        )))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn issuer(&self, id: &str) -> Result<Option<Issuer>, StoreError> {
        sqlx::query("SELECT * FROM issuers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(issuer_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_issuers(
        &self,
        filter: &IssuerFilter,
        page: &PageRequest,
    ) -> Result<Vec<Issuer>, StoreError> {
        sqlx::query(
            "SELECT * FROM issuers WHERE \
             (CAST($1 AS TEXT) IS NULL OR status = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR id > $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(&filter.status)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(issuer_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(id = %issuer.id), err)]
    async fn update_issuer(
        &self,
        issuer: &Issuer,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        let updated = sqlx::query(
            "UPDATE issuers SET audiences = $2, jwks_uri = $3, discovery = $4, \
             allowed_algorithms = $5, subject_claim = $6, groups_claim = $7, status = $8, \
             version = $9, updated_at = $10, issuer_url = $12, client_claim = $13, \
             single_use_tokens = $14 WHERE id = $1 AND version = $11",
        )
        .bind(&issuer.id)
        .bind(sqlx::types::Json(&issuer.audiences))
        .bind(&issuer.jwks_uri)
        .bind(issuer.discovery)
        .bind(sqlx::types::Json(&issuer.allowed_algorithms))
        .bind(&issuer.subject_claim)
        .bind(&issuer.groups_claim)
        .bind(issuer.status.as_str())
        .bind(issuer.version)
        .bind(db_time(issuer.updated_at))
        .bind(issuer.version - 1)
        .bind(&issuer.issuer_url)
        .bind(&issuer.client_claim)
        .bind(issuer.single_use_tokens)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(changed_meanwhile(format!("issuer `{}`", issuer.id)));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
