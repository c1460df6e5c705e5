//! `oauth_clients`: the authorization server's registered clients.

use super::{Pool, SqlStore, insert_error};
use crate::{ClientRecord, StoreError};

/// `oauth_clients` columns in the order of [`ClientRow`].
type ClientRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<i64>,
    String,
    i64,
    Option<i64>,
);

const INSERT: &str = "INSERT INTO oauth_clients \
    (tenant_id, client_id, name, token_endpoint_auth_method, redirect_uris, grant_types, \
    scope, jwks, secret_hash, previous_secret_hash, previous_secret_valid_until, \
    origin, created_at, last_used_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
const SELECT: &str = "SELECT \
    tenant_id, client_id, name, token_endpoint_auth_method, redirect_uris, grant_types, \
    scope, jwks, secret_hash, previous_secret_hash, previous_secret_valid_until, \
    origin, created_at, last_used_at \
    FROM oauth_clients WHERE tenant_id = $1 AND client_id = $2";
const LIST: &str = "SELECT \
    tenant_id, client_id, name, token_endpoint_auth_method, redirect_uris, grant_types, \
    scope, jwks, secret_hash, previous_secret_hash, previous_secret_valid_until, \
    origin, created_at, last_used_at \
    FROM oauth_clients WHERE tenant_id = $1 ORDER BY created_at, client_id";
const DELETE: &str = "DELETE FROM oauth_clients WHERE tenant_id = $1 AND client_id = $2";
/// SET expressions all see the row as it was before the UPDATE (SQL
/// standard; PostgreSQL and SQLite alike), so the old hash moves to
/// `previous_secret_hash` while `secret_hash` gets the new one.
const ROTATE_SECRET: &str = "UPDATE oauth_clients SET \
    previous_secret_hash = secret_hash, \
    previous_secret_valid_until = CASE WHEN secret_hash IS NULL THEN NULL ELSE $4 END, \
    secret_hash = $3 \
    WHERE tenant_id = $1 AND client_id = $2";
const TOUCH: &str = "UPDATE oauth_clients SET last_used_at = $3 \
    WHERE tenant_id = $1 AND client_id = $2 \
    AND (last_used_at IS NULL OR last_used_at < $3)";
const DELETE_UNUSED_REGISTRATIONS: &str = "DELETE FROM oauth_clients \
    WHERE tenant_id = $1 AND origin = 'dcr' AND last_used_at IS NULL AND created_at < $2";

pub(super) async fn insert(store: &SqlStore, rec: &ClientRecord) -> Result<(), StoreError> {
    let redirect_uris = join_list(
        &rec.redirect_uris,
        "a redirect URI is empty or contains a newline",
    )?;
    let grant_types = join_list(
        &rec.grant_types,
        "a grant type is empty or contains a newline",
    )?;
    with_writer!(store, pool => {
        sqlx::query(INSERT)
            .bind(rec.tenant_id.as_str())
            .bind(rec.client_id.as_str())
            .bind(rec.name.as_str())
            .bind(rec.token_endpoint_auth_method.as_str())
            .bind(redirect_uris.as_str())
            .bind(grant_types.as_str())
            .bind(rec.scope.as_deref())
            .bind(rec.jwks.as_deref())
            .bind(rec.secret_hash.as_deref())
            .bind(rec.previous_secret_hash.as_deref())
            .bind(rec.previous_secret_valid_until)
            .bind(rec.origin.as_str())
            .bind(rec.created_at)
            .bind(rec.last_used_at)
            .execute(pool)
            .await
            .map(drop)
    })
    .map_err(insert_error)
}

pub(super) async fn get(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
) -> Result<Option<ClientRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, ClientRow>(SELECT)
            .bind(tenant)
            .bind(client_id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(from_row))
}

pub(super) async fn list(store: &SqlStore, tenant: &str) -> Result<Vec<ClientRecord>, StoreError> {
    let rows = with_pool!(store, pool => {
        sqlx::query_as::<_, ClientRow>(LIST)
            .bind(tenant)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub(super) async fn delete(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
) -> Result<bool, StoreError> {
    let deleted = with_writer!(store, pool => {
        sqlx::query(DELETE)
            .bind(tenant)
            .bind(client_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(deleted == 1)
}

pub(super) async fn rotate_secret(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
    new_hash: &[u8],
    old_valid_until: i64,
) -> Result<bool, StoreError> {
    // One UPDATE: atomic on both backends. Of two racing rotations the
    // second sees the first's hash as the one to keep as previous.
    let updated = with_writer!(store, pool => {
        sqlx::query(ROTATE_SECRET)
            .bind(tenant)
            .bind(client_id)
            .bind(new_hash)
            .bind(old_valid_until)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated == 1)
}

pub(super) async fn touch(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
    at: i64,
) -> Result<(), StoreError> {
    with_writer!(store, pool => {
        sqlx::query(TOUCH)
            .bind(tenant)
            .bind(client_id)
            .bind(at)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

pub(super) async fn delete_unused_registrations(
    store: &SqlStore,
    tenant: &str,
    created_before: i64,
) -> Result<u64, StoreError> {
    let deleted = with_writer!(store, pool => {
        sqlx::query(DELETE_UNUSED_REGISTRATIONS)
            .bind(tenant)
            .bind(created_before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(deleted)
}

/// Newline-separated, which is unambiguous as long as no element is empty
/// (`[""]` would read back as `[]`) or contains a newline.
fn join_list(items: &[String], invalid: &'static str) -> Result<String, StoreError> {
    if items
        .iter()
        .any(|item| item.is_empty() || item.contains('\n'))
    {
        return Err(StoreError::InvalidRecord(invalid));
    }
    Ok(items.join("\n"))
}

fn split_list(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').map(str::to_owned).collect()
}

fn from_row(row: ClientRow) -> ClientRecord {
    let (
        tenant_id,
        client_id,
        name,
        token_endpoint_auth_method,
        redirect_uris,
        grant_types,
        scope,
        jwks,
        secret_hash,
        previous_secret_hash,
        previous_secret_valid_until,
        origin,
        created_at,
        last_used_at,
    ) = row;
    ClientRecord {
        tenant_id,
        client_id,
        name,
        token_endpoint_auth_method,
        redirect_uris: split_list(&redirect_uris),
        grant_types: split_list(&grant_types),
        scope,
        jwks,
        secret_hash,
        previous_secret_hash,
        previous_secret_valid_until,
        origin,
        created_at,
        last_used_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_through_their_column_text() {
        let lists: [&[&str]; 4] = [
            &[],
            &["https://a.example/cb"],
            &["https://a.example/cb", "http://127.0.0.1/cb?x=1 2"],
            &["authorization_code", "refresh_token", "client_credentials"],
        ];
        for list in lists {
            let items: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            let text = join_list(&items, "invalid").unwrap();
            assert_eq!(split_list(&text), items, "{text:?}");
        }
    }

    #[test]
    fn list_elements_that_would_be_ambiguous_are_rejected() {
        for list in [vec![""], vec!["a", ""], vec!["a\nb"], vec!["a\n"]] {
            let items: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            let err = join_list(&items, "why").unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord("why")), "{list:?}");
        }
    }
}
