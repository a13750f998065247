//! `medfed pki init`

use std::path::PathBuf;

use medfed_core::SiteName;

#[derive(clap::Subcommand)]
pub enum PkiCommand {
    /// Create a CA, a hub certificate and one certificate per site.
    Init {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// The hub's DNS name.
        #[arg(long, default_value = "hub")]
        hub: String,
        /// Site names, comma-separated (each becomes the DNS name in its certificate).
        #[arg(long, value_delimiter = ',', required = true)]
        sites: Vec<SiteName>,
    },
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<()> {
    let PkiCommand::Init { out, hub, sites } = cmd;
    let layout = medfed_protocol::pki::init(&out, &hub, &sites)?;
    println!(
        "network CA: {}  (keep {} offline)",
        layout.ca().display(),
        out.join("ca.key").display()
    );
    let h = layout.hub();
    println!("hub `{hub}`: {} {}", h.cert.display(), h.key.display());
    for s in &sites {
        let p = layout.site(s);
        println!("site `{s}`: {} {}", p.cert.display(), p.key.display());
    }
    Ok(())
}
