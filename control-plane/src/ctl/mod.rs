//! Subcommands of `palisadectl`, one module per command group.

pub mod waf;
