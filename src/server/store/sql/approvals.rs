// Approval requests and decisions. Included by postgres.rs and sqlite.rs (see core.rs); each
// defines `FOR_UPDATE` (locks a request row for its transaction where the database can) and
// `notify_approvals` (wakes every replica's waiters at commit).

fn approval_from_row(row: &DbRow) -> Result<ApprovalRequest, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(gated) = row.try_get("gated")?;
    let sqlx::types::Json(held) = row.try_get("held")?;
    Ok(ApprovalRequest {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        principal_subject: row.try_get("principal_subject")?,
        principal_issuer: row.try_get("principal_issuer")?,
        binding_message: row.try_get("binding_message")?,
        gated,
        held,
        state: parse_text(row.try_get("state")?)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        mandate_id: row.try_get("mandate_id")?,
        decisions: Vec::new(),
    })
}

fn decision_from_row(row: &DbRow) -> Result<Decision, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(counts_for) = row.try_get("counts_for")?;
    Ok(Decision {
        approver: Approver {
            subject: row.try_get("approver_subject")?,
            issuer: row.try_get("approver_issuer")?,
        },
        verdict: parse_text(row.try_get("verdict")?)?,
        reason: row.try_get("reason")?,
        counts_for,
        decided_at: row.try_get("decided_at")?,
    })
}

/// The decisions on request `id`, oldest first.
async fn decisions_of(conn: &mut DbConnection, id: Uuid) -> Result<Vec<Decision>, StoreError> {
    sqlx::query(
        "SELECT * FROM approval_decisions WHERE approval_id = $1 \
         ORDER BY decided_at, approver_issuer, approver_subject",
    )
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(decision_from_row)
    .collect()
}

/// Marks each approved request of `batch` issued with its mandate, in the batch's
/// transaction: a request no longer approved, or expired at issue, fails the whole batch.
async fn issue_approved(conn: &mut DbConnection, batch: &[NewMandate]) -> Result<(), StoreError> {
    let mut issued = false;
    for mandate in batch {
        let Some(approval) = mandate.approval else {
            continue;
        };
        let updated = sqlx::query(
            "UPDATE approval_requests SET state = 'issued', mandate_id = $1 \
             WHERE id = $2 AND state = 'approved' AND expires_at > $3",
        )
        .bind(mandate.issuance.id)
        .bind(approval)
        .bind(db_time(mandate.issuance.issued_at))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(StoreError::Conflict(format!(
                "approval request {approval} is no longer approved and waiting for its \
                 mandate (issued already, or expired); nothing was issued"
            )));
        }
        issued = true;
    }
    if issued {
        notify_approvals(conn).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl ApprovalStore for ThisStore {
    #[tracing::instrument(skip_all, fields(approval = %request.id), err)]
    async fn insert_approval(
        &self,
        request: &ApprovalRequest,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Bounded per orchestrator: pending requests are what approvers' lists are drawn from.
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM approval_requests WHERE agent_id = $1 AND state = 'pending' \
             AND expires_at > $2",
        )
        .bind(&request.agent_id)
        .bind(db_time(request.created_at))
        .fetch_one(&mut *tx)
        .await?;
        if pending >= i64::from(MAX_PENDING_PER_AGENT) {
            return Err(StoreError::LimitReached(format!(
                "agent `{}` already has {MAX_PENDING_PER_AGENT} approval requests pending, the \
                 most allowed; wait for their decisions or let them expire",
                request.agent_id
            )));
        }
        sqlx::query(
            "INSERT INTO approval_requests (id, agent_id, principal_subject, principal_issuer, \
             binding_message, gated, held, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(request.id)
        .bind(&request.agent_id)
        .bind(&request.principal_subject)
        .bind(&request.principal_issuer)
        .bind(&request.binding_message)
        .bind(sqlx::types::Json(&request.gated))
        .bind(sqlx::types::Json(&request.held))
        .bind(request.state.as_str())
        .bind(db_time(request.created_at))
        .bind(db_time(request.expires_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        notify_approvals(&mut tx).await?;
        tx.commit().await?;
        let _ = self.approvals.send(());
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn approval(&self, id: Uuid) -> Result<Option<ApprovalRequest>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT * FROM approval_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut request = approval_from_row(&row)?;
        request.decisions = decisions_of(&mut conn, id).await?;
        Ok(Some(request))
    }

    #[tracing::instrument(skip(self), err)]
    async fn pending_approvals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApprovalRequest>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT * FROM approval_requests WHERE state = 'pending' AND expires_at > $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(db_time(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut requests = rows
            .iter()
            .map(approval_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Their decisions in one query.
        let decisions = sqlx::query(
            "SELECT d.* FROM approval_decisions d JOIN (SELECT id FROM approval_requests \
             WHERE state = 'pending' AND expires_at > $1 ORDER BY created_at, id LIMIT $2) p \
             ON p.id = d.approval_id ORDER BY d.decided_at, d.approver_issuer, d.approver_subject",
        )
        .bind(db_time(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        for row in &decisions {
            use sqlx::Row as _;
            let id: Uuid = row.try_get("approval_id")?;
            if let Some(request) = requests.iter_mut().find(|r| r.id == id) {
                request.decisions.push(decision_from_row(row)?);
            }
        }
        Ok(requests)
    }

    #[tracing::instrument(skip_all, fields(approval = %id), err)]
    async fn decide_approval(
        &self,
        id: Uuid,
        decision: &Decision,
        audit: &NewAuditEvent,
    ) -> Result<ApprovalRequest, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT * FROM approval_requests WHERE id = $1{FOR_UPDATE}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("approval request {id}")))?;
        let mut request = approval_from_row(&row)?;
        request.decisions = decisions_of(&mut tx, id).await?;
        let state = request.state_at(decision.decided_at);
        if state != ApprovalState::Pending {
            return Err(StoreError::Conflict(format!(
                "approval request {id} is {}; it takes no more decisions",
                state.as_str()
            )));
        }
        if request.decisions.iter().any(|d| d.approver == decision.approver) {
            return Err(StoreError::Conflict(format!(
                "{} has already decided on approval request {id}",
                decision.approver.subject
            )));
        }
        sqlx::query(
            "INSERT INTO approval_decisions (approval_id, approver_subject, approver_issuer, \
             verdict, reason, counts_for, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(&decision.approver.subject)
        .bind(&decision.approver.issuer)
        .bind(decision.verdict.as_str())
        .bind(&decision.reason)
        .bind(sqlx::types::Json(&decision.counts_for))
        .bind(db_time(decision.decided_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)
        .map_err(exists(format!(
            "a decision of {} on approval request {id}",
            decision.approver.subject
        )))?;
        request.decisions.push(Decision {
            decided_at: db_time(decision.decided_at),
            ..decision.clone()
        });
        let settled = request.settled();
        if settled != ApprovalState::Pending {
            sqlx::query("UPDATE approval_requests SET state = $1, decided_at = $2 WHERE id = $3")
                .bind(settled.as_str())
                .bind(db_time(decision.decided_at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            request.state = settled;
            request.decided_at = Some(db_time(decision.decided_at));
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        notify_approvals(&mut tx).await?;
        tx.commit().await?;
        let _ = self.approvals.send(());
        Ok(request)
    }

    #[tracing::instrument(skip_all, fields(approval = %used.approval_id), err)]
    async fn use_approval(
        &self,
        used: &ApprovalUse,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO approval_uses (approval_id, tool, operation, mandate_id, reporter_id, \
             arguments_sha256, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (approval_id, tool, operation) DO NOTHING",
        )
        .bind(used.approval_id)
        .bind(&used.tool)
        .bind(&used.operation)
        .bind(used.mandate_id)
        .bind(&used.reporter_id)
        .bind(&used.arguments_sha256)
        .bind(db_time(used.used_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, sealer(&self.seal).as_deref(), audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    fn approval_signal(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.approvals.subscribe()
    }
}
