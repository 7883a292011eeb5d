// Revocations and the feed. Included by postgres.rs and sqlite.rs (see core.rs); each defines
// `serialize_revocations` (orders feed entries by commit) and `notify_revocations` (wakes
// every replica's subscribers at commit).

fn revocation_from_row(row: &DbRow) -> Result<Revocation, StoreError> {
    use sqlx::Row as _;
    Ok(Revocation {
        seq: row.try_get("seq")?,
        entry: NewRevocation {
            id: row.try_get("id")?,
            revocation_id: row.try_get("revocation_id")?,
            mandate_id: row.try_get("mandate_id")?,
            reason: row.try_get("reason")?,
            revoked_by: row.try_get("revoked_by")?,
            revoked_at: row.try_get("revoked_at")?,
            expires_at: row.try_get("expires_at")?,
        },
    })
}

/// Rows per multi-row insert (8 parameters each, within both databases' limits).
const REVOCATION_CHUNK: usize = 1000;

#[async_trait::async_trait]
impl RevocationStore for ThisStore {
    #[tracing::instrument(skip_all, fields(entries = entries.len()), err)]
    async fn revoke(
        &self,
        entries: &[NewRevocation],
        audit: &NewAuditEvent,
    ) -> Result<Vec<Revocation>, StoreError> {
        let mut tx = self.begin().await?;
        serialize_revocations(&mut tx).await?;
        let mut revoked = Vec::new();
        for chunk in entries.chunks(REVOCATION_CHUNK) {
            let mut query = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO revocations (id, revocation_id, mandate_id, reason, revoked_by, \
                 revoked_at, expires_at) ",
            );
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(&e.revocation_id)
                    .push_bind(e.mandate_id)
                    .push_bind(&e.reason)
                    .push_bind(&e.revoked_by)
                    .push_bind(db_time(e.revoked_at))
                    .push_bind(db_time(e.expires_at));
            });
            query.push(" ON CONFLICT (revocation_id) DO NOTHING RETURNING *");
            for row in query.build().fetch_all(&mut *tx).await? {
                revoked.push(revocation_from_row(&row)?);
            }
        }
        if revoked.is_empty() {
            // Everything was revoked already: nothing happened, nothing to audit.
            return Ok(revoked);
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        notify_revocations(&mut tx).await?;
        tx.commit().await?;
        let _ = self.signal.send(());
        revoked.sort_by_key(|r| r.seq);
        Ok(revoked)
    }

    #[tracing::instrument(skip(self, audit), err)]
    async fn cut_off_principal(
        &self,
        issuer_url: &str,
        subject: &str,
        not_after: DateTime<Utc>,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        advance_inventory(&mut tx, guard).await?;
        sqlx::query(
            "INSERT INTO principal_cutoffs (issuer_url, subject, not_after) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer_url, subject) DO UPDATE SET not_after = excluded.not_after \
             WHERE excluded.not_after > principal_cutoffs.not_after",
        )
        .bind(issuer_url)
        .bind(subject)
        .bind(db_time(not_after))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, jti), err)]
    async fn use_subject_token(
        &self,
        issuer_url: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO subject_token_uses (issuer_url, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer_url, jti) DO NOTHING",
        )
        .bind(issuer_url)
        .bind(jti)
        .bind(db_time(expires_at))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    #[tracing::instrument(skip(self), err)]
    async fn principal_cutoffs(&self) -> Result<Vec<((String, String), DateTime<Utc>)>, StoreError> {
        use sqlx::Row as _;
        sqlx::query("SELECT issuer_url, subject, not_after FROM principal_cutoffs")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    (row.try_get("issuer_url")?, row.try_get("subject")?),
                    row.try_get("not_after")?,
                ))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, err)]
    async fn revocation(&self, revocation_id: &[u8]) -> Result<Option<Revocation>, StoreError> {
        sqlx::query("SELECT * FROM revocations WHERE revocation_id = $1")
            .bind(revocation_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(revocation_from_row)
            .transpose()
    }

    #[tracing::instrument(skip(self), err)]
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
        now: DateTime<Utc>,
        include_expired: bool,
    ) -> Result<Vec<Revocation>, StoreError> {
        sqlx::query(
            "SELECT * FROM revocations WHERE seq > $1 AND ($2 OR expires_at > $3) \
             ORDER BY seq LIMIT $4",
        )
        .bind(after)
        .bind(include_expired)
        .bind(db_time(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(revocation_from_row)
        .collect()
    }

    #[tracing::instrument(skip(self), err)]
    async fn revocations_of_mandate(&self, mandate_id: Uuid) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM revocations WHERE mandate_id = $1")
            .bind(mandate_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    #[tracing::instrument(skip(self), err)]
    async fn live_mandates(
        &self,
        filter: &MandateFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<Issuance>, StoreError> {
        sqlx::query(
            "SELECT m.* FROM mandates m WHERE m.expires_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.revocation_id = m.revocation_id) \
             AND (CAST($2 AS TEXT) IS NULL OR m.agent_id = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR m.principal_subject = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR m.principal_issuer = $4) \
             AND (CAST($5 AS TEXT) IS NULL OR m.task_id = $5) \
             AND ($6 IS NULL OR m.issued_at < $6) \
             ORDER BY m.issued_at, m.id",
        )
        .bind(db_time(now))
        .bind(&filter.agent)
        .bind(&filter.principal_subject)
        .bind(&filter.principal_issuer)
        .bind(&filter.task)
        .bind(filter.issued_before.map(db_time))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(issuance_from_row)
        .collect()
    }

    fn revocation_signal(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.signal.subscribe()
    }
}
