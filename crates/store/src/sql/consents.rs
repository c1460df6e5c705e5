//! `consents`: what each user let each client do on each resource.

use super::{Pool, SqlStore};
use crate::{ConsentRecord, StoreError};

/// `consents` columns in the order of [`ConsentRow`].
type ConsentRow = (String, String, String, String, String, i64);

/// One statement, so two racing consents for the same key both succeed and
/// the later one stays.
const UPSERT: &str = "INSERT INTO consents \
    (tenant_id, subject, client_id, resource, scope, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (tenant_id, subject, client_id, resource) \
    DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at";
const SELECT: &str = "SELECT \
    tenant_id, subject, client_id, resource, scope, created_at \
    FROM consents \
    WHERE tenant_id = $1 AND subject = $2 AND client_id = $3 AND resource = $4";
/// `$2` NULL: every subject.
const LIST: &str = "SELECT \
    tenant_id, subject, client_id, resource, scope, created_at \
    FROM consents WHERE tenant_id = $1 AND ($2 IS NULL OR subject = $2) \
    ORDER BY subject, client_id, resource";
/// `$4` NULL: for every resource.
const DELETE: &str = "DELETE FROM consents \
    WHERE tenant_id = $1 AND subject = $2 AND client_id = $3 \
    AND ($4 IS NULL OR resource = $4)";

pub(super) async fn upsert(store: &SqlStore, rec: &ConsentRecord) -> Result<(), StoreError> {
    with_writer!(store, pool => {
        sqlx::query(UPSERT)
            .bind(rec.tenant_id.as_str())
            .bind(rec.subject.as_str())
            .bind(rec.client_id.as_str())
            .bind(rec.resource.as_str())
            .bind(rec.scope.as_str())
            .bind(rec.created_at)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

pub(super) async fn get(
    store: &SqlStore,
    tenant: &str,
    subject: &str,
    client_id: &str,
    resource: &str,
) -> Result<Option<ConsentRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, ConsentRow>(SELECT)
            .bind(tenant)
            .bind(subject)
            .bind(client_id)
            .bind(resource)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(from_row))
}

pub(super) async fn list(
    store: &SqlStore,
    tenant: &str,
    subject: Option<&str>,
) -> Result<Vec<ConsentRecord>, StoreError> {
    let rows = with_pool!(store, pool => {
        sqlx::query_as::<_, ConsentRow>(LIST)
            .bind(tenant)
            .bind(subject)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub(super) async fn delete(
    store: &SqlStore,
    tenant: &str,
    subject: &str,
    client_id: &str,
    resource: Option<&str>,
) -> Result<u64, StoreError> {
    let deleted = with_writer!(store, pool => {
        sqlx::query(DELETE)
            .bind(tenant)
            .bind(subject)
            .bind(client_id)
            .bind(resource)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(deleted)
}

fn from_row(row: ConsentRow) -> ConsentRecord {
    let (tenant_id, subject, client_id, resource, scope, created_at) = row;
    ConsentRecord {
        tenant_id,
        subject,
        client_id,
        resource,
        scope,
        created_at,
    }
}
