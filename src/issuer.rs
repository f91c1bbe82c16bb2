//! The built-in OAuth 2.0 / OpenID Connect issuer (`../shared/spec/issuer.md`).
//!
//! Built so far: storage (`store`), signing keys and their rotation (`signing`,
//! `keyring`), client authentication (`clients`), discovery, the JWKS and the
//! token endpoint with `client_credentials` (`endpoints`, `token`). The
//! authorization-code flow, refresh rotation, revocation, introspection,
//! administration and webhooks follow.

pub mod clients;
pub mod endpoints;
pub mod error;
pub mod keyring;
pub mod manage;
pub mod signing;
pub mod store;
pub mod token;

pub use endpoints::Issuer;
