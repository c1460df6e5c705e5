//! `signing_keys`: the authorization server's token-signing keys and their
//! rotation.

use super::{Pool, SqlStore, insert_error};
use crate::{KeyState, SigningKeyRecord, StoreError};

/// `signing_keys` columns in the order of [`SigningKeyRow`].
type SigningKeyRow = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const INSERT: &str = "INSERT INTO signing_keys \
    (tenant_id, kid, alg, state, private_key_enc, public_jwk, \
    created_at, activated_at, retired_at, publish_until) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const LIST: &str = "SELECT \
    tenant_id, kid, alg, state, private_key_enc, public_jwk, \
    created_at, activated_at, retired_at, publish_until \
    FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid";
/// Rotation, step 1: claims the next key. On PostgreSQL (read committed)
/// this locks its row, so a concurrent rotation waits here, then re-checks
/// the condition on the committed row, finds the key no longer `next` and
/// updates nothing. On SQLite, `BEGIN IMMEDIATE` already runs rotations one
/// after the other.
const CLAIM_NEXT: &str = "UPDATE signing_keys SET activated_at = $3 \
    WHERE tenant_id = $1 AND kid = $2 AND state = 'next'";
/// Rotation, step 2, before step 3 so the one-current index holds after
/// every statement (PostgreSQL checks unique indexes per statement).
const RETIRE_CURRENT: &str = "UPDATE signing_keys \
    SET state = 'retired', retired_at = $2, publish_until = $3 \
    WHERE tenant_id = $1 AND state = 'current'";
/// Rotation, step 3; step 4 inserts the new next key.
const PROMOTE_NEXT: &str = "UPDATE signing_keys SET state = 'current' \
    WHERE tenant_id = $1 AND kid = $2 AND state = 'next'";
const DELETE_EXPIRED: &str = "DELETE FROM signing_keys \
    WHERE tenant_id = $1 AND state = 'retired' AND publish_until < $2";

/// [`INSERT`] with `$rec` bound, for either backend.
macro_rules! insert_query {
    ($rec:expr) => {
        sqlx::query(INSERT)
            .bind($rec.tenant_id.as_str())
            .bind($rec.kid.as_str())
            .bind($rec.alg.as_str())
            .bind(state_text($rec.state))
            .bind($rec.private_key_enc.as_slice())
            .bind($rec.public_jwk.as_str())
            .bind($rec.created_at)
            .bind($rec.activated_at)
            .bind($rec.retired_at)
            .bind($rec.publish_until)
    };
}

pub(super) async fn insert(store: &SqlStore, rec: &SigningKeyRecord) -> Result<(), StoreError> {
    with_writer!(store, pool => insert_query!(rec).execute(pool).await.map(drop))
        .map_err(insert_error)
}

pub(super) async fn list(
    store: &SqlStore,
    tenant: &str,
) -> Result<Vec<SigningKeyRecord>, StoreError> {
    let rows = with_pool!(store, pool => {
        sqlx::query_as::<_, SigningKeyRow>(LIST)
            .bind(tenant)
            .fetch_all(pool)
            .await
    })?;
    rows.into_iter().map(from_row).collect()
}

pub(super) async fn rotate(
    store: &SqlStore,
    tenant: &str,
    next_kid: &str,
    new_next: &SigningKeyRecord,
    now: i64,
    retire_publish_until: i64,
) -> Result<bool, StoreError> {
    if new_next.tenant_id != tenant {
        return Err(StoreError::InvalidRecord(
            "the new next key belongs to another tenant",
        ));
    }
    if new_next.state != KeyState::Next {
        return Err(StoreError::InvalidRecord(
            "the new next key is not in state `next`",
        ));
    }
    with_write_tx!(store, tx => {
        let claimed = sqlx::query(CLAIM_NEXT)
            .bind(tenant)
            .bind(next_kid)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            // Another rotation won, or `next_kid` was never next; dropping
            // `tx` rolls back (nothing was changed anyway).
            return Ok(false);
        }
        sqlx::query(RETIRE_CURRENT)
            .bind(tenant)
            .bind(now)
            .bind(retire_publish_until)
            .execute(&mut *tx)
            .await?;
        sqlx::query(PROMOTE_NEXT)
            .bind(tenant)
            .bind(next_kid)
            .execute(&mut *tx)
            .await?;
        insert_query!(new_next)
            .execute(&mut *tx)
            .await
            .map_err(insert_error)?;
        tx.commit().await?;
        Ok(true)
    })
}

pub(super) async fn delete_expired(
    store: &SqlStore,
    tenant: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let deleted = with_writer!(store, pool => {
        sqlx::query(DELETE_EXPIRED)
            .bind(tenant)
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(deleted)
}

/// The `state` column's text; the schema CHECKs it is one of these.
fn state_text(state: KeyState) -> &'static str {
    match state {
        KeyState::Next => "next",
        KeyState::Current => "current",
        KeyState::Retired => "retired",
    }
}

fn from_row(row: SigningKeyRow) -> Result<SigningKeyRecord, StoreError> {
    let (
        tenant_id,
        kid,
        alg,
        state,
        private_key_enc,
        public_jwk,
        created_at,
        activated_at,
        retired_at,
        publish_until,
    ) = row;
    let state = match state.as_str() {
        "next" => KeyState::Next,
        "current" => KeyState::Current,
        "retired" => KeyState::Retired,
        // Unreachable through the schema's CHECK, unless someone edits the
        // database by hand; refuse rather than guess.
        other => {
            return Err(StoreError::Database(sqlx::Error::Decode(
                format!("unknown signing key state {other:?}").into(),
            )));
        }
    };
    Ok(SigningKeyRecord {
        tenant_id,
        kid,
        alg,
        state,
        private_key_enc,
        public_jwk,
        created_at,
        activated_at,
        retired_at,
        publish_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> SigningKeyRow {
        let state = state.to_owned();
        (
            "t".into(),
            "k".into(),
            "ES256".into(),
            state,
            vec![1],
            "{}".into(),
            1,
            None,
            None,
            None,
        )
    }

    #[test]
    fn every_state_reads_back_as_written() {
        for state in [KeyState::Next, KeyState::Current, KeyState::Retired] {
            let rec = from_row(row(state_text(state))).unwrap();
            assert_eq!(rec.state, state);
        }
    }

    #[test]
    fn unknown_state_text_is_an_error_not_a_guess() {
        let err = from_row(row("Current")).unwrap_err();
        assert!(
            matches!(err, StoreError::Database(sqlx::Error::Decode(_))),
            "{err:?}"
        );
    }
}
