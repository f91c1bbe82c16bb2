//! Authorization codes and refresh-token families (revocation facts are in
//! `revocations`).
//!
//! Every race here is settled by one conditional `UPDATE`: redeeming a code
//! (`… AND used_at IS NULL`) and rotating a family (`… AND generation = $2 AND
//! revoked_at IS NULL`). Of concurrent writers, the first to commit matches;
//! the others find the condition false (SQLite serialises writers; PostgreSQL
//! re-checks the condition against the committed row) and change nothing.

use sqlx::Row as _;

use super::super::super::{
    AuthCode, CodeState, FamilyMatch, PresentedToken, RefreshFamily, StoreError,
};
use super::{Conn, Row, write_error};

/// Which families a revocation targets.
pub(super) enum Families {
    /// The family with this id.
    Id,
    /// Every family of this user.
    OfUser,
    /// Every family of this client.
    OfClient,
}

/// The arguments of one rotation.
pub(super) struct Rotation<'a> {
    pub(super) id: &'a str,
    pub(super) expected_generation: i64,
    pub(super) new_hash: &'a str,
    pub(super) now: i64,
    pub(super) new_idle_expires_at: Option<i64>,
    /// The new token sealed for a replay inside the grace (`None`: no grace).
    pub(super) successor: Option<&'a [u8]>,
}

// --- authorization codes ---

const CODE_COLUMNS: &str = "code_hash, client_id, user_id, org_id, redirect_uri, scope, \
     resource, code_challenge, nonce, auth_time, expires_at";

pub(super) async fn insert_code(c: &mut Conn, code: &AuthCode) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO authorization_codes ({CODE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    sqlx::query(&sql)
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.org_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(&code.resource)
        .bind(&code.code_challenge)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.expires_at)
        .execute(&mut *c)
        .await
        .map_err(write_error("authorization code"))?;
    Ok(())
}

pub(super) async fn find_code(
    c: &mut Conn,
    code_hash: &str,
) -> Result<Option<CodeState>, StoreError> {
    let sql = format!(
        "SELECT {CODE_COLUMNS}, used_at, family_id FROM authorization_codes WHERE code_hash = $1"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(code_hash)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let code = auth_code(&row)?;
    let used_at: Option<i64> = row.try_get("used_at")?;
    Ok(Some(match used_at {
        None => CodeState::Unused(code),
        Some(_) => CodeState::Used {
            code,
            family_id: row.try_get("family_id")?,
        },
    }))
}

pub(super) async fn redeem_code(
    c: &mut Conn,
    code_hash: &str,
    family_id: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE authorization_codes SET used_at = $2, family_id = $3 \
         WHERE code_hash = $1 AND used_at IS NULL",
    )
    .bind(code_hash)
    .bind(now)
    .bind(family_id)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

fn auth_code(row: &Row) -> Result<AuthCode, StoreError> {
    Ok(AuthCode {
        code_hash: row.try_get("code_hash")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        org_id: row.try_get("org_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        code_challenge: row.try_get("code_challenge")?,
        nonce: row.try_get("nonce")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
    })
}

// --- refresh-token families ---

const FAMILY_COLUMNS: &str = "id, client_id, user_id, org_id, scope, resource, auth_time, \
     generation, current_hash, previous_hash, rotated_at, created_at, absolute_expires_at, \
     idle_expires_at, revoked_at";

pub(super) async fn create_family(c: &mut Conn, f: &RefreshFamily) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO refresh_families ({FAMILY_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    );
    sqlx::query(&sql)
        .bind(&f.id)
        .bind(&f.client_id)
        .bind(&f.user_id)
        .bind(&f.org_id)
        .bind(&f.scope)
        .bind(&f.resource)
        .bind(f.auth_time)
        .bind(f.generation)
        .bind(&f.current_hash)
        .bind(&f.previous_hash)
        .bind(f.rotated_at)
        .bind(f.created_at)
        .bind(f.absolute_expires_at)
        .bind(f.idle_expires_at)
        .bind(f.revoked_at)
        .execute(&mut *c)
        .await
        .map_err(write_error("refresh family"))?;
    Ok(())
}

/// Whether the family's user is anonymous now, read with the family.
const USER_ANONYMOUS: &str = "(SELECT anonymous FROM users \
     WHERE users.id = refresh_families.user_id) AS user_anonymous";

pub(super) async fn find_family_by_token_hash(
    c: &mut Conn,
    token_hash: &str,
) -> Result<Option<FamilyMatch>, StoreError> {
    let sql = format!(
        "SELECT {FAMILY_COLUMNS}, {USER_ANONYMOUS} FROM refresh_families WHERE current_hash = $1"
    );
    if let Some(row) = sqlx::query(&sql)
        .bind(token_hash)
        .fetch_optional(&mut *c)
        .await?
    {
        return Ok(Some(FamilyMatch {
            family: refresh_family(&row)?,
            presented: PresentedToken::Current,
            anonymous: user_anonymous(&row)?,
        }));
    }
    let sql = format!(
        "SELECT {FAMILY_COLUMNS}, {USER_ANONYMOUS} FROM refresh_families WHERE id = \
         (SELECT family_id FROM retired_refresh_tokens WHERE token_hash = $1)"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(token_hash)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let family = refresh_family(&row)?;
    let presented = if family.previous_hash.as_deref() == Some(token_hash) {
        PresentedToken::Previous
    } else {
        PresentedToken::Retired
    };
    Ok(Some(FamilyMatch {
        family,
        presented,
        anonymous: user_anonymous(&row)?,
    }))
}

fn user_anonymous(row: &Row) -> Result<bool, StoreError> {
    let anonymous: Option<bool> = row.try_get("user_anonymous")?;
    Ok(anonymous.unwrap_or(false))
}

/// Rotates inside the caller's transaction: the conditional update decides, and
/// the replaced hash is kept so that a later replay of it is recognised.
pub(super) async fn rotate_family(c: &mut Conn, r: &Rotation<'_>) -> Result<bool, StoreError> {
    let replaced: Option<String> = sqlx::query_scalar(
        "UPDATE refresh_families SET generation = generation + 1, \
         previous_hash = current_hash, current_hash = $3, rotated_at = $4, \
         idle_expires_at = $5, successor_sealed = $6 \
         WHERE id = $1 AND generation = $2 AND revoked_at IS NULL \
         AND absolute_expires_at > $4 AND (idle_expires_at IS NULL OR idle_expires_at > $4) \
         RETURNING previous_hash",
    )
    .bind(r.id)
    .bind(r.expected_generation)
    .bind(r.new_hash)
    .bind(r.now)
    .bind(r.new_idle_expires_at)
    .bind(r.successor)
    .fetch_optional(&mut *c)
    .await
    .map_err(write_error("refresh token"))?;
    let Some(replaced) = replaced else {
        return Ok(false);
    };
    sqlx::query("INSERT INTO retired_refresh_tokens (token_hash, family_id) VALUES ($1, $2)")
        .bind(replaced)
        .bind(r.id)
        .execute(&mut *c)
        .await
        .map_err(write_error("refresh token"))?;
    Ok(true)
}

/// The sealed successor the family's last rotation kept, if any.
pub(super) async fn family_successor(
    c: &mut Conn,
    id: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sealed: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT successor_sealed FROM refresh_families WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(sealed.flatten())
}

pub(super) async fn revoke_families(
    c: &mut Conn,
    which: Families,
    id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = match which {
        Families::Id => {
            "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
        }
        Families::OfUser => {
            "UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL"
        }
        Families::OfClient => {
            "UPDATE refresh_families SET revoked_at = $2 \
             WHERE client_id = $1 AND revoked_at IS NULL"
        }
    };
    let done = sqlx::query(sql).bind(id).bind(now).execute(&mut *c).await?;
    Ok(done.rows_affected())
}

fn refresh_family(row: &Row) -> Result<RefreshFamily, StoreError> {
    Ok(RefreshFamily {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        org_id: row.try_get("org_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        auth_time: row.try_get("auth_time")?,
        generation: row.try_get("generation")?,
        current_hash: row.try_get("current_hash")?,
        previous_hash: row.try_get("previous_hash")?,
        rotated_at: row.try_get("rotated_at")?,
        created_at: row.try_get("created_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

// --- purging ---

/// What [`super::purge_expired`] deletes here: codes and families that
/// expired before `$1` (their retired hashes cascade).
pub(super) const PURGE: &[&str] = &[
    "DELETE FROM authorization_codes WHERE expires_at <= $1",
    "DELETE FROM refresh_families WHERE absolute_expires_at <= $1",
];
