// Issued mandates. Included by postgres.rs and sqlite.rs (see core.rs).

fn issuance_from_row(row: &DbRow) -> Result<Issuance, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(scope) = row.try_get("scope")?;
    let sqlx::types::Json(request_meta) = row.try_get("request_meta")?;
    Ok(Issuance {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        principal_subject: row.try_get("principal_subject")?,
        principal_issuer: row.try_get("principal_issuer")?,
        task_id: row.try_get("task_id")?,
        task_description: row.try_get("task_description")?,
        task_digest: row.try_get("task_digest")?,
        scope,
        root_kid: kid_from_db(row.try_get("root_kid")?)?,
        revocation_id: row.try_get("revocation_id")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        request_meta,
    })
}

#[async_trait::async_trait]
impl MandateStore for ThisStore {
    #[tracing::instrument(skip_all, fields(mandate = %issuance.id), err)]
    async fn insert_mandate(
        &self,
        issuance: &Issuance,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, task_id, \
             task_description, task_digest, scope, root_kid, revocation_id, issued_at, \
             expires_at, request_meta) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(issuance.id)
        .bind(&issuance.agent_id)
        .bind(&issuance.principal_subject)
        .bind(&issuance.principal_issuer)
        .bind(&issuance.task_id)
        .bind(&issuance.task_description)
        .bind(&issuance.task_digest)
        .bind(sqlx::types::Json(&issuance.scope))
        .bind(i64::from(issuance.root_kid))
        .bind(&issuance.revocation_id)
        .bind(db_time(issuance.issued_at))
        .bind(db_time(issuance.expires_at))
        .bind(sqlx::types::Json(&issuance.request_meta))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn mandate(&self, id: Uuid) -> Result<Option<Issuance>, StoreError> {
        sqlx::query("SELECT * FROM mandates WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(issuance_from_row)
            .transpose()
    }
}
