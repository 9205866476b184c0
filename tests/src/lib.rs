//! End-to-end tests live in `tests/`; [`test_helpers`] is the harness they share.

pub mod proxies;
pub mod test_helpers;
