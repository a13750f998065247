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
    /// Receive HL7 v2 messages over MLLP into the site's bronze store, answering ACK/NACK.
    ListenHl7 {
        /// The site directory.
        #[arg(long)]
        site: PathBuf,
        /// TCP port (2575 is MLLP's registered port).
        #[arg(long, default_value_t = 2575)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
    },
    /// Replace the site's key-encryption key (re-wraps data keys; no table is rewritten).
    RotateKey {
        /// The site directory.
        #[arg(long)]
        site: PathBuf,
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
    /// Manage the hub's users and API tokens (on the hub's machine, straight in its state DB).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add a user and print their first API token (shown once; only its argon2 hash is kept).
    Add {
        #[arg(long)]
        config: PathBuf,
        name: String,
        /// researcher, clinician, custodian, admin or auditor (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// For custodians: the site(s) they look after (repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// The token stops working after this many days (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Issue another API token for a user.
    Token {
        #[arg(long)]
        config: PathBuf,
        name: String,
        /// The token stops working after this many days (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by its id (the part after `mf_`); it stops working at once.
    Revoke {
        #[arg(long)]
        config: PathBuf,
        id: String,
    },
    /// List users and their tokens (ids only).
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

pub async fn site(cmd: SiteCommand) -> anyhow::Result<()> {
    let config = match cmd {
        SiteCommand::Serve { config } => config,
        SiteCommand::ListenHl7 { site, port, bind } => {
            return super::ingest::listen_hl7(site, bind, port).await;
        }
        SiteCommand::RotateKey { site } => return super::ingest::rotate_key(site),
    };
    let cfg = medfed_site::SiteConfig::load(&config)?;
    let site = medfed_site::Site::open(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    site.serve(listener, &cfg.tls, super::shutdown_signal())
        .await?;
    Ok(())
}

pub async fn hub(cmd: HubCommand) -> anyhow::Result<()> {
    let config = match cmd {
        HubCommand::Serve { config } => config,
        HubCommand::User { command } => return user(command).await,
    };
    let cfg = medfed_hub::HubConfig::load(&config)?;
    let hub = medfed_hub::Hub::new(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    medfed_hub::serve(hub.clone(), listener, super::shutdown_signal()).await?;
    hub.audit().checkpoint().await?;
    Ok(())
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    let open = |config: &PathBuf| {
        let cfg = medfed_hub::HubConfig::load(config);
        async move { anyhow::Ok(medfed_hub::state::HubState::open(&cfg?.governance.state_db).await?) }
    };
    match cmd {
        UserCommand::Add {
            config,
            name,
            roles,
            sites,
            expires_in_days,
        } => {
            let state = open(&config).await?;
            state.add_user(&name, &roles, &sites).await?;
            let t = state
                .issue_token_until(&name, expiry(expires_in_days))
                .await?;
            println!(
                "added {name} ({})\ntoken (shown once): {}",
                roles.join(", "),
                t.token
            );
        }
        UserCommand::Token {
            config,
            name,
            expires_in_days,
        } => {
            let t = open(&config)
                .await?
                .issue_token_until(&name, expiry(expires_in_days))
                .await?;
            println!("token for {name} (shown once): {}", t.token);
        }
        UserCommand::Revoke { config, id } => {
            open(&config).await?.revoke_token(&id).await?;
            println!("revoked token {id}");
        }
        UserCommand::List { config } => {
            let state = open(&config).await?;
            let mut table = comfy_table::Table::new();
            table.set_header(["user", "roles", "sites", "live tokens"]);
            for u in state.users().await? {
                let tokens: Vec<String> = state
                    .tokens(Some(&u.name))
                    .await?
                    .into_iter()
                    .filter(|t| t.revoked_at_us.is_none())
                    .map(|t| t.id)
                    .collect();
                table.add_row([
                    u.name,
                    u.roles.join(","),
                    u.sites.join(","),
                    tokens.join(" "),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

fn expiry(days: Option<u32>) -> Option<i64> {
    days.map(|d| medfed_audit::db::now_us() + i64::from(d) * 86_400 * 1_000_000)
}
