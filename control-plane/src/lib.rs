//! Palisade's control plane: certificate authority and SVID issuance, policy store, and
//! config distribution to proxies.
//!
//! Entry point for embedding (tests, `palisadectl demo`): [`start`] with a
//! [`ServeConfig`], which returns a [`RunningControlPlane`].

pub mod admin;
pub mod audit;
pub mod ca;
pub mod client;
pub mod csr;
pub mod ctl;
pub mod fsio;
pub mod metrics;
pub mod metrics_listener;
pub mod policy_store;
pub mod registry;
pub mod server;
pub mod state;
pub mod tokens;

pub use server::{start, RunningControlPlane, ServeConfig, ServeError};
