//! End-to-end tests live in `tests/`; [`test_helpers`] (control plane, identities, mTLS
//! probes) and [`proxies`] (whole proxies and app-side HTTP clients) are the harness
//! they share.

pub mod otlp;
pub mod proxies;
pub mod test_helpers;
