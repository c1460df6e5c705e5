//! `users`: local accounts of the authorization server, and their login
//! throttling.

use super::{Pool, SqlStore, insert_error};
use crate::{LoginThrottle, StoreError, UserRecord, valid_username};

/// `users` columns in the order of [`UserRow`].
type UserRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

const INSERT: &str = "INSERT INTO users \
    (tenant_id, username, password_hash, created_at, disabled_at, password_changed_at, \
    failed_logins, locked_until, last_login_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const SELECT: &str = "SELECT \
    tenant_id, username, password_hash, created_at, disabled_at, password_changed_at, \
    failed_logins, locked_until, last_login_at \
    FROM users WHERE tenant_id = $1 AND username = $2";
const LIST: &str = "SELECT \
    tenant_id, username, password_hash, created_at, disabled_at, password_changed_at, \
    failed_logins, locked_until, last_login_at \
    FROM users WHERE tenant_id = $1 ORDER BY username";
/// `$3` NULL enables; otherwise an earlier disable time is kept.
const SET_DISABLED: &str = "UPDATE users \
    SET disabled_at = CASE WHEN $3 IS NULL THEN NULL ELSE COALESCE(disabled_at, $3) END \
    WHERE tenant_id = $1 AND username = $2";
const SET_PASSWORD: &str = "UPDATE users \
    SET password_hash = $3, password_changed_at = $4, failed_logins = 0, locked_until = NULL \
    WHERE tenant_id = $1 AND username = $2";
/// One statement, so atomic on both backends: PostgreSQL locks the row and
/// a concurrent UPDATE re-reads the committed count; SQLite takes its write
/// lock at the statement's start. SET expressions see the row as it was
/// (`failed_logins` is the old count); RETURNING sees it as it is.
/// `$4` is `lock_after`, `$5` the end of a new lock.
const RECORD_FAILURE: &str = "UPDATE users SET \
    failed_logins = failed_logins + 1, \
    locked_until = CASE \
        WHEN failed_logins + 1 >= $4 AND (locked_until IS NULL OR locked_until < $5) THEN $5 \
        ELSE locked_until END \
    WHERE tenant_id = $1 AND username = $2 \
    RETURNING failed_logins, locked_until";
const RECORD_SUCCESS: &str = "UPDATE users \
    SET failed_logins = 0, locked_until = NULL, last_login_at = $3 \
    WHERE tenant_id = $1 AND username = $2";

pub(super) async fn insert(store: &SqlStore, rec: &UserRecord) -> Result<(), StoreError> {
    if !valid_username(&rec.username) {
        return Err(StoreError::InvalidRecord(
            "a username is 1 to 64 characters of A-Z a-z 0-9 . _ @ -",
        ));
    }
    with_writer!(store, pool => {
        sqlx::query(INSERT)
            .bind(rec.tenant_id.as_str())
            .bind(rec.username.as_str())
            .bind(rec.password_hash.as_str())
            .bind(rec.created_at)
            .bind(rec.disabled_at)
            .bind(rec.password_changed_at)
            .bind(i64::from(rec.failed_logins))
            .bind(rec.locked_until)
            .bind(rec.last_login_at)
            .execute(pool)
            .await
            .map(drop)
    })
    .map_err(insert_error)
}

pub(super) async fn get(
    store: &SqlStore,
    tenant: &str,
    username: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, UserRow>(SELECT)
            .bind(tenant)
            .bind(username)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(from_row))
}

pub(super) async fn list(store: &SqlStore, tenant: &str) -> Result<Vec<UserRecord>, StoreError> {
    let rows = with_pool!(store, pool => {
        sqlx::query_as::<_, UserRow>(LIST)
            .bind(tenant)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub(super) async fn set_disabled(
    store: &SqlStore,
    tenant: &str,
    username: &str,
    disabled_at: Option<i64>,
) -> Result<bool, StoreError> {
    let updated = with_writer!(store, pool => {
        sqlx::query(SET_DISABLED)
            .bind(tenant)
            .bind(username)
            .bind(disabled_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated == 1)
}

pub(super) async fn set_password(
    store: &SqlStore,
    tenant: &str,
    username: &str,
    password_hash: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let updated = with_writer!(store, pool => {
        sqlx::query(SET_PASSWORD)
            .bind(tenant)
            .bind(username)
            .bind(password_hash)
            .bind(at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated == 1)
}

pub(super) async fn record_failure(
    store: &SqlStore,
    tenant: &str,
    username: &str,
    at: i64,
    lock_after: u32,
    lock_for_secs: i64,
) -> Result<Option<LoginThrottle>, StoreError> {
    if lock_after == 0 {
        return Err(StoreError::InvalidRecord(
            "lock_after must be at least 1 failed login",
        ));
    }
    if lock_for_secs < 0 {
        return Err(StoreError::InvalidRecord(
            "lock_for_secs must not be negative",
        ));
    }
    // Saturates: a lock "until the end of time" is what an absurd duration means.
    let lock_end = at.saturating_add(lock_for_secs);
    let row = with_writer!(store, pool => {
        sqlx::query_as::<_, (i64, Option<i64>)>(RECORD_FAILURE)
            .bind(tenant)
            .bind(username)
            .bind(at)
            .bind(i64::from(lock_after))
            .bind(lock_end)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(|(failed_logins, locked_until)| LoginThrottle {
        failed_logins: count(failed_logins),
        locked_until,
    }))
}

pub(super) async fn record_success(
    store: &SqlStore,
    tenant: &str,
    username: &str,
    at: i64,
) -> Result<(), StoreError> {
    with_writer!(store, pool => {
        sqlx::query(RECORD_SUCCESS)
            .bind(tenant)
            .bind(username)
            .bind(at)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// The column is 64-bit and CHECKed non-negative; a count past `u32::MAX`
/// (four billion failures) reads as `u32::MAX`, which is locked all the same.
fn count(failed_logins: i64) -> u32 {
    u32::try_from(failed_logins.max(0)).unwrap_or(u32::MAX)
}

fn from_row(row: UserRow) -> UserRecord {
    let (
        tenant_id,
        username,
        password_hash,
        created_at,
        disabled_at,
        password_changed_at,
        failed_logins,
        locked_until,
        last_login_at,
    ) = row;
    UserRecord {
        tenant_id,
        username,
        password_hash,
        created_at,
        disabled_at,
        password_changed_at,
        failed_logins: count(failed_logins),
        locked_until,
        last_login_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_counts_beyond_u32_saturate() {
        assert_eq!(count(0), 0);
        assert_eq!(count(7), 7);
        assert_eq!(count(i64::from(u32::MAX) + 1), u32::MAX);
        assert_eq!(count(-1), 0);
    }
}
