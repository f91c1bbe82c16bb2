//! `Debug` for the records that hold secrets, showing `<redacted>` in place of
//! each secret (a hash of a password or secret included), so that no log line
//! or error message ever carries one. `issuer::debug_tests` checks each.

use std::fmt;

use super::{Client, LoginTransaction, Redacted, SigningKeyRecord, User, Webhook, redacted};

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("secret_hash", &redacted(&self.secret_hash))
            .field("public", &self.public)
            .field("require_pkce", &self.require_pkce)
            .field("grant_types", &self.grant_types)
            .field("redirect_uris", &self.redirect_uris)
            .field("scopes", &self.scopes)
            .field(
                "id_token_signed_response_alg",
                &self.id_token_signed_response_alg,
            )
            .field("introspection", &self.introspection)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("picture", &self.picture)
            .field("email_verified", &self.email_verified)
            .field("password_hash", &redacted(&self.password_hash))
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("anonymous", &self.anonymous)
            .field("anonymized_at", &self.anonymized_at)
            .finish()
    }
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &Redacted)
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("publish_at", &self.publish_at)
            .field("activate_at", &self.activate_at)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &Redacted)
            .field("events", &self.events)
            .field("created_at", &self.created_at)
            .field("previous_secret", &redacted(&self.previous_secret))
            .field("previous_secret_until", &self.previous_secret_until)
            .finish()
    }
}

impl fmt::Debug for LoginTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginTransaction")
            .field("id_hash", &self.id_hash)
            .field("csrf", &Redacted)
            .field("request", &self.request)
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
