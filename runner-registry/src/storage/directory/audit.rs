//! The directory's audit log as the storage contract's [`Audit`]: the file of `log`,
//! written and read on the blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use runner_core::Result;

use super::Directory;
use crate::audit::{AuditEntry, AuditQuery};
use crate::blocking::blocking;
use crate::storage::Audit;

#[async_trait]
impl Audit for Directory {
    async fn record(&self, entry: &AuditEntry) -> Result<()> {
        let (log, entry) = (Arc::clone(&self.audit), entry.clone());
        blocking(move || log.append(&entry)).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let (log, query) = (Arc::clone(&self.audit), query.clone());
        blocking(move || log.read(&query)).await
    }
}
