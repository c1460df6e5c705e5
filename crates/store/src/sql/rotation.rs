//! Refresh token rotation on SQLite, group-committed.
//!
//! SQLite commits one write transaction at a time, each with an fsync
//! (`synchronous=FULL`). One transaction per rotation caps rotations at
//! the disk's fsync rate, shared with every other write. So concurrent
//! [`Store::rotate_refresh_token`](crate::Store::rotate_refresh_token)
//! calls are queued, and one task commits what is queued in one
//! transaction ([`rotate_batch`]), then answers each caller; while it
//! commits, the next batch gathers. The task runs while there is work and
//! ends when the queue is empty; the next call starts another. It is
//! spawned rather than run by a caller, so that a caller who stops waiting
//! (a dropped request) cannot cut a batch short for the others.
//!
//! Inside the transaction the exchanges run one after the other, each
//! seeing what the ones before it wrote: a token presented twice in one
//! batch is rotated by the first and reused by the second, exactly as if
//! the two had come in separate transactions. The write lock is held from
//! `BEGIN IMMEDIATE` on, so each exchange reads the token and its grant and
//! then decides, with nothing able to change them in between.

use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{Sqlite, Transaction};
use tokio::sync::oneshot;

use super::grants::{REVOKE_GRANT, check_hash, grant_from_row};
use super::{WritePool, insert_error};
use crate::{RefreshExchange, RefreshRotation, StoreError};

/// Exchanges per transaction at most; more wait for the next one.
const MAX_BATCH: usize = 256;

/// The token, its grant and the grant's user, in [`TokenRow`] order: the
/// grant's columns, the token's `expires_at` and `rotated_at`, and whether
/// the subject is a user whose account is enabled.
const SELECT_TOKEN_AND_GRANT: &str = "SELECT \
    g.tenant_id, g.grant_id, g.client_id, g.subject, g.resource, g.scope, g.created_at, \
    g.revoked_at, t.expires_at, t.rotated_at, \
    (u.username IS NOT NULL AND u.disabled_at IS NULL) AS user_enabled \
    FROM refresh_tokens t JOIN grants g ON g.tenant_id = t.tenant_id AND g.grant_id = t.grant_id \
    LEFT JOIN users u ON u.tenant_id = g.tenant_id AND u.username = g.subject \
    WHERE t.tenant_id = $1 AND t.token_hash = $2";
/// The successor, then the old token marked rotated: two statements sent
/// as one (sqlx runs them in turn, binding `$N` from one argument list),
/// which saves a round trip to the connection's thread. If the first fails
/// (the successor's hash is taken), SQLite undoes just that statement and
/// the second does not run: the old token stays current.
const STORE_SUCCESSOR: &str = "INSERT INTO refresh_tokens \
    (tenant_id, token_hash, grant_id, created_at, expires_at, rotated_at) \
    VALUES ($1, $3, $4, $5, $6, $7); \
    UPDATE refresh_tokens SET rotated_at = $8 \
    WHERE tenant_id = $1 AND token_hash = $2 AND rotated_at IS NULL";

/// [`SELECT_TOKEN_AND_GRANT`]'s columns.
type TokenRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    bool,
);

type Answer = oneshot::Sender<Result<RefreshRotation, StoreError>>;

/// Rotations waiting for the next batch, and whether a task commits them.
#[derive(Default)]
pub(super) struct RotationQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<(RefreshExchange, Answer)>,
    committing: bool,
}

impl RotationQueue {
    /// Queues `exchange` for the next batch on `pool` (the write
    /// connection) and waits for its result.
    pub(super) async fn rotate(
        self: &Arc<Self>,
        pool: &Arc<WritePool>,
        exchange: RefreshExchange,
    ) -> Result<RefreshRotation, StoreError> {
        check(&exchange)?;
        let (answer, result) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.pending.push((exchange, answer));
            !mem::replace(&mut state.committing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).commit_all(Arc::clone(pool)));
        }
        // The committing task answers every exchange it takes, unless it
        // panicked (a bug): then the sender is dropped and nothing is known.
        result
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // The state is a queue and a flag, consistent after every statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits batches until the queue is empty.
    async fn commit_all(self: Arc<Self>, pool: Arc<WritePool>) {
        let mut committing = Committing {
            queue: &self,
            finished: false,
        };
        // Callers woken by the same event (answers of the previous batch,
        // a burst of requests) are queueing: let them join this batch.
        tokio::task::yield_now().await;
        loop {
            let batch = {
                let mut state = self.lock();
                let n = state.pending.len().min(MAX_BATCH);
                if n == 0 {
                    // Under the same lock as the check: a rotation queued
                    // after it finds no task and starts one.
                    state.committing = false;
                    committing.finished = true;
                    return;
                }
                state.pending.drain(..n).collect::<Vec<_>>()
            };
            let (exchanges, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match rotate_batch(&pool, &exchanges).await {
                Ok(results) => {
                    for (answer, result) in answers.into_iter().zip(results) {
                        // The caller may have stopped waiting: its rotation
                        // is committed all the same.
                        let _ = answer.send(result);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, exchanges = answers.len(), "refresh token rotation batch failed");
                    let err = Arc::new(err);
                    for answer in answers {
                        let _ = answer.send(Err(StoreError::Batch(Arc::clone(&err))));
                    }
                }
            }
        }
    }
}

/// If the committing task ends without finishing (a panic, a bug): lets
/// the next caller start a new task, and fails the rotations still queued
/// rather than leave them waiting (dropping their senders answers them).
struct Committing<'a> {
    queue: &'a RotationQueue,
    finished: bool,
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.queue.lock();
            state.committing = false;
            state.pending.clear();
        }
    }
}

/// The exchanges of `batch` in one transaction on `pool` (the write
/// connection). `Err`: nothing was committed.
pub(super) async fn rotate_batch(
    pool: &WritePool,
    batch: &[RefreshExchange],
) -> Result<Vec<Result<RefreshRotation, StoreError>>, StoreError> {
    let pool = pool.lock().await;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for exchange in batch {
        let result = match check(exchange) {
            Ok(()) => exchange_in(&mut tx, exchange).await?,
            Err(err) => Err(err),
        };
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

/// What can be refused before the database is asked.
fn check(exchange: &RefreshExchange) -> Result<(), StoreError> {
    if exchange.new.tenant_id != exchange.tenant_id {
        return Err(StoreError::InvalidRecord(
            "the new refresh token belongs to another tenant",
        ));
    }
    check_hash(&exchange.new.token_hash, "a refresh token hash is 32 bytes")
}

/// One exchange inside the batch's transaction. The outer `Err` fails the
/// batch; the inner one is this exchange's refusal, which wrote nothing.
async fn exchange_in(
    tx: &mut Transaction<'static, Sqlite>,
    exchange: &RefreshExchange,
) -> Result<Result<RefreshRotation, StoreError>, StoreError> {
    let RefreshExchange {
        tenant_id,
        client_id,
        old_hash,
        new,
        at,
    } = exchange;
    let row = sqlx::query_as::<_, TokenRow>(SELECT_TOKEN_AND_GRANT)
        .bind(tenant_id.as_str())
        .bind(old_hash.as_slice())
        .fetch_optional(&mut **tx)
        .await?;
    let Some((
        tenant,
        grant_id,
        client,
        subject,
        resource,
        scope,
        created,
        revoked,
        expires_at,
        rotated_at,
        user_enabled,
    )) = row
    else {
        return Ok(Ok(RefreshRotation::Invalid));
    };
    let grant = grant_from_row((
        tenant, grant_id, client, subject, resource, scope, created, revoked,
    ));
    // Another client's token is not this client's to rotate, nor to
    // reuse; a disabled account's tokens change nothing.
    if grant.client_id != *client_id || !user_enabled {
        return Ok(Ok(RefreshRotation::Invalid));
    }
    if rotated_at.is_some() {
        // Reuse. A no-op if the grant was revoked already: the first time
        // stays.
        sqlx::query(REVOKE_GRANT)
            .bind(tenant_id.as_str())
            .bind(grant.grant_id.as_str())
            .bind(*at)
            .execute(&mut **tx)
            .await?;
        return Ok(Ok(RefreshRotation::Reused(grant)));
    }
    if expires_at <= *at || grant.revoked_at.is_some() {
        return Ok(Ok(RefreshRotation::Invalid));
    }
    if new.grant_id != grant.grant_id {
        return Ok(Err(StoreError::InvalidRecord(
            "the new refresh token belongs to another grant",
        )));
    }
    let stored = sqlx::query(STORE_SUCCESSOR)
        .bind(tenant_id.as_str())
        .bind(old_hash.as_slice())
        .bind(new.token_hash.as_slice())
        .bind(new.grant_id.as_str())
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.rotated_at)
        .bind(*at)
        .execute(&mut **tx)
        .await;
    match stored.map_err(insert_error) {
        // Two rows: the successor and the old token.
        Ok(done) if done.rows_affected() == 2 => Ok(Ok(RefreshRotation::Rotated(grant))),
        // Unreachable: the write lock is held since the token was read
        // current. Failing the batch undoes the successor.
        Ok(_) => Err(StoreError::InvalidRecord(
            "the refresh token changed during its rotation",
        )),
        Err(StoreError::Duplicate) => Ok(Err(StoreError::Duplicate)),
        Err(err) => Err(err),
    }
}
