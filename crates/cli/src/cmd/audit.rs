//! `medfed audit verify|export`: for compliance officers, straight from a node's audit database
//! (a SQLite file or a `postgres://` URL), without trusting the node that wrote it.

use std::path::PathBuf;

use medfed_audit::Database;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Re-walk the hash chain and signed checkpoints; report the first broken entry.
    Verify {
        /// The trail: e.g. demo-net/hub/audit.db, or postgres://…
        #[arg(long)]
        db: String,
        /// The node's published signing.pub (recommended: otherwise the key stored next to the
        /// checkpoints is used, which whoever altered the trail could have replaced).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write every entry, oldest first, for a SIEM.
    Export {
        #[arg(long)]
        db: String,
        /// Output format (jsonl: one JSON object per line).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { db, key, json } => {
            let key = key
                .map(|k| medfed_protocol::signing::load_verifying_key(&k))
                .transpose()?;
            let db = open(&db).await?;
            let report = medfed_audit::verify(&db, key.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} entries, {} signed checkpoints (last at entry {}), signatures checked against {}",
                    report.entries,
                    report.checkpoints,
                    report.last_checkpoint.map_or("-".into(), |s| s.to_string()),
                    if report.key_supplied {
                        "the supplied key"
                    } else {
                        "the stored key (pass --key)"
                    }
                );
            }
            match &report.first_break {
                None => {
                    if !json {
                        println!("intact");
                    }
                    Ok(())
                }
                Some(b) => anyhow::bail!("BROKEN at entry {}: {}", b.seq, b.detail),
            }
        }
        AuditCommand::Export { db, format: _, out } => {
            let db = open(&db).await?;
            let n = match out {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    medfed_audit::export_jsonl(&db, &mut f).await?
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    medfed_audit::export_jsonl(&db, &mut stdout).await?
                }
            };
            eprintln!("exported {n} entries");
            Ok(())
        }
    }
}

async fn open(db: &str) -> anyhow::Result<Database> {
    if !db.contains("://") && !std::path::Path::new(db).exists() {
        anyhow::bail!("no audit database at {db}");
    }
    Ok(Database::connect(db, 2).await?)
}
