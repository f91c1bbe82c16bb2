//! What [`Issuer::start`](super::Issuer::start) does to the database before
//! serving: the declared resources (with the admin API's own) and clients,
//! sealing what is stored in the clear once a master key is set, and warnings
//! about stored roles whose names new roles could not have.

use super::IssuerError;
use crate::config::IssuerSection;
use crate::issuer::kdf::{hash_secret, verify_secret};
use crate::issuer::signing::MasterKey;
use crate::issuer::store::{Client, Store};

/// Upserts the `resources:` (with the admin API's own, see
/// [`reserved`](crate::issuer::reserved)) and `clients:` of the configuration. A client's
/// secret is re-hashed only when the stored hash no longer matches it.
pub(super) async fn apply_declarations(
    section: &IssuerSection,
    store: &dyn Store,
    now: i64,
) -> Result<(), IssuerError> {
    crate::issuer::manage::apply_declared_resources(store, section)
        .await
        .map_err(|e| match e {
            crate::issuer::manage::ManageError::Store(e) => IssuerError::Store(e),
            other => IssuerError::Resources(other),
        })?;
    for c in &section.clients {
        let existing = store.get_client(&c.client_id).await?;
        let secret_hash = match &c.client_secret {
            None => None,
            Some(secret) => {
                let stored = existing.as_ref().and_then(|e| e.secret_hash.clone());
                match stored {
                    Some(h) if verify_secret(secret.expose().to_owned(), h.clone()).await => {
                        Some(h)
                    }
                    _ => Some(
                        hash_secret(secret.expose().to_owned())
                            .await
                            .ok_or_else(|| IssuerError::Client(c.client_id.clone()))?,
                    ),
                }
            }
        };
        let client = Client {
            client_id: c.client_id.clone(),
            name: c.client_id.clone(),
            secret_hash,
            public: c.public,
            require_pkce: c.require_pkce,
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.iter().cloned().collect(),
            id_token_signed_response_alg: Some(c.id_token_signed_response_alg.as_str().to_owned()),
            introspection: c.introspection.clone(),
            created_at: now,
        };
        store.upsert_client(&client).await?;
    }
    Ok(())
}

/// Seals, with `master`, the stored signing keys and webhook secrets that
/// are still plain (written without a master key, or before webhook secrets
/// were sealed), so that a restart with `PORTCULLIS_MASTER_KEY` set leaves
/// none in the clear; each is replaced only if unchanged meanwhile. Without a
/// master key: a warning at start, and an error for sealed webhook secrets
/// that cannot be opened then.
pub(super) async fn seal_stored_secrets(
    store: &dyn Store,
    master: Option<&MasterKey>,
) -> Result<(), IssuerError> {
    let hooks = store.list_webhooks().await?;
    let Some(master) = master else {
        tracing::warn!(
            "PORTCULLIS_MASTER_KEY is not set: signing keys and webhook secrets are stored unencrypted in the issuer database"
        );
        let sealed = hooks
            .iter()
            .filter(|w| crate::issuer::signing::seal::is_sealed_secret(&w.secret))
            .count();
        if sealed > 0 {
            tracing::error!(
                webhooks = sealed,
                "Stored webhook secrets are encrypted but PORTCULLIS_MASTER_KEY is not set; those webhooks get no events"
            );
        }
        return Ok(());
    };
    let mut keys = 0;
    for k in store.list_signing_keys(i64::MIN).await? {
        if crate::issuer::signing::seal::is_sealed(&k.private_key) {
            continue;
        }
        let new = crate::issuer::signing::seal::seal(Some(master), &k.kid, &k.private_key)
            .map_err(IssuerError::MasterKey)?;
        if store
            .replace_signing_key_material(&k.kid, &k.private_key, &new)
            .await?
        {
            keys += 1;
        }
    }
    if keys > 0 {
        tracing::info!(keys, "Stored signing keys sealed with the master key");
    }
    let mut sealed = 0;
    for w in hooks
        .iter()
        .filter(|w| !crate::issuer::signing::seal::is_sealed_secret(&w.secret))
    {
        let context = crate::issuer::manage::webhook_secret_context(&w.id);
        let what = format!("the secret of webhook {}", w.id);
        let new =
            crate::issuer::signing::seal::seal_secret(Some(master), &context, &w.secret, &what)
                .map_err(IssuerError::Seal)?;
        if store.replace_webhook_secret(&w.id, &w.secret, &new).await? {
            sealed += 1;
        }
    }
    // A rotation's previous secret, stored as the secret was (same context).
    for (w, previous) in hooks.iter().filter_map(|w| {
        w.previous_secret
            .as_ref()
            .filter(|p| !crate::issuer::signing::seal::is_sealed_secret(p))
            .map(|p| (w, p))
    }) {
        let context = crate::issuer::manage::webhook_secret_context(&w.id);
        let what = format!("the previous secret of webhook {}", w.id);
        let new =
            crate::issuer::signing::seal::seal_secret(Some(master), &context, previous, &what)
                .map_err(IssuerError::Seal)?;
        if store
            .replace_webhook_previous_secret(&w.id, previous, &new)
            .await?
        {
            sealed += 1;
        }
    }
    if sealed > 0 {
        tracing::info!(
            webhooks = sealed,
            "Stored webhook secrets sealed with the master key"
        );
    }
    Ok(())
}

/// Logs, at `warn`, stored roles whose names roles created today could not
/// have (from before names were checked): a comma in one splits it in two in
/// the gateway's `X-Auth-Roles`. The roles stay; an operator renames them.
pub(super) async fn warn_on_unsafe_role_names(store: &dyn Store) -> Result<(), IssuerError> {
    for role in store.list_roles().await? {
        if !crate::issuer::manage::is_role_name(&role.name) {
            tracing::warn!(
                role = %role.name.escape_debug(),
                "A stored role has a name new roles may not have (commas, spaces, quotes or control characters); recreate it under a plain name"
            );
        }
    }
    Ok(())
}
