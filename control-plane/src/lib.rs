//! Palisade's control plane: certificate authority and SVID issuance, policy store, and
//! config distribution to proxies.

pub mod ctl;
