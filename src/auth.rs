//! Token authentication: reading the bearer token, key sets and their sources,
//! JWS verification, the verified-token cache, and the built-in issuer's
//! revocation set.

pub mod bearer;
pub mod cache;
pub mod introspect;
pub mod jwks;
pub mod keys;
pub mod revocation;
mod verifier;
pub mod verify;

pub use keys::{Identity, Key, KeySet};
pub use verifier::Verifier;
pub use verify::TokenError;
