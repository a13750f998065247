//! `medfed synth`

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use medfed_synth::{Profile, SynthConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Output directory; tables go to DIR/omop/<table>.parquet.
    #[arg(long)]
    out: PathBuf,
    /// Number of patients.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Seed: the same seed, profile and size give identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kind of hospital: general, urban, rural or cardiac.
    #[arg(long, default_value = "general")]
    profile: String,
    /// Added to every id, so several sites' files can be pooled without collisions.
    #[arg(long, default_value_t = 0)]
    id_base: i32,
}

pub fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>10} {bar:40.cyan/blue} {pos:>9}/{len} patients {per_sec} {eta}",
    )
    .expect("valid template")
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if Profile::by_name(&a.profile).is_none() {
        anyhow::bail!(
            "unknown profile `{}`; choose one of: {}",
            a.profile,
            Profile::names().join(", ")
        );
    }
    let bar = ProgressBar::new(a.patients as u64)
        .with_style(progress_style())
        .with_prefix(a.profile.clone());
    let started = std::time::Instant::now();
    let cfg = SynthConfig {
        patients: a.patients,
        seed: a.seed,
        profile: a.profile,
        id_base: a.id_base,
    };
    let summary = medfed_synth::synthesize(&a.out, &cfg, |done| bar.set_position(done as u64))?;
    bar.finish();
    println!(
        "wrote {} in {:.1} s:",
        summary.omop_dir.display(),
        started.elapsed().as_secs_f64()
    );
    for (table, rows) in &summary.rows {
        println!("  {table:<22} {rows:>12} rows");
    }
    Ok(())
}
