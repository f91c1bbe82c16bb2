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
//!
//! # Layers
//!
//! The endpoint modules form no import cycle: a module imports from the
//! rows below its own, and within a row only as said here.
//!
//! 1. `endpoints`: the issuer's HTTP surface; it dispatches to row 2.
//! 2. One endpoint family each, none importing another of this row:
//!    `admin_api`, `introspect`, `revoke`, and the grants `refresh` and
//!    `anonymous` (methods of [`token::Minter`]); beside them `authorize`
//!    (the login flow), whose ID-token claims (`IdSubject`) `refresh` takes.
//! 3. What row 2 shares: `access` (is this one of our live access tokens),
//!    `family` (refresh-token size, when a family is over, revoking one, and
//!    the report a revocation writes; it uses `token`), `token` (the minter;
//!    it uses `clients`), `clients` (client authentication and the OAuth form
//!    reader).
//! 4. The issuer's services and parts, which never import rows 1–3 except
//!    `clients` and `token`: `manage`, `hooks`, `events`, `keyring`,
//!    `signing`, `revocation`, `throttle`, `kdf`, `reserved`, `purge`,
//!    `body` (the request-body reader, size-capped and bounded by
//!    `body_timeout`, and its form and JSON decoders) and `error` (OAuth errors, one `From<StoreError>`).
//! 5. `store`, which imports nothing of the issuer.

pub mod access;
pub mod admin_api;
pub mod anonymous;
pub mod authorize;
pub mod body;
pub mod clients;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod family;
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
