//! Palisade's sidecar proxy: terminates mutual TLS, authorizes each request at layer 7,
//! inspects it with the WAF and forwards it to the local application.
//!
//! The shape follows linkerd2-proxy and ztunnel: an [`inbound`] side (mTLS from other
//! proxies to the local app), an [`outbound`] side (the local app to other services over
//! mTLS), the mesh's view of other services in [`state`], the workload's SVID in [`identity`],
//! the control-plane client in [`control`], and an [`admin`] listener. Every
//! per-request concern is a tower layer in [`layers`], and each side assembles its stack
//! in one function (`inbound::stack`, `outbound::stack`) so the order reads top to bottom.

pub mod admin;
pub mod body;
pub mod config;
pub mod control;
pub mod drain;
pub mod enforcement;
pub mod headers;
pub mod identity;
pub mod inbound;
pub mod layers;
pub mod logfmt;
pub mod metrics;
pub mod outbound;
mod run;
pub mod server;
pub mod state;
pub mod telemetry;
#[cfg(any(test, feature = "test-helpers"))]
pub mod test_helpers;
pub mod upgrade;

pub use config::{Limits, ProxyConfig, Timeouts};
pub use enforcement::Enforcement;
pub use run::{run, serve, Listeners, ProxyError, ProxyIdentity};
pub use state::MeshState;
