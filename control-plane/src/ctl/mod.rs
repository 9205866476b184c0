//! `palisadectl` subcommands. Each lives in its own module and exposes a clap `Args`
//! type plus a `run` function, so the binary's command enum stays a thin list.

pub mod demo;
pub mod policy;
pub mod token;
pub mod waf;

use std::path::PathBuf;

/// Flags every command that talks to the control plane shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The control plane's HTTPS URL.
    #[arg(
        long,
        global = true,
        env = "PALISADE_CONTROL_PLANE",
        default_value = "https://127.0.0.1:7443"
    )]
    pub control_plane: String,
    /// The admin credential directory the control plane wrote (DATA_DIR/admin).
    #[arg(long, global = true, env = "PALISADE_ADMIN_DIR")]
    pub admin_dir: Option<PathBuf>,
}

impl ConnectArgs {
    /// An API client presenting the admin credential.
    pub fn admin_client(&self) -> anyhow::Result<crate::client::ApiClient> {
        let dir = self.admin_dir.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this command needs the admin credential: pass --admin-dir DIR (or set PALISADE_ADMIN_DIR), usually DATA_DIR/admin of the control plane")
        })?;
        let (tls, _trust_domain) = crate::admin::client_config_from_dir(dir)?;
        Ok(crate::client::ApiClient::new(&self.control_plane, tls)?)
    }
}
