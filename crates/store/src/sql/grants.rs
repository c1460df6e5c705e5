//! `auth_codes`, `grants`, `refresh_tokens`, `revoked_access_tokens` and
//! `client_assertion_jtis`: what the authorization server issues, and what
//! it must remember to refuse it a second time (redeemed codes, rotated
//! refresh tokens, revocations, used client assertion ids).
//!
//! The one-time uses (redeeming a code, rotating a refresh token, recording
//! an assertion's `jti`) each hinge on one conditional statement, which both
//! backends run atomically: of concurrent callers exactly one changes the
//! row, and the others find out from what it left.

use super::{Pool, SqlStore, insert_error};
use crate::{
    AuthCodeRecord, CodeRedemption, GrantRecord, RefreshRotation, RefreshTokenRecord, Revocation,
    StoreError,
};

/// Length of the stored hashes of codes and refresh tokens.
const HASH_LEN: usize = 32;

/// `auth_codes` columns in the order of [`AuthCodeRow`].
type AuthCodeRow = (
    String,
    Vec<u8>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

/// `grants` columns in the order of [`GrantRow`].
type GrantRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

const INSERT_CODE: &str = "INSERT INTO auth_codes \
    (tenant_id, code_hash, grant_id, client_id, subject, redirect_uri, resource, scope, \
    code_challenge, created_at, expires_at, redeemed_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/// One conditional UPDATE, so atomic on both backends: on PostgreSQL (read
/// committed) a concurrent redemption waits for this row's lock, then
/// re-checks `redeemed_at IS NULL` on the committed row and updates
/// nothing; SQLite takes its write lock at the statement's start.
/// RETURNING sees the row as updated.
const REDEEM_CODE: &str = "UPDATE auth_codes SET redeemed_at = $3 \
    WHERE tenant_id = $1 AND code_hash = $2 AND redeemed_at IS NULL \
    RETURNING tenant_id, code_hash, grant_id, client_id, subject, redirect_uri, resource, \
    scope, code_challenge, created_at, expires_at, redeemed_at";
const SELECT_CODE: &str = "SELECT \
    tenant_id, code_hash, grant_id, client_id, subject, redirect_uri, resource, \
    scope, code_challenge, created_at, expires_at, redeemed_at \
    FROM auth_codes WHERE tenant_id = $1 AND code_hash = $2";
const DELETE_EXPIRED_CODES: &str =
    "DELETE FROM auth_codes WHERE tenant_id = $1 AND expires_at < $2";

const INSERT_GRANT: &str = "INSERT INTO grants \
    (tenant_id, grant_id, client_id, subject, resource, scope, created_at, revoked_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const SELECT_GRANT: &str = "SELECT \
    tenant_id, grant_id, client_id, subject, resource, scope, created_at, revoked_at \
    FROM grants WHERE tenant_id = $1 AND grant_id = $2";
const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens \
    (tenant_id, token_hash, grant_id, created_at, expires_at, rotated_at) \
    VALUES ($1, $2, $3, $4, $5, $6)";
/// Rotation, step 1: claims the old token if it is current. As with
/// [`REDEEM_CODE`], a concurrent rotation of the same token on PostgreSQL
/// waits for the row lock, re-checks `rotated_at IS NULL` on the committed
/// row and updates nothing; on SQLite `BEGIN IMMEDIATE` already runs
/// rotations one after the other. `$4` is the rotation time.
const CLAIM_REFRESH: &str = "UPDATE refresh_tokens SET rotated_at = $4 \
    WHERE tenant_id = $1 AND token_hash = $2 AND rotated_at IS NULL AND expires_at > $4 \
    AND EXISTS (SELECT 1 FROM grants \
        WHERE grants.tenant_id = refresh_tokens.tenant_id \
        AND grants.grant_id = refresh_tokens.grant_id \
        AND grants.client_id = $3 AND grants.revoked_at IS NULL \
        AND EXISTS (SELECT 1 FROM users \
            WHERE users.tenant_id = grants.tenant_id AND users.username = grants.subject \
            AND users.disabled_at IS NULL)) \
    RETURNING grant_id";
/// The grant of a token of client `$3` that was rotated already, of an
/// enabled user: reuse.
const GRANT_OF_ROTATED_REFRESH: &str = "SELECT \
    g.tenant_id, g.grant_id, g.client_id, g.subject, g.resource, g.scope, g.created_at, \
    g.revoked_at \
    FROM refresh_tokens t JOIN grants g ON g.tenant_id = t.tenant_id AND g.grant_id = t.grant_id \
    WHERE t.tenant_id = $1 AND t.token_hash = $2 AND g.client_id = $3 \
    AND t.rotated_at IS NOT NULL \
    AND EXISTS (SELECT 1 FROM users u \
        WHERE u.tenant_id = g.tenant_id AND u.username = g.subject AND u.disabled_at IS NULL)";
const GRANT_OF_REFRESH: &str = "SELECT \
    g.tenant_id, g.grant_id, g.client_id, g.subject, g.resource, g.scope, g.created_at, \
    g.revoked_at \
    FROM refresh_tokens t JOIN grants g ON g.tenant_id = t.tenant_id AND g.grant_id = t.grant_id \
    WHERE t.tenant_id = $1 AND t.token_hash = $2";
pub(super) const REVOKE_GRANT: &str = "UPDATE grants SET revoked_at = $3 \
    WHERE tenant_id = $1 AND grant_id = $2 AND revoked_at IS NULL";
/// `$4` NULL: on every resource.
const REVOKE_GRANTS_OF: &str = "UPDATE grants SET revoked_at = $5 \
    WHERE tenant_id = $1 AND subject = $2 AND client_id = $3 \
    AND ($4 IS NULL OR resource = $4) AND revoked_at IS NULL";
/// A second revocation of the same token keeps the first one's times.
const REVOKE_ACCESS_TOKEN: &str = "INSERT INTO revoked_access_tokens \
    (tenant_id, jti, revoked_at, expires_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (tenant_id, jti) DO NOTHING";
/// Ties in time are ordered grants first, then by id, so that the order is
/// the same on every poll.
const REVOCATIONS_SINCE: &str = "SELECT 'grant' AS kind, grant_id AS id, revoked_at \
    FROM grants WHERE tenant_id = $1 AND revoked_at >= $2 \
    UNION ALL \
    SELECT 'token' AS kind, jti AS id, revoked_at \
    FROM revoked_access_tokens WHERE tenant_id = $1 AND revoked_at >= $2 \
    ORDER BY revoked_at, kind, id";
/// Deletes the tokens of the grants [`DELETE_REVOKED_GRANTS`] deletes too,
/// rather than leaving them to the foreign key's cascade, whose rows no
/// backend counts.
const DELETE_EXPIRED_REFRESH: &str = "DELETE FROM refresh_tokens \
    WHERE tenant_id = $1 AND (expires_at < $2 OR grant_id IN \
        (SELECT grant_id FROM grants WHERE tenant_id = $1 AND revoked_at < $2))";
const DELETE_REVOKED_GRANTS: &str = "DELETE FROM grants WHERE tenant_id = $1 AND revoked_at < $2";
const DELETE_EXPIRED_ACCESS_REVOCATIONS: &str =
    "DELETE FROM revoked_access_tokens WHERE tenant_id = $1 AND expires_at < $2";

/// One statement, so atomic on both backends: PostgreSQL's `ON CONFLICT`
/// either inserts or, if a row with this key exists or is being inserted,
/// waits for it to commit and then updates it only if the WHERE holds on
/// the committed row; SQLite takes its write lock at the statement's start.
/// A row expired before `$5` (now) is taken over. Exactly one row changes
/// when the `jti` is new or expired, none on a replay.
const RECORD_ASSERTION_JTI: &str = "INSERT INTO client_assertion_jtis \
    (tenant_id, client_id, jti, expires_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (tenant_id, client_id, jti) DO UPDATE SET expires_at = excluded.expires_at \
    WHERE client_assertion_jtis.expires_at < $5";
const DELETE_EXPIRED_ASSERTION_JTIS: &str =
    "DELETE FROM client_assertion_jtis WHERE tenant_id = $1 AND expires_at < $2";

/// [`INSERT_GRANT`] with `$rec` bound, for either backend.
macro_rules! insert_grant_query {
    ($rec:expr) => {
        sqlx::query(INSERT_GRANT)
            .bind($rec.tenant_id.as_str())
            .bind($rec.grant_id.as_str())
            .bind($rec.client_id.as_str())
            .bind($rec.subject.as_str())
            .bind($rec.resource.as_str())
            .bind($rec.scope.as_str())
            .bind($rec.created_at)
            .bind($rec.revoked_at)
    };
}

/// [`INSERT_REFRESH`] with `$rec` bound, for either backend.
macro_rules! insert_refresh_query {
    ($rec:expr) => {
        sqlx::query(INSERT_REFRESH)
            .bind($rec.tenant_id.as_str())
            .bind($rec.token_hash.as_slice())
            .bind($rec.grant_id.as_str())
            .bind($rec.created_at)
            .bind($rec.expires_at)
            .bind($rec.rotated_at)
    };
}

pub(super) async fn insert_code(store: &SqlStore, rec: &AuthCodeRecord) -> Result<(), StoreError> {
    check_hash(&rec.code_hash, "a code hash is 32 bytes")?;
    with_writer!(store, pool => {
        sqlx::query(INSERT_CODE)
            .bind(rec.tenant_id.as_str())
            .bind(rec.code_hash.as_slice())
            .bind(rec.grant_id.as_str())
            .bind(rec.client_id.as_str())
            .bind(rec.subject.as_str())
            .bind(rec.redirect_uri.as_str())
            .bind(rec.resource.as_str())
            .bind(rec.scope.as_str())
            .bind(rec.code_challenge.as_str())
            .bind(rec.created_at)
            .bind(rec.expires_at)
            .bind(rec.redeemed_at)
            .execute(pool)
            .await
            .map(drop)
    })
    .map_err(insert_error)
}

pub(super) async fn redeem_code(
    store: &SqlStore,
    tenant: &str,
    code_hash: &[u8],
    at: i64,
) -> Result<CodeRedemption, StoreError> {
    let redeemed = with_writer!(store, pool => {
        sqlx::query_as::<_, AuthCodeRow>(REDEEM_CODE)
            .bind(tenant)
            .bind(code_hash)
            .bind(at)
            .fetch_optional(pool)
            .await
    })?;
    if let Some(row) = redeemed {
        return Ok(CodeRedemption::Fresh(code_from_row(row)));
    }
    // Nothing updated: redeemed before (a rival's redemption has committed:
    // on PostgreSQL the UPDATE waited for it, and this later statement sees
    // it), or no such code.
    let existing = with_pool!(store, pool => {
        sqlx::query_as::<_, AuthCodeRow>(SELECT_CODE)
            .bind(tenant)
            .bind(code_hash)
            .fetch_optional(pool)
            .await
    })?;
    Ok(match existing {
        Some(row) => CodeRedemption::Replayed(code_from_row(row)),
        // Also a code deleted (expired) between the two statements.
        None => CodeRedemption::Unknown,
    })
}

pub(super) async fn delete_expired_codes(
    store: &SqlStore,
    tenant: &str,
    before: i64,
) -> Result<u64, StoreError> {
    let deleted = with_writer!(store, pool => {
        sqlx::query(DELETE_EXPIRED_CODES)
            .bind(tenant)
            .bind(before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(deleted)
}

pub(super) async fn insert(
    store: &SqlStore,
    grant: &GrantRecord,
    refresh: Option<&RefreshTokenRecord>,
) -> Result<(), StoreError> {
    if let Some(refresh) = refresh {
        if refresh.tenant_id != grant.tenant_id {
            return Err(StoreError::InvalidRecord(
                "the refresh token belongs to another tenant than its grant",
            ));
        }
        if refresh.grant_id != grant.grant_id {
            return Err(StoreError::InvalidRecord(
                "the refresh token belongs to another grant",
            ));
        }
        check_hash(&refresh.token_hash, "a refresh token hash is 32 bytes")?;
    }
    with_write_tx!(store, tx => {
        insert_grant_query!(grant)
            .execute(&mut *tx)
            .await
            .map_err(insert_error)?;
        if let Some(refresh) = refresh {
            insert_refresh_query!(refresh)
                .execute(&mut *tx)
                .await
                .map_err(insert_error)?;
        }
        tx.commit().await?;
        Ok(())
    })
}

pub(super) async fn get(
    store: &SqlStore,
    tenant: &str,
    grant_id: &str,
) -> Result<Option<GrantRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, GrantRow>(SELECT_GRANT)
            .bind(tenant)
            .bind(grant_id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(grant_from_row))
}

pub(super) async fn rotate_refresh(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
    old_hash: &[u8],
    new: &RefreshTokenRecord,
    at: i64,
) -> Result<RefreshRotation, StoreError> {
    if new.tenant_id != tenant {
        return Err(StoreError::InvalidRecord(
            "the new refresh token belongs to another tenant",
        ));
    }
    check_hash(&new.token_hash, "a refresh token hash is 32 bytes")?;
    with_write_tx!(store, tx => {
        let claimed = sqlx::query_scalar::<_, String>(CLAIM_REFRESH)
            .bind(tenant)
            .bind(old_hash)
            .bind(client_id)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(grant_id) = claimed else {
            // Not current. If that is because it was rotated, this later
            // statement sees the rotation: on PostgreSQL the claim waited
            // for a rival rotation to commit before finding `rotated_at` set.
            let reused = sqlx::query_as::<_, GrantRow>(GRANT_OF_ROTATED_REFRESH)
                .bind(tenant)
                .bind(old_hash)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = reused else {
                // Dropping `tx` rolls back (nothing was changed anyway).
                return Ok(RefreshRotation::Invalid);
            };
            let grant = grant_from_row(row);
            // A no-op if the grant was revoked already: the first time stays.
            sqlx::query(REVOKE_GRANT)
                .bind(tenant)
                .bind(grant.grant_id.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshRotation::Reused(grant));
        };
        if new.grant_id != grant_id {
            return Err(StoreError::InvalidRecord(
                "the new refresh token belongs to another grant",
            ));
        }
        let grant = sqlx::query_as::<_, GrantRow>(SELECT_GRANT)
            .bind(tenant)
            .bind(grant_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(grant_from_row);
        // On PostgreSQL the claim's EXISTS saw the grant as of the
        // statement's start; a revocation committed since then is seen here,
        // and the rotation is undone as if it had come after it.
        let Some(grant) = grant.filter(|g| g.revoked_at.is_none() && g.client_id == client_id)
        else {
            return Ok(RefreshRotation::Invalid);
        };
        insert_refresh_query!(new)
            .execute(&mut *tx)
            .await
            .map_err(insert_error)?;
        tx.commit().await?;
        Ok(RefreshRotation::Rotated(grant))
    })
}

const SELECT_REFRESH: &str = "SELECT \
    tenant_id, token_hash, grant_id, created_at, expires_at, rotated_at \
    FROM refresh_tokens WHERE tenant_id = $1 AND token_hash = $2";

pub(super) async fn refresh_token(
    store: &SqlStore,
    tenant: &str,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, (String, Vec<u8>, String, i64, i64, Option<i64>)>(SELECT_REFRESH)
            .bind(tenant)
            .bind(token_hash)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(
        |(tenant_id, token_hash, grant_id, created_at, expires_at, rotated_at)| {
            RefreshTokenRecord {
                tenant_id,
                token_hash,
                grant_id,
                created_at,
                expires_at,
                rotated_at,
            }
        },
    ))
}

pub(super) async fn of_refresh_token(
    store: &SqlStore,
    tenant: &str,
    token_hash: &[u8],
) -> Result<Option<GrantRecord>, StoreError> {
    let row = with_pool!(store, pool => {
        sqlx::query_as::<_, GrantRow>(GRANT_OF_REFRESH)
            .bind(tenant)
            .bind(token_hash)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(grant_from_row))
}

pub(super) async fn revoke(
    store: &SqlStore,
    tenant: &str,
    grant_id: &str,
    at: i64,
) -> Result<bool, StoreError> {
    // One conditional UPDATE: of two racing revocations exactly one wins
    // and its time is kept.
    let updated = with_writer!(store, pool => {
        sqlx::query(REVOKE_GRANT)
            .bind(tenant)
            .bind(grant_id)
            .bind(at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated == 1)
}

pub(super) async fn revoke_of(
    store: &SqlStore,
    tenant: &str,
    subject: &str,
    client_id: &str,
    resource: Option<&str>,
    at: i64,
) -> Result<u64, StoreError> {
    let updated = with_writer!(store, pool => {
        sqlx::query(REVOKE_GRANTS_OF)
            .bind(tenant)
            .bind(subject)
            .bind(client_id)
            .bind(resource)
            .bind(at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(updated)
}

pub(super) async fn revoke_access_token(
    store: &SqlStore,
    tenant: &str,
    jti: &str,
    revoked_at: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    with_writer!(store, pool => {
        sqlx::query(REVOKE_ACCESS_TOKEN)
            .bind(tenant)
            .bind(jti)
            .bind(revoked_at)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

pub(super) async fn revocations_since(
    store: &SqlStore,
    tenant: &str,
    since: i64,
) -> Result<Vec<Revocation>, StoreError> {
    let rows = with_pool!(store, pool => {
        sqlx::query_as::<_, (String, String, i64)>(REVOCATIONS_SINCE)
            .bind(tenant)
            .bind(since)
            .fetch_all(pool)
            .await
    })?;
    rows.into_iter()
        .map(|(kind, id, revoked_at)| match kind.as_str() {
            "grant" => Ok(Revocation::Grant {
                grant_id: id,
                revoked_at,
            }),
            "token" => Ok(Revocation::Token {
                jti: id,
                revoked_at,
            }),
            // Unreachable: the query writes the kind itself.
            other => Err(StoreError::Database(sqlx::Error::Decode(
                format!("unknown revocation kind {other:?}").into(),
            ))),
        })
        .collect()
}

pub(super) async fn delete_expired_tokens(
    store: &SqlStore,
    tenant: &str,
    before: i64,
) -> Result<u64, StoreError> {
    // One transaction for a consistent count. On PostgreSQL each statement
    // sees the commits made before it started, so a grant revoked (before
    // `before`) between the first two statements loses its tokens through
    // the cascade, uncounted; the count is for logs, and nothing is missed.
    with_write_tx!(store, tx => {
        let mut deleted = 0;
        for query in [
            DELETE_EXPIRED_REFRESH,
            DELETE_REVOKED_GRANTS,
            DELETE_EXPIRED_ACCESS_REVOCATIONS,
        ] {
            deleted += sqlx::query(query)
                .bind(tenant)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    })
}

pub(super) async fn record_assertion_jti(
    store: &SqlStore,
    tenant: &str,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    // An entry still counts at `now == expires_at`: when in doubt, refuse
    // the replay.
    let recorded = with_writer!(store, pool => {
        sqlx::query(RECORD_ASSERTION_JTI)
            .bind(tenant)
            .bind(client_id)
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    // Housekeeping: nothing else deletes used `jti`s, and every accepted
    // assertion adds one. The index makes this cheap when there is nothing
    // to delete; a rival deleting the same rows only makes it wait.
    with_writer!(store, pool => {
        sqlx::query(DELETE_EXPIRED_ASSERTION_JTIS)
            .bind(tenant)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(recorded == 1)
}

/// Refuses a hash of the wrong length before the database's CHECK does, so
/// that the caller learns which rule failed.
pub(super) fn check_hash(hash: &[u8], invalid: &'static str) -> Result<(), StoreError> {
    if hash.len() == HASH_LEN {
        Ok(())
    } else {
        Err(StoreError::InvalidRecord(invalid))
    }
}

fn code_from_row(row: AuthCodeRow) -> AuthCodeRecord {
    let (
        tenant_id,
        code_hash,
        grant_id,
        client_id,
        subject,
        redirect_uri,
        resource,
        scope,
        code_challenge,
        created_at,
        expires_at,
        redeemed_at,
    ) = row;
    AuthCodeRecord {
        tenant_id,
        code_hash,
        grant_id,
        client_id,
        subject,
        redirect_uri,
        resource,
        scope,
        code_challenge,
        created_at,
        expires_at,
        redeemed_at,
    }
}

pub(super) fn grant_from_row(row: GrantRow) -> GrantRecord {
    let (tenant_id, grant_id, client_id, subject, resource, scope, created_at, revoked_at) = row;
    GrantRecord {
        tenant_id,
        grant_id,
        client_id,
        subject,
        resource,
        scope,
        created_at,
        revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_byte_hashes_pass() {
        assert!(check_hash(&[0; 32], "why").is_ok());
        for len in [0, 16, 31, 33, 64] {
            let err = check_hash(&vec![0; len], "why").unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord("why")), "{len}");
        }
    }
}
