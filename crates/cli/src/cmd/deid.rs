//! `medfed deid`: try the free-text PII detector on notes.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use medfed_ingest::deid::text::Scrubber;

#[derive(clap::Args)]
pub struct Args {
    /// A text file: printed back redacted, then the spans found.
    #[arg(long = "in", conflicts_with = "jsonl")]
    input: Option<PathBuf>,
    /// Read JSON lines `{"text": …}` on stdin; write `{"redacted": …, "spans": […]}` per line.
    #[arg(long)]
    jsonl: bool,
    /// Report spans with at least this confidence (0–1).
    #[arg(long, default_value_t = medfed_ingest::deid::text::DEFAULT_THRESHOLD)]
    threshold: f32,
}

#[derive(serde::Deserialize)]
struct Line {
    text: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let scrubber = Scrubber::new().with_threshold(a.threshold);
    if let Some(path) = a.input {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let spans = scrubber.detect(&text, &[], &[]);
        println!("{}", medfed_ingest::deid::text::redact_spans(&text, &spans));
        eprintln!("{} identifier(s):", spans.len());
        for s in &spans {
            eprintln!(
                "  {:>6}–{:<6} {:<22} {:.2}",
                s.start, s.end, s.kind, s.score
            );
        }
        return Ok(());
    }
    if !a.jsonl {
        anyhow::bail!("give --in FILE or --jsonl (JSON lines on stdin)");
    }
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Line { text } = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("line {}: expected {{\"text\": …}}: {e}", i + 1))?;
        let spans = scrubber.detect(&text, &[], &[]);
        let redacted = medfed_ingest::deid::text::redact_spans(&text, &spans);
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "redacted": redacted, "spans": spans }),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
