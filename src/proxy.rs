//! The request pipeline: normalise, route, read the bearer token, verify,
//! authorise, rewrite headers, forward, respond.

pub mod forward;
pub mod handle;
pub mod headers;
pub mod respond;

pub use handle::{Proxy, ProxyBody};
pub use respond::Reject;
