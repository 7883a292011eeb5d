//! The one handle to everything mandate stores, and the reads that walk whole lists through it.

use std::sync::Arc;

use super::approvals::ApprovalStore;
use super::core_store::CoreStore;
use super::error::StoreError;
use super::inventory::{
    AdminTokenStore, AgentFilter, AgentStore, CatalogStore, IssuerFilter, PolicyStore,
    ReporterStore, ToolFilter,
};
use super::mandates::MandateStore;
use super::revocations::RevocationStore;
use crate::server::model::agent::Agent;
use crate::server::model::issuer::{Issuer, IssuerStatus};
use crate::server::model::page::PageRequest;
use crate::server::model::tool::Tool;

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Everything mandate stores, as one handle: the core operations, admin tokens and the
/// inventory. Each method is one transaction; every change commits with its audit event.
pub trait Store:
    CoreStore
    + AdminTokenStore
    + AgentStore
    + CatalogStore
    + PolicyStore
    + MandateStore
    + RevocationStore
    + ReporterStore
    + ApprovalStore
{
}

impl<T> Store for T where
    T: CoreStore
        + AdminTokenStore
        + AgentStore
        + CatalogStore
        + PolicyStore
        + MandateStore
        + RevocationStore
        + ReporterStore
        + ApprovalStore
{
}

/// Every row of a list, fetched page by page with `fetch` (which returns up to one row more
/// than the page size, as the list methods do).
async fn every<T, F, Fut>(mut fetch: F, key: impl Fn(&T) -> String) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    const PAGE: u32 = 200;
    let mut all = Vec::new();
    let mut page = PageRequest::first(PAGE);
    loop {
        let mut rows = fetch(page.clone()).await?;
        let more = rows.len() > PAGE as usize;
        rows.truncate(PAGE as usize);
        page.after = rows.last().map(&key);
        all.extend(rows);
        if !more {
            return Ok(all);
        }
    }
}

/// Every agent.
pub async fn all_agents(store: &dyn Store) -> Result<Vec<Agent>, StoreError> {
    let filter = &AgentFilter::default();
    every(
        |page| async move { store.list_agents(filter, &page).await },
        |a| a.id.clone(),
    )
    .await
}

/// Every tool.
pub async fn all_tools(store: &dyn Store) -> Result<Vec<Tool>, StoreError> {
    let filter = &ToolFilter::default();
    every(
        |page| async move { store.list_tools(filter, &page).await },
        |t| t.id.clone(),
    )
    .await
}

/// Every active issuer.
pub async fn active_issuers(store: &dyn Store) -> Result<Vec<Issuer>, StoreError> {
    let filter = IssuerFilter {
        status: Some(IssuerStatus::Active.as_str().to_owned()),
    };
    every_issuer(store, &filter).await
}

/// Every issuer `filter` selects.
pub async fn every_issuer(
    store: &dyn Store,
    filter: &IssuerFilter,
) -> Result<Vec<Issuer>, StoreError> {
    every(
        |page| async move { store.list_issuers(filter, &page).await },
        |i| i.id.clone(),
    )
    .await
}
