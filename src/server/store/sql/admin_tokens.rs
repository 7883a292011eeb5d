// Admin tokens. Included by postgres.rs and sqlite.rs (see core.rs).

fn admin_token_from_row(row: &DbRow) -> Result<AdminToken, StoreError> {
    use sqlx::Row as _;
    Ok(AdminToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: parse_text(row.try_get("role")?)?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait::async_trait]
impl AdminTokenStore for ThisStore {
    #[tracing::instrument(skip_all, fields(name = %token.name), err)]
    async fn insert_admin_token(
        &self,
        token: &AdminToken,
        hash: &SecretHash,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, role, token_hash, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(&hash[..])
        .bind(&token.created_by)
        .bind(db_time(token.created_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!("admin token `{}`", token.name)))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn admin_token_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<AdminToken>, StoreError> {
        sqlx::query("SELECT * FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(admin_token_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn admin_token(&self, id: Uuid) -> Result<Option<AdminToken>, StoreError> {
        sqlx::query("SELECT * FROM admin_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(admin_token_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_admin_tokens(
        &self,
        role: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<AdminToken>, StoreError> {
        sqlx::query(
            "SELECT * FROM admin_tokens WHERE (CAST($1 AS TEXT) IS NULL OR role = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(role)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(admin_token_from_row)
        .collect()
    }

    #[tracing::instrument(skip(self, at, audit), err)]
    async fn revoke_admin_token(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let revoked =
            sqlx::query("UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(db_time(at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if revoked == 0 {
            return Err(StoreError::NotFound(format!("no active admin token {id}")));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
