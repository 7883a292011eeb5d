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

fn receipt_from_row(row: &DbRow) -> Result<Receipt, StoreError> {
    use sqlx::Row as _;
    let sqlx::types::Json(hops) = row.try_get("hops")?;
    Ok(Receipt {
        id: row.try_get("id")?,
        mandate_id: row.try_get("mandate_id")?,
        revocation_id: row.try_get("receipt_revocation_id")?,
        hops,
        tool: row.try_get("tool")?,
        operation: row.try_get("operation")?,
        resource: row.try_get("resource")?,
        outcome: row.try_get("outcome")?,
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        reporter_id: row.try_get("reporter_id")?,
        details: {
            let sqlx::types::Json(details) = row.try_get("details")?;
            details
        },
    })
}

/// How many minutes past their expiry issuance counts are kept (see `prune_issuance_counts`).
const PRUNE_LAG_MINUTES: i64 = 5;

/// The minute (since the epoch, rounded down) in which `at` falls.
fn epoch_minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The refusal naming the first of `agents` or `tools` that is not active.
async fn no_longer_active(
    conn: &mut DbConnection,
    agents: &[&str],
    tools: &[&str],
) -> Result<StoreError, StoreError> {
    for (table, id) in agents
        .iter()
        .map(|a| ("agents", *a))
        .chain(tools.iter().map(|t| ("tools", *t)))
    {
        let status: Option<String> =
            sqlx::query_scalar(&format!("SELECT status FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        if status.as_deref() != Some("active") {
            let what = if table == "agents" { "agent" } else { "tool" };
            return Ok(StoreError::NoLongerActive(format!(
                "{what} `{id}` stopped being active while the mandate was minted; \
                 nothing was issued"
            )));
        }
    }
    Err(StoreError::Corrupt(
        "the active inventory was counted differently twice in one transaction".to_owned(),
    ))
}

/// How many of `batch`'s mandates each agent gets, by the minute they expire in.
fn issuance_buckets(batch: &[NewMandate]) -> IssuanceCounts<'_> {
    let mut buckets = IssuanceCounts::new();
    for NewMandate { issuance, .. } in batch {
        *buckets
            .entry((issuance.agent_id.as_str(), epoch_minute(issuance.expires_at)))
            .or_default() += 1;
    }
    buckets
}

/// What a batch's commit checks, read in one query under the chain's lock.
struct InventoryState {
    /// The inventory's generation.
    generation: InventoryGuard,
    /// The batch's agents that are active, each with its mandates counted as expiring in
    /// `minute` or later (before this batch): an upper bound of its live ones.
    active_agents: Vec<(String, i64)>,
    /// How many of the batch's tools are active.
    active_tools: usize,
    /// The audit chain's last event (seq and hash), if any.
    head: Option<(i64, Vec<u8>)>,
}

async fn inventory_state(
    conn: &mut DbConnection,
    agents: &[&str],
    tools: &[&str],
    minute: i64,
) -> Result<InventoryState, StoreError> {
    use sqlx::Row as _;
    // One row per active agent of the batch, or one with no agent if none is active; the
    // chain's head (none while the chain is empty) on each.
    let mut query = sqlx::QueryBuilder::<Db>::new(
        "SELECT g.generation, a.id, (SELECT coalesce(CAST(sum(c.issued) AS BIGINT), 0) \
         FROM agent_issuance_counts c WHERE c.agent_id = a.id AND c.expires_minute >= ",
    );
    query.push_bind(minute);
    query.push(
        ") AS counted, h.seq AS head_seq, h.hash AS head_hash, \
         (SELECT count(*) FROM tools t WHERE t.status = 'active' AND t.id IN (NULL",
    );
    for tool in tools {
        query.push(", ").push_bind(*tool);
    }
    query.push(")) AS active_tools FROM inventory_state g LEFT JOIN (");
    query.push(CHAIN_HEAD);
    query.push(") h ON 1 = 1 LEFT JOIN agents a ON a.status = 'active' AND a.id IN (NULL");
    for agent in agents {
        query.push(", ").push_bind(*agent);
    }
    query.push(") WHERE g.id = 1");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("no inventory generation".to_owned()))?;
    let active_tools: i64 = first.try_get("active_tools")?;
    let mut active_agents = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(id) = row.try_get::<Option<String>, _>("id")? {
            active_agents.push((id, row.try_get("counted")?));
        }
    }
    let head_seq: Option<i64> = first.try_get("head_seq")?;
    let head_hash: Option<Vec<u8>> = first.try_get("head_hash")?;
    Ok(InventoryState {
        generation: InventoryGuard(first.try_get("generation")?),
        active_agents,
        active_tools: usize::try_from(active_tools).unwrap_or(0),
        head: head_seq.zip(head_hash),
    })
}

/// Refuses the batch being committed (already inserted) if `agent` would hold more than `cap`
/// live mandates at `now`, counted one by one: only when the bound says it might.
async fn check_live_cap(
    conn: &mut DbConnection,
    agent: &str,
    now: DateTime<Utc>,
    cap: u32,
) -> Result<(), StoreError> {
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mandates m WHERE m.agent_id = $1 AND m.expires_at > $2 \
         AND NOT EXISTS (SELECT 1 FROM revocations r \
         WHERE r.revocation_id = m.revocation_id)",
    )
    .bind(agent)
    .bind(db_time(now))
    .fetch_one(&mut *conn)
    .await?;
    if live > i64::from(cap) {
        return Err(StoreError::LimitReached(format!(
            "agent `{agent}` already holds {cap} live mandates, the most allowed; \
             complete or revoke some first"
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl MandateStore for ThisStore {
    #[tracing::instrument(skip_all, fields(reports = batch.len()), err)]
    async fn insert_receipt_batches(
        &self,
        batch: &[(Vec<Receipt>, NewAuditEvent)],
    ) -> Result<(), StoreError> {
        let receipts: Vec<&Receipt> = batch.iter().flat_map(|(r, _)| r).collect();
        let mut tx = self.begin().await?;
        insert_receipts(&mut tx, &receipts).await?;
        let events: Vec<&NewAuditEvent> = batch.iter().map(|(_, audit)| audit).collect();
        append_audit_events(&mut tx, sealer(&self.seal).as_deref(), &events).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn actions(
        &self,
        filter: &ActionFilter,
        limit: u32,
    ) -> Result<Vec<(Receipt, Issuance)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.*, r.id AS receipt_id, r.mandate_id, r.revocation_id AS receipt_revocation_id, r.hops, \
             r.tool, r.operation, r.resource, r.outcome, r.occurred_at, r.recorded_at, \
             r.reporter_id, r.details \
             FROM receipts r JOIN mandates m ON m.id = r.mandate_id WHERE \
             (CAST($1 AS TEXT) IS NULL OR m.principal_subject = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR m.principal_issuer = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR m.agent_id = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR r.tool = $4) \
             AND ($5 IS NULL OR r.mandate_id = $5) \
             AND (CAST($6 AS TEXT) IS NULL OR m.task_id = $6) \
             AND ($7 IS NULL OR r.occurred_at >= $7) \
             AND ($8 IS NULL OR r.occurred_at < $8) \
             ORDER BY r.occurred_at, r.id LIMIT $9",
        )
        .bind(&filter.principal)
        .bind(&filter.issuer)
        .bind(&filter.agent)
        .bind(&filter.tool)
        .bind(filter.mandate)
        .bind(&filter.task)
        .bind(filter.from.map(db_time))
        .bind(filter.to.map(db_time))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row as _;
                let mut receipt = receipt_from_row(row)?;
                receipt.id = row.try_get("receipt_id")?;
                Ok((receipt, issuance_from_row(row)?))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(mandates = batch.len()), err)]
    async fn insert_mandates(
        &self,
        batch: &[NewMandate],
        live_cap: Option<u32>,
    ) -> Result<(), StoreError> {
        let Some(now) = batch.iter().map(|m| m.issuance.issued_at).max() else {
            return Ok(());
        };
        let mut tx = self.begin().await?;
        // The rows first, then the chain's lock (see `insert_issuances_then_serialize_audit`),
        // which every inventory change also takes: an agent suspended or a tool disabled by a
        // change committed before this one issues nothing more. (That change then revokes the
        // live mandates it finds, which include any committed earlier.) Every issuance
        // committed before this one is counted too. One query reads all of it with the chain's
        // head.
        insert_issuances_then_serialize_audit(&mut tx, batch).await?;
        let mut agents: Vec<&str> = batch.iter().map(|m| m.issuance.agent_id.as_str()).collect();
        agents.sort_unstable();
        agents.dedup();
        let mut tools: Vec<&str> = batch
            .iter()
            .flat_map(|m| m.issuance.scope.iter().map(|r| r.tool.as_str()))
            .collect();
        tools.sort_unstable();
        tools.dedup();
        let state = inventory_state(&mut tx, &agents, &tools, epoch_minute(now)).await?;
        if batch
            .iter()
            .any(|m| m.decided_at.is_some_and(|at| at != state.generation))
        {
            return Err(StoreError::InventoryMoved);
        }
        if state.active_agents.len() != agents.len() || state.active_tools != tools.len() {
            return Err(no_longer_active(&mut tx, &agents, &tools).await?);
        }
        let buckets = issuance_buckets(batch);
        if let Some(cap) = live_cap {
            for (agent, counted) in &state.active_agents {
                let this_batch: i64 = buckets
                    .iter()
                    .filter(|((bucket_agent, _), _)| bucket_agent == agent)
                    .map(|(_, issued)| issued)
                    .sum();
                if counted.saturating_add(this_batch) > i64::from(cap) {
                    check_live_cap(&mut tx, agent, now, cap).await?;
                }
            }
        }
        issue_approved(&mut tx, batch).await?;
        let events: Vec<&NewAuditEvent> = batch.iter().map(|m| &m.audit).collect();
        insert_chained(&mut tx, &chain(state.head, &events, sealer(&self.seal).as_deref()), &buckets).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn prune_issuance_counts(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Kept a few minutes longer: a replica whose clock lags still counts them. Subject
        // tokens used once are forgotten as long after they expire, past any leeway.
        let lag = chrono::Duration::minutes(PRUNE_LAG_MINUTES);
        sqlx::query("DELETE FROM subject_token_uses WHERE expires_at < $1")
            .bind(db_time(now - lag))
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query("DELETE FROM agent_issuance_counts WHERE expires_minute < $1")
                .bind(epoch_minute(now) - PRUNE_LAG_MINUTES)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
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
