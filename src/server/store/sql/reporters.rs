// Reporters. Included by postgres.rs and sqlite.rs (see core.rs).

fn reporter_from_row(row: &DbRow) -> Result<Reporter, StoreError> {
    use sqlx::Row as _;
    Ok(Reporter {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        kind: parse_text(row.try_get("kind")?)?,
        owner: row.try_get("owner")?,
        status: parse_text(row.try_get("status")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl ReporterStore for ThisStore {
    #[tracing::instrument(skip_all, fields(id = %reporter.id), err)]
    async fn insert_reporter(
        &self,
        reporter: &Reporter,
        hash: &SecretHash,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO reporters (id, display_name, kind, owner, status, secret_hash, version, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&reporter.id)
        .bind(&reporter.display_name)
        .bind(reporter.kind.as_str())
        .bind(&reporter.owner)
        .bind(reporter.status.as_str())
        .bind(&hash[..])
        .bind(reporter.version)
        .bind(db_time(reporter.created_at))
        .bind(db_time(reporter.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!("reporter `{}`", reporter.id)))?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn reporter(&self, id: &str) -> Result<Option<Reporter>, StoreError> {
        sqlx::query("SELECT * FROM reporters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(reporter_from_row)
            .transpose()
    }

    #[tracing::instrument(skip_all, err)]
    async fn reporter_by_secret(&self, hash: &SecretHash) -> Result<Option<Reporter>, StoreError> {
        sqlx::query("SELECT * FROM reporters WHERE secret_hash = $1 AND status = 'active'")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(reporter_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_reporters(&self, page: &PageRequest) -> Result<Vec<Reporter>, StoreError> {
        sqlx::query(
            "SELECT * FROM reporters WHERE (CAST($1 AS TEXT) IS NULL OR id > $1) \
             ORDER BY id LIMIT $2",
        )
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(reporter_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(id = %reporter.id), err)]
    async fn update_reporter(
        &self,
        reporter: &Reporter,
        hash: Option<&SecretHash>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE reporters SET status = $2, version = $3, updated_at = $4, \
             secret_hash = COALESCE($5, secret_hash) WHERE id = $1 AND version = $6",
        )
        .bind(&reporter.id)
        .bind(reporter.status.as_str())
        .bind(reporter.version)
        .bind(db_time(reporter.updated_at))
        .bind(hash.map(|h| h.to_vec()))
        .bind(reporter.version - 1)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(changed_meanwhile(format!("reporter `{}`", reporter.id)));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
