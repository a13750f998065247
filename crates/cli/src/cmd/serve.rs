//! `medfed site serve`, `medfed hub serve`

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum SiteCommand {
    /// Serve the hub over mutual TLS from this site's data.
    Serve {
        /// The site's config file (site.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub enum HubCommand {
    /// Serve researchers over HTTP and fan their queries out to the sites.
    Serve {
        /// The hub's config file (hub.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

pub async fn site(cmd: SiteCommand) -> anyhow::Result<()> {
    let SiteCommand::Serve { config } = cmd;
    let cfg = medfed_site::SiteConfig::load(&config)?;
    let site = medfed_site::Site::open(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    site.serve(listener, &cfg.tls, super::shutdown_signal())
        .await?;
    Ok(())
}

pub async fn hub(cmd: HubCommand) -> anyhow::Result<()> {
    let HubCommand::Serve { config } = cmd;
    let cfg = medfed_hub::HubConfig::load(&config)?;
    let hub = medfed_hub::Hub::new(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    medfed_hub::serve(hub, listener, super::shutdown_signal()).await?;
    Ok(())
}
