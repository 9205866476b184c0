//! SPIFFE identity for Palisade: IDs, X.509-SVID verification against a trust bundle,
//! and the rustls verifiers, resolvers and configs that both the control plane and the
//! proxies use, so that the two sides can never disagree on who a peer is.

pub mod id;
pub mod svid;
pub mod tls;

pub use id::{IdError, SpiffeId, TrustDomain};
pub use svid::{PeerRole, SharedBundle, SvidError, TrustBundle};
pub use tls::{ClientAuth, ServerIdentity, SvidInfo, SvidStore};
