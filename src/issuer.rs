//! The built-in OAuth 2.0 / OpenID Connect issuer (`../shared/spec/issuer.md`).
//!
//! Under construction: storage (`store`) and signing keys (`signing`) land first;
//! the endpoints, grants and administration follow.

pub mod signing;
pub mod store;
