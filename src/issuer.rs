//! The built-in OAuth 2.0 / OpenID Connect issuer (documented in the README, "Built-in issuer").
//!
//! Built so far: storage (`store`), signing keys and their rotation (`signing`,
//! `keyring`), client authentication (`clients`), discovery, the JWKS and the
//! token endpoint with `client_credentials` (`endpoints`, `token`), the
//! anonymous grant (`anonymous`), refresh
//! rotation with reuse detection (`refresh`), revocation (`revoke`) and
//! introspection (`introspect`), and the user login flow: authorization code
//! with PKCE, the hosted login page, ID tokens and userinfo (`authorize`), the
//! administration service layer behind `portcullis admin` (`manage`) and the
//! admin REST API under `/admin/v1/` on top of it (`admin_api`), webhook
//! delivery from the outbox (`events`), and the blocking hooks asked before a
//! token is issued or a user created (`hooks`).

pub mod access;
pub mod admin_api;
pub mod anonymous;
pub mod authorize;
pub mod body;
pub mod clients;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod hooks;
pub mod introspect;
pub mod kdf;
pub mod keyring;
pub mod manage;
pub mod purge;
pub mod refresh;
pub mod reserved;
pub mod revocation;
pub mod revoke;
pub mod signing;
pub mod store;
pub mod throttle;
pub mod token;

pub use endpoints::Issuer;

#[cfg(test)]
mod debug_tests;
