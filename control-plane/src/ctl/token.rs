//! `palisadectl token create`: asks the control plane for a join token.

use palisade_api::wire::{TokenRequest, TokenResponse, PATH_ADMIN_TOKENS};

use super::ConnectArgs;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Creates a single-use join token for one identity and prints it.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The workload's namespace.
    #[arg(long, env = "PALISADE_NAMESPACE")]
    pub namespace: String,
    /// The workload's service account.
    #[arg(long, env = "PALISADE_SERVICE_ACCOUNT")]
    pub service_account: String,
    /// How long the token may be used (default 1h, at most 24h).
    #[arg(long, env = "PALISADE_TTL")]
    pub ttl: Option<humantime::Duration>,
}

/// Runs a token command; prints the token alone on stdout so scripts can capture it.
pub async fn run(connect: &ConnectArgs, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let client = connect.admin_client()?;
            let request = TokenRequest {
                namespace: args.namespace,
                service_account: args.service_account,
                ttl_secs: args.ttl.map(|ttl| ttl.as_secs()),
            };
            let response: TokenResponse = client.post_json(PATH_ADMIN_TOKENS, &request).await?;
            println!("{}", response.token);
            eprintln!(
                "join token for {} expires at unix time {}; it is shown only once",
                response.spiffe_id, response.expires_at_unix
            );
            Ok(())
        }
    }
}
