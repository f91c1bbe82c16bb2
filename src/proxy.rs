//! The request pipeline: normalise, route, read the bearer token, verify,
//! authorise, rewrite headers, forward, respond.

pub mod body;
pub mod decide;
pub mod forward_auth;
pub mod h1;
pub mod handle;
pub mod headers;
pub mod overrides;
pub mod pool;
pub mod respond;
pub mod upgrade;

pub use handle::{Outcome, Proxy, ProxyBody};
pub use respond::Reject;
