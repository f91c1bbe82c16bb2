//! Organizations, users and memberships.
//!
//! Emails are unique regardless of case through `email_key`, the address
//! lowercased here (full Unicode, the same on both databases, where SQL's
//! `lower()` on SQLite folds ASCII only). A user without an email (anonymous
//! or anonymized) stores `''` and the key [`no_email_key`], which no lookup
//! ever asks for.

use sqlx::Row as _;

use super::super::super::{Membership, Organization, Page, StoreError, User};
use super::{Conn, Row, decode_all, json_column, to_json, write_error};

/// Which side of a membership a listing is keyed by.
pub(super) enum By {
    /// The user's memberships.
    User,
    /// The organization's memberships.
    Org,
}

// --- organizations ---

pub(super) async fn create_organization(
    c: &mut Conn,
    org: &Organization,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&org.id)
        .bind(&org.name)
        .bind(org.created_at)
        .execute(&mut *c)
        .await
        .map_err(write_error("organization"))?;
    Ok(())
}

pub(super) async fn get_organization(
    c: &mut Conn,
    id: &str,
) -> Result<Option<Organization>, StoreError> {
    sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(organization)
        .transpose()
}

pub(super) async fn list_organizations(
    c: &mut Conn,
    page: Page<'_>,
) -> Result<Vec<Organization>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, created_at FROM organizations \
         WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(page.after)
    .bind(page.limit)
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, organization)
}

fn organization(row: &Row) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

// --- users ---

const USER_COLUMNS: &str = "id, email, name, picture, email_verified, password_hash, \
     created_at, updated_at, anonymous, anonymized_at";

/// The `email_key` of a user without an email: unique, and never the key of
/// an address, since a lowercased string holds no ASCII capital.
fn no_email_key(id: &str) -> String {
    format!("NONE:{id}")
}

/// The `email` and `email_key` columns of `user`.
fn email_columns(user: &User) -> (&str, String) {
    match &user.email {
        Some(email) => (email, email.to_lowercase()),
        None => ("", no_email_key(&user.id)),
    }
}

pub(super) async fn create_user(c: &mut Conn, user: &User) -> Result<(), StoreError> {
    let (email, email_key) = email_columns(user);
    sqlx::query(
        "INSERT INTO users (id, email, email_key, name, picture, email_verified, \
         password_hash, created_at, updated_at, anonymous, anonymized_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&user.id)
    .bind(email)
    .bind(email_key)
    .bind(&user.name)
    .bind(&user.picture)
    .bind(user.email_verified)
    .bind(&user.password_hash)
    .bind(user.created_at)
    .bind(user.updated_at)
    .bind(user.anonymous)
    .bind(user.anonymized_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("user"))?;
    Ok(())
}

pub(super) async fn update_user(c: &mut Conn, user: &User) -> Result<bool, StoreError> {
    let (email, email_key) = email_columns(user);
    let done = sqlx::query(
        "UPDATE users SET email = $2, email_key = $3, name = $4, picture = $5, \
         email_verified = $6, password_hash = $7, updated_at = $8, anonymous = $9, \
         anonymized_at = $10 WHERE id = $1",
    )
    .bind(&user.id)
    .bind(email)
    .bind(email_key)
    .bind(&user.name)
    .bind(&user.picture)
    .bind(user.email_verified)
    .bind(&user.password_hash)
    .bind(user.updated_at)
    .bind(user.anonymous)
    .bind(user.anonymized_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("user"))?;
    Ok(done.rows_affected() > 0)
}

/// Deletes up to `limit` anonymous users created before `before` that hold
/// no refresh family any more (the purge deleted them when they expired);
/// their ids. The conditions are repeated outside the subquery, so that
/// PostgreSQL re-checks them against a row a promotion changed meanwhile.
pub(super) async fn delete_stale_anonymous(
    c: &mut Conn,
    before: i64,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    const STALE: &str = "anonymous AND created_at <= $1 AND NOT EXISTS \
         (SELECT 1 FROM refresh_families f WHERE f.user_id = users.id)";
    let sql = format!(
        "DELETE FROM users WHERE {STALE} AND id IN \
         (SELECT id FROM users WHERE {STALE} ORDER BY created_at LIMIT $2) RETURNING id"
    );
    let ids = sqlx::query_scalar(&sql)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    Ok(ids)
}

pub(super) async fn delete_user(c: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn get_user(c: &mut Conn, id: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

pub(super) async fn get_user_by_email(
    c: &mut Conn,
    email: &str,
) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_key = $1");
    sqlx::query(&sql)
        .bind(email.to_lowercase())
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

/// Users by id; with `email`, the one whose `email_key` is that address
/// lowercased (never a user without an email: see [`no_email_key`]).
pub(super) async fn list_users(
    c: &mut Conn,
    email: Option<&str>,
    page: Page<'_>,
) -> Result<Vec<User>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users \
         WHERE ($1 IS NULL OR email_key = $1) AND ($2 IS NULL OR id > $2) \
         ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(email.map(str::to_lowercase))
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(&mut *c)
        .await?;
    decode_all(rows, user)
}

fn user(row: &Row) -> Result<User, StoreError> {
    let email: String = row.try_get("email")?;
    Ok(User {
        id: row.try_get("id")?,
        email: (!email.is_empty()).then_some(email),
        name: row.try_get("name")?,
        picture: row.try_get("picture")?,
        email_verified: row.try_get("email_verified")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        anonymous: row.try_get("anonymous")?,
        anonymized_at: row.try_get("anonymized_at")?,
    })
}

// --- memberships ---

pub(super) async fn add_membership(c: &mut Conn, m: &Membership) -> Result<bool, StoreError> {
    let roles = to_json("roles", &m.roles)?;
    let inserted = sqlx::query(
        "INSERT INTO memberships (org_id, user_id, roles, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, user_id) DO NOTHING",
    )
    .bind(&m.org_id)
    .bind(&m.user_id)
    .bind(&roles)
    .bind(m.created_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("membership"))?;
    if inserted.rows_affected() > 0 {
        return Ok(true);
    }
    sqlx::query("UPDATE memberships SET roles = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(&m.org_id)
        .bind(&m.user_id)
        .bind(&roles)
        .execute(&mut *c)
        .await?;
    Ok(false)
}

pub(super) async fn remove_membership(
    c: &mut Conn,
    org_id: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn remove_memberships_of_user(
    c: &mut Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM memberships WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected())
}

/// The memberships of one user (by organization id) or of one organization
/// (by user id), from the one after `page.after`.
pub(super) async fn list_memberships(
    c: &mut Conn,
    by: By,
    id: &str,
    page: Page<'_>,
) -> Result<Vec<Membership>, StoreError> {
    let sql = match by {
        By::User => {
            "SELECT org_id, user_id, roles, created_at FROM memberships \
             WHERE user_id = $1 AND ($2 IS NULL OR org_id > $2) ORDER BY org_id LIMIT $3"
        }
        By::Org => {
            "SELECT org_id, user_id, roles, created_at FROM memberships \
             WHERE org_id = $1 AND ($2 IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3"
        }
    };
    let rows = sqlx::query(sql)
        .bind(id)
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(&mut *c)
        .await?;
    decode_all(rows, membership)
}

fn membership(row: &Row) -> Result<Membership, StoreError> {
    Ok(Membership {
        org_id: row.try_get("org_id")?,
        user_id: row.try_get("user_id")?,
        roles: json_column(row, "roles")?,
        created_at: row.try_get("created_at")?,
    })
}
