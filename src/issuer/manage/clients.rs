//! Clients: creation with a generated secret (shown once, stored as an
//! argon2id hash), listing and deletion.

use base64::Engine;
use serde_json::json;

use super::{Actor, ManageError, audit, check_grants, check_name, invalid};
use crate::config::value::absolute_uri;
use crate::config::{GrantType, SigningAlg};
use crate::issuer::clients::hash_secret;
use crate::issuer::reserved::ADMIN_SCOPE;
use crate::issuer::revocation;
use crate::issuer::store::{Client, ScopeMap, Store, new_id, redacted};

/// Bytes of randomness in a generated client secret (256 bits).
const SECRET_BYTES: usize = 32;

/// A client to create.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// A human-readable name.
    pub name: String,
    /// The grants it may use: at least one, no duplicates.
    pub grant_types: Vec<GrantType>,
    /// Absolute redirect URIs (required for `authorization_code`).
    pub redirect_uris: Vec<String>,
    /// A public client has no secret and always uses PKCE.
    pub public: bool,
    /// Whether a confidential client must use PKCE too (ignored for a public
    /// client, which always must).
    pub require_pkce: bool,
    /// The scopes it may obtain, per API resource (each must exist).
    pub scopes: ScopeMap,
    /// API resources whose access tokens it may introspect although issued
    /// to other clients (each must exist; confidential clients only).
    pub introspection: Vec<String>,
}

/// A client just created, with its secret in the clear: the only time it is
/// ever available. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct CreatedClient {
    /// The stored record (its `secret_hash` is the argon2id hash).
    pub client: Client,
    /// The secret; `None` for a public client.
    pub secret: Option<String>,
}

impl std::fmt::Debug for CreatedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedClient")
            .field("client", &self.client)
            .field("secret", &redacted(&self.secret))
            .finish()
    }
}

/// The grant-type rules of the configuration's declarative clients.
fn check_client(new: &NewClient) -> Result<(), ManageError> {
    check_name("client name", &new.name)?;
    let grants = &new.grant_types;
    if grants.is_empty() {
        return Err(invalid("grant types", "at least one is required"));
    }
    if grants
        .iter()
        .enumerate()
        .any(|(i, g)| grants[..i].contains(g))
    {
        return Err(invalid("grant types", "a grant is listed twice"));
    }
    if new.public && grants.contains(&GrantType::ClientCredentials) {
        return Err(invalid(
            "grant types",
            "a public client cannot use client_credentials: it has no secret to authenticate with",
        ));
    }
    let code = grants.contains(&GrantType::AuthorizationCode);
    let anonymous = grants.contains(&GrantType::Anonymous);
    let refresh = grants.contains(&GrantType::RefreshToken);
    if refresh && !code && !anonymous {
        return Err(invalid(
            "grant types",
            "refresh_token needs authorization_code or anonymous, the grants that issue refresh tokens",
        ));
    }
    check_anonymous(new, anonymous, refresh)?;
    if code && new.redirect_uris.is_empty() {
        return Err(invalid(
            "redirect uris",
            "authorization_code needs at least one redirect uri",
        ));
    }
    for uri in &new.redirect_uris {
        absolute_uri(uri).map_err(|e| invalid("redirect uri", e))?;
    }
    if new.public && !new.introspection.is_empty() {
        return Err(invalid(
            "introspection",
            "a public client cannot introspect: introspection needs client authentication",
        ));
    }
    let list = &new.introspection;
    if list.iter().enumerate().any(|(i, r)| list[..i].contains(r)) {
        return Err(invalid("introspection", "a resource is listed twice"));
    }
    Ok(())
}

/// The anonymous grant: public clients only, with `refresh_token` (an
/// anonymous user's only way back), and never the admin API's scope (anyone
/// could create a user holding it).
fn check_anonymous(new: &NewClient, anonymous: bool, refresh: bool) -> Result<(), ManageError> {
    if !anonymous {
        return Ok(());
    }
    if !new.public {
        return Err(invalid(
            "grant types",
            "anonymous is for public clients: apps on users' devices that create a user without credentials",
        ));
    }
    if !refresh {
        return Err(invalid(
            "grant types",
            "anonymous needs refresh_token: an anonymous user has no credentials, so its refresh token is the only way back to the same user",
        ));
    }
    if new.scopes.values().flatten().any(|s| s == ADMIN_SCOPE) {
        return Err(invalid(
            "scopes",
            "a client with the anonymous grant cannot obtain admin API scopes: anyone could create a user holding them",
        ));
    }
    Ok(())
}

/// Every resource a client may introspect tokens of must exist.
async fn check_introspection(store: &dyn Store, list: &[String]) -> Result<(), ManageError> {
    for api in list {
        if store.get_api_resource(api).await?.is_none() {
            return Err(ManageError::UnknownApi(api.clone()));
        }
    }
    Ok(())
}

/// 256 random bits, base64url without padding.
fn generate_secret() -> Result<String, ManageError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ManageError::Crypto)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates a client with a fresh id and, unless public, a fresh secret that is
/// returned once and stored only as its argon2id hash.
pub async fn create_client(
    store: &dyn Store,
    actor: Actor<'_>,
    new: NewClient,
) -> Result<CreatedClient, ManageError> {
    check_client(&new)?;
    check_grants(store, &new.scopes).await?;
    check_introspection(store, &new.introspection).await?;
    let secret = match new.public {
        true => None,
        false => Some(generate_secret()?),
    };
    let secret_hash = match &secret {
        Some(s) => Some(hash_secret(s.clone()).await.ok_or(ManageError::Crypto)?),
        None => None,
    };
    let client = Client {
        client_id: new_id("client"),
        name: new.name,
        secret_hash,
        public: new.public,
        require_pkce: new.public || new.require_pkce,
        grant_types: new
            .grant_types
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        redirect_uris: new.redirect_uris,
        scopes: new.scopes,
        id_token_signed_response_alg: Some(SigningAlg::RS256.as_str().to_owned()),
        introspection: new.introspection,
        created_at: actor.now,
    };
    let mut tx = store.begin().await?;
    tx.create_client(&client).await?;
    let detail = json!({
        "name": client.name,
        "public": client.public,
        "require_pkce": client.require_pkce,
        "grant_types": client.grant_types,
        "scopes": client.scopes,
        "introspection": client.introspection,
    });
    tx.insert_audit(&audit(actor, "client.created", &client.client_id, detail))
        .await?;
    tx.commit().await?;
    Ok(CreatedClient { client, secret })
}

/// Every client, by client id (with their hashes: callers never print those).
pub async fn list_clients(store: &dyn Store) -> Result<Vec<Client>, ManageError> {
    Ok(store.list_clients().await?)
}

/// Deletes a client with its codes and refresh families; the access tokens
/// issued to it stop working (a revocation of the client's tokens until now,
/// in the same transaction).
pub async fn delete_client(
    store: &dyn Store,
    actor: Actor<'_>,
    client_id: &str,
) -> Result<(), ManageError> {
    let mut tx = store.begin().await?;
    if !tx.delete_client(client_id).await? {
        return Err(ManageError::UnknownClient(client_id.to_owned()));
    }
    tx.record_revocation(&revocation::client(client_id, actor.now))
        .await?;
    tx.insert_audit(&audit(actor, "client.deleted", client_id, json!({})))
        .await?;
    tx.commit().await?;
    Ok(())
}
