//! portcullis: a token-validating reverse proxy and API gateway.
//!
//! The binary (`main.rs`, `cli.rs`) is thin glue; everything else lives here. See
//! `docs/request-lifecycle.md` for the module layout and the
//! order of the request pipeline.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod issuer;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
