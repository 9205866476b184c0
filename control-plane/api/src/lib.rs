//! The wire contract between Palisade's control plane and its proxies.
//!
//! Everything here is plain data with serde codecs, so that both sides (and
//! `palisadectl`) share one definition of every message. The transport is HTTPS with
//! HTTP/2 preferred; bodies are JSON; the config watch is a stream of JSON lines.

pub mod policy;
pub mod wire;
