//! `medfed bench complementary`: complementary suppression on a condition × sex × decade table
//! with many small cells, checked against margins released before (people per condition, per
//! sex, and the total), as the hub shows hidden groups (blank, per-site k) and as secure
//! aggregation hides them (absent). Prints cells, primaries, complements chosen, the share of
//! released people the complements cost, and the time to choose them; and the documented
//! example (sdcTable's microdata1) with what sdcTable withholds.

use std::time::Instant;

use comfy_table::Table as Grid;
use medfed_privacy::complementary::{Earlier, Table, protect};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stats;

#[derive(clap::Args)]
pub struct ComplementaryArgs {
    /// Conditions (rows of the table; × 2 sexes × 10 decades).
    #[arg(long, default_value_t = 300)]
    conditions: usize,
    /// Minimum cell count k.
    #[arg(long, default_value_t = 10)]
    k: i64,
    /// Timed runs per case.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

type Cells = Vec<(Vec<String>, i64)>;

/// People per (condition, sex, decade): heavy-tailed condition sizes, so rare conditions give
/// many small cells.
fn synthetic(conditions: usize) -> Cells {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut cells = Vec::new();
    for c in 0..conditions {
        let size = 20_000.0 / (1.0 + c as f64).powf(0.8);
        for sex in ["F", "M"] {
            for decade in 0..10 {
                let mean = size * (0.2 + 0.8 * rng.random::<f64>()) / 20.0;
                let n = (mean * (0.5 + rng.random::<f64>())).round() as i64;
                if n > 0 {
                    cells.push((
                        vec![format!("c{c:04}"), sex.into(), format!("{decade}0s")],
                        n,
                    ));
                }
            }
        }
    }
    cells
}

pub fn run(a: ComplementaryArgs) -> anyhow::Result<()> {
    let k = a.k;
    let cells = synthetic(a.conditions);
    let margins = [
        Earlier::margin(&cells, &["condition"], &[0], k),
        Earlier::margin(&cells, &["sex"], &[1], k),
        Earlier::margin(&cells, &[], &[], k),
    ];
    let dims: Vec<String> = ["condition", "sex", "decade"].map(String::from).into();
    let released_people: i64 = cells.iter().filter(|c| c.1 >= k).map(|c| c.1).sum();
    let mut grid = Grid::new();
    grid.set_header([
        "hidden groups shown as",
        "cells",
        "primary",
        "complements",
        "people in complements",
        "p50 ms",
        "p99 ms",
    ]);
    for gaps in [false, true] {
        let table = Table {
            dims: dims.clone(),
            cells: cells
                .iter()
                .filter(|c| !gaps || c.1 >= k)
                .map(|(key, n)| (key.clone(), (*n >= k).then_some(*n)))
                .collect(),
            gaps,
        };
        let mut ms = Vec::new();
        let mut chosen = Vec::new();
        for _ in 0..a.runs.max(1) {
            let t = Instant::now();
            chosen = protect(&table, &margins, k).map_err(|e| anyhow::anyhow!("{e}"))?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let cost: i64 = chosen.iter().filter_map(|&i| table.cells[i].1).sum();
        let (p50, p99) = stats(ms);
        grid.add_row([
            if gaps {
                "absent (secure aggregation)"
            } else {
                "blank (per-site k)"
            }
            .to_string(),
            cells.len().to_string(),
            cells.iter().filter(|c| c.1 < k).count().to_string(),
            chosen.len().to_string(),
            format!(
                "{cost} ({:.2}% of released)",
                100.0 * cost as f64 / released_people as f64
            ),
            format!("{p50:.1}"),
            format!("{p99:.1}"),
        ]);
    }
    println!(
        "complementary suppression, condition × sex × decade, margins: condition, sex, total; k = {k}\n{grid}"
    );
    println!("{}", microdata1(k)?);
    Ok(())
}

/// sdcTable's documented example: region × gender, (A, female) = 2 primary, all margins.
fn microdata1(k: i64) -> anyhow::Result<String> {
    let cells = medfed_privacy::complementary::microdata1();
    let table = Table {
        dims: vec!["region".into(), "gender".into()],
        cells: cells
            .iter()
            .map(|(key, n)| (key.clone(), (*n >= k).then_some(*n)))
            .collect(),
        gaps: false,
    };
    let margins = [
        Earlier::margin(&cells, &["region"], &[0], k),
        Earlier::margin(&cells, &["gender"], &[1], k),
        Earlier::margin(&cells, &[], &[], k),
    ];
    let chosen = protect(&table, &margins, k).map_err(|e| anyhow::anyhow!("{e}"))?;
    let names: Vec<String> = chosen.iter().map(|&i| table.cells[i].0.join("/")).collect();
    Ok(format!(
        "sdcTable microdata1 (A/female = 2 primary): complements {} (sdcTable: A/male, \
         C/female, C/male)",
        names.join(", ")
    ))
}
