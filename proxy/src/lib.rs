//! Palisade's sidecar proxy: terminates mutual TLS, authorizes each request at layer 7,
//! inspects it with the WAF and forwards it to the local application.

pub mod control;
pub mod identity;
