//! What administrators configure: API resources, clients and roles.

use sqlx::Row as _;

use super::super::super::{ApiResource, Client, Page, Role, StoreError};
use super::{Conn, Row, decode_all, json_column, to_json, write_error};

/// What writing a client does when its `client_id` exists.
pub(super) enum OnConflict {
    /// Fail with [`StoreError::Conflict`].
    Fail,
    /// Replace every field but `created_at`.
    Update,
}

// --- API resources ---

pub(super) async fn upsert_api_resource(
    c: &mut Conn,
    resource: &ApiResource,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_resources (identifier, scopes) VALUES ($1, $2) \
         ON CONFLICT (identifier) DO UPDATE SET scopes = excluded.scopes",
    )
    .bind(&resource.identifier)
    .bind(to_json("scopes", &resource.scopes)?)
    .execute(&mut *c)
    .await
    .map_err(write_error("api resource"))?;
    Ok(())
}

pub(super) async fn get_api_resource(
    c: &mut Conn,
    identifier: &str,
) -> Result<Option<ApiResource>, StoreError> {
    sqlx::query("SELECT identifier, scopes FROM api_resources WHERE identifier = $1")
        .bind(identifier)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(api_resource)
        .transpose()
}

pub(super) async fn list_api_resources(
    c: &mut Conn,
    page: Page<'_>,
) -> Result<Vec<ApiResource>, StoreError> {
    let rows = sqlx::query(
        "SELECT identifier, scopes FROM api_resources \
         WHERE ($1 IS NULL OR identifier > $1) ORDER BY identifier LIMIT $2",
    )
    .bind(page.after)
    .bind(page.limit)
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, api_resource)
}

fn api_resource(row: &Row) -> Result<ApiResource, StoreError> {
    Ok(ApiResource {
        identifier: row.try_get("identifier")?,
        scopes: json_column(row, "scopes")?,
    })
}

// --- clients ---

const CLIENT_COLUMNS: &str = "client_id, name, secret_hash, public, require_pkce, grant_types, \
     redirect_uris, scopes, id_token_signed_response_alg, created_at, introspection";

pub(super) async fn write_client(
    c: &mut Conn,
    client: &Client,
    on_conflict: OnConflict,
) -> Result<(), StoreError> {
    let conflict = match on_conflict {
        OnConflict::Fail => "",
        OnConflict::Update => {
            " ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
             secret_hash = excluded.secret_hash, public = excluded.public, \
             require_pkce = excluded.require_pkce, grant_types = excluded.grant_types, \
             redirect_uris = excluded.redirect_uris, scopes = excluded.scopes, \
             id_token_signed_response_alg = excluded.id_token_signed_response_alg, \
             introspection = excluded.introspection"
        }
    };
    let sql = format!(
        "INSERT INTO clients ({CLIENT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11){conflict}"
    );
    sqlx::query(&sql)
        .bind(&client.client_id)
        .bind(&client.name)
        .bind(&client.secret_hash)
        .bind(client.public)
        .bind(client.require_pkce)
        .bind(to_json("grant_types", &client.grant_types)?)
        .bind(to_json("redirect_uris", &client.redirect_uris)?)
        .bind(to_json("scopes", &client.scopes)?)
        .bind(&client.id_token_signed_response_alg)
        .bind(client.created_at)
        .bind(to_json("introspection", &client.introspection)?)
        .execute(&mut *c)
        .await
        .map_err(write_error("client"))?;
    Ok(())
}

pub(super) async fn get_client(
    c: &mut Conn,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1");
    sqlx::query(&sql)
        .bind(client_id)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(client)
        .transpose()
}

pub(super) async fn list_clients(c: &mut Conn, page: Page<'_>) -> Result<Vec<Client>, StoreError> {
    let sql = format!(
        "SELECT {CLIENT_COLUMNS} FROM clients \
         WHERE ($1 IS NULL OR client_id > $1) ORDER BY client_id LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(&mut *c)
        .await?;
    decode_all(rows, client)
}

pub(super) async fn delete_client(c: &mut Conn, client_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM clients WHERE client_id = $1")
        .bind(client_id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn client(row: &Row) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        public: row.try_get("public")?,
        require_pkce: row.try_get("require_pkce")?,
        grant_types: json_column(row, "grant_types")?,
        redirect_uris: json_column(row, "redirect_uris")?,
        scopes: json_column(row, "scopes")?,
        id_token_signed_response_alg: row.try_get("id_token_signed_response_alg")?,
        introspection: json_column(row, "introspection")?,
        created_at: row.try_get("created_at")?,
    })
}

// --- roles ---

pub(super) async fn create_role(c: &mut Conn, role: &Role) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO roles (name, grants, created_at) VALUES ($1, $2, $3)")
        .bind(&role.name)
        .bind(to_json("grants", &role.grants)?)
        .bind(role.created_at)
        .execute(&mut *c)
        .await
        .map_err(write_error("role"))?;
    Ok(())
}

pub(super) async fn get_role(c: &mut Conn, name: &str) -> Result<Option<Role>, StoreError> {
    sqlx::query("SELECT name, grants, created_at FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(role)
        .transpose()
}

pub(super) async fn list_roles(c: &mut Conn, page: Page<'_>) -> Result<Vec<Role>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, grants, created_at FROM roles \
         WHERE ($1 IS NULL OR name > $1) ORDER BY name LIMIT $2",
    )
    .bind(page.after)
    .bind(page.limit)
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, role)
}

fn role(row: &Row) -> Result<Role, StoreError> {
    Ok(Role {
        name: row.try_get("name")?,
        grants: json_column(row, "grants")?,
        created_at: row.try_get("created_at")?,
    })
}
