//! `palisadectl` subcommands, one module per group.

pub mod policy;
