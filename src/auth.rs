//! Token authentication: reading the bearer token, key sets and their sources,
//! JWS verification, and the verified-token cache.

pub mod bearer;
pub mod cache;
pub mod introspect;
pub mod jwks;
pub mod keys;
mod verifier;
pub mod verify;

pub use keys::{Identity, Key, KeySet};
pub use verifier::Verifier;
pub use verify::TokenError;
