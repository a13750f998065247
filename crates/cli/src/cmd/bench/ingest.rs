//! `medfed bench ingest` and `medfed bench deid`: ingestion throughput (FHIR patients/s, HL7
//! messages/s, end to end into encrypted gold) and the note scrubber's speed and accuracy.

use std::path::{Path, PathBuf};
use std::time::Instant;

use medfed_ingest::Inputs;
use medfed_ingest::deid::text::{Scrubber, eval};
use serde_json::json;

/// Where the repository keeps the public samples the benchmarks replicate.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests/fixtures")
}

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Synthea-style patients to ingest (the sample bundles, copied with fresh ids).
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// HL7 v2 messages to ingest (half ADT^A01, half ORU^R01 with five results).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Directory of FHIR Bundle JSON files to replicate (default: the repository's samples).
    #[arg(long)]
    fhir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Copies of `bundles` until `patients` patients: every UUID gets a per-copy suffix, so each copy
/// is a distinct patient with the same clinical content.
fn replicate(bundles: &[String], patients: usize, out: &Path) -> anyhow::Result<(usize, u64)> {
    let uuid = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")?;
    let (mut resources, mut bytes) = (0, 0);
    for i in 0..patients {
        let src = &bundles[i % bundles.len()];
        let copy = uuid.replace_all(src, |c: &regex::Captures| format!("{}-{i}", &c[0]));
        resources += copy.matches("\"resourceType\"").count() - 1;
        bytes += copy.len() as u64;
        std::fs::write(out.join(format!("b{i:06}.json")), copy.as_bytes())?;
    }
    Ok((resources, bytes))
}

fn hl7_feed(messages: usize) -> String {
    let mut out = String::new();
    for i in 0..messages {
        let patient = i / 2;
        if i % 2 == 0 {
            out.push_str(&format!(
                "MSH|^~\\&|ADT|GH|MEDFED|SITE|20240101083000||ADT^A01|A{i}|P|2.5\rEVN|A01|20240101083000\rPID|1||P{patient}^^^GH^MR||DOE{patient}^JANE^Q||19{:02}0{}1{}|F|||{} MAIN ST^^BOSTON^MA^021{:02}||(617)555-{:04}\rPV1|1|I|W1^1^1|||||||||||||||V{patient}|||||||||||||||||||||||||20240101083000\r\n",
                40 + patient % 50,
                1 + patient % 9,
                patient % 10,
                patient % 900 + 1,
                patient % 100,
                patient % 10_000
            ));
        } else {
            out.push_str(&format!("MSH|^~\\&|LAB|GH|MEDFED|SITE|20240101093000||ORU^R01|R{i}|P|2.5\rPID|1||P{patient}^^^GH^MR||DOE{patient}^JANE^Q||19{:02}0{}1{}|F\rOBR|1|||24331-1^Lipid panel^LN|||20240101090000\r", 40 + patient % 50, 1 + patient % 9, patient % 10));
            for (n, (code, value, unit)) in [
                ("2345-7", 5.0 + (patient % 40) as f64 / 10.0, "mmol/L"),
                ("2093-3", 190.0, "mg/dL"),
                ("2085-9", 52.0, "mg/dL"),
                ("2571-8", 140.0, "mg/dL"),
                ("4548-4", 6.1, "%"),
            ]
            .iter()
            .enumerate()
            {
                out.push_str(&format!(
                    "OBX|{}|NM|{code}^^LN||{value}|{unit}|||||F\r",
                    n + 1
                ));
            }
            out.push_str("\r\n");
        }
    }
    out
}

pub fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let dir = a.fhir.clone().unwrap_or_else(|| fixtures().join("fhir"));
    let mut bundles = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|e| e == "json") {
            bundles.push(std::fs::read_to_string(&p)?);
        }
    }
    anyhow::ensure!(!bundles.is_empty(), "no FHIR bundles in {}", dir.display());
    let work = tempfile::tempdir()?;
    let input = work.path().join("fhir");
    std::fs::create_dir_all(&input)?;
    let (resources, bytes) = replicate(&bundles, a.patients, &input)?;
    let today = chrono::Utc::now().date_naive();

    let t = Instant::now();
    let fhir = medfed_ingest::run(
        &work.path().join("site-fhir"),
        &Inputs {
            fhir: vec![input],
            ..Inputs::default()
        },
        today,
        &|_, _, _| {},
    )?;
    let fhir_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = medfed_ingest::run(
        &work.path().join("site-fhir"),
        &Inputs::default(),
        today,
        &|_, _, _| {},
    )?;
    let rebuild_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        fhir.balanced() && again.balanced(),
        "report does not balance"
    );

    let feed = hl7_feed(a.messages);
    let t = Instant::now();
    let parsed = medfed_ingest::source::hl7::parse_file("bench", feed.as_bytes());
    let parse_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        parsed.iter().all(|r| r.parsed.is_ok()),
        "a generated message failed to parse"
    );
    let hl7_path = work.path().join("feed.hl7");
    std::fs::write(&hl7_path, &feed)?;
    let t = Instant::now();
    let hl7 = medfed_ingest::run(
        &work.path().join("site-hl7"),
        &Inputs {
            hl7: vec![hl7_path],
            ..Inputs::default()
        },
        today,
        &|_, _, _| {},
    )?;
    let hl7_s = t.elapsed().as_secs_f64();

    let rows = |r: &medfed_ingest::Report| r.tables.values().map(|t| t.rows).sum::<usize>();
    let out = json!({
        "fhir": { "patients": a.patients, "resources": resources, "mb": bytes as f64 / 1e6, "seconds": fhir_s,
                  "patients_per_s": a.patients as f64 / fhir_s, "resources_per_s": resources as f64 / fhir_s,
                  "gold_rows": rows(&fhir), "rebuild_seconds": rebuild_s },
        "hl7": { "messages": a.messages, "mb": feed.len() as f64 / 1e6, "parse_seconds": parse_s,
                 "parse_messages_per_s": a.messages as f64 / parse_s, "seconds": hl7_s,
                 "messages_per_s": a.messages as f64 / hl7_s, "gold_rows": rows(&hl7) },
    });
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "FHIR R4 → encrypted OMOP: {} patients ({} resources, {:.1} MB) in {:.2} s",
        a.patients,
        resources,
        bytes as f64 / 1e6,
        fhir_s
    );
    println!(
        "  {:>10.0} patients/s  {:>10.0} resources/s  {} gold rows; rebuild from bronze {:.2} s",
        a.patients as f64 / fhir_s,
        resources as f64 / fhir_s,
        rows(&fhir),
        rebuild_s
    );
    println!(
        "HL7 v2 → encrypted OMOP: {} messages ({:.1} MB) in {:.2} s",
        a.messages,
        feed.len() as f64 / 1e6,
        hl7_s
    );
    println!(
        "  {:>10.0} messages/s end to end  {:>10.0} messages/s parse only  {} gold rows",
        a.messages as f64 / hl7_s,
        a.messages as f64 / parse_s,
        rows(&hl7)
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct DeidArgs {
    /// Copies of the labelled set to time (100 texts each).
    #[arg(long, default_value_t = 200)]
    copies: usize,
    /// A labelled set in Presidio-research's JSON format (default: the repository's sample).
    #[arg(long)]
    labelled: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also list every missed identifier and every spurious detection, with its sample number.
    #[arg(long)]
    errors: bool,
}

pub fn deid(a: DeidArgs) -> anyhow::Result<()> {
    let path = a
        .labelled
        .unwrap_or_else(|| fixtures().join("pii/generated_small.json"));
    let samples = eval::load(&std::fs::read_to_string(&path)?)?;
    let t = Instant::now();
    let scrubber = Scrubber::new();
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let e = eval::evaluate(&scrubber, &samples);
    let texts: Vec<&str> = samples.iter().map(|s| s.full_text.as_str()).collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum::<usize>() * a.copies;
    let t = Instant::now();
    let mut spans = 0;
    for _ in 0..a.copies {
        for text in &texts {
            spans += scrubber.detect(text, &[], &[]).len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let n = texts.len() * a.copies;
    // A clinical-note-sized text: the samples joined into ~6 kB documents.
    let note: String = texts.join("\n");
    let t = Instant::now();
    for _ in 0..a.copies {
        std::hint::black_box(scrubber.detect(&note, &[], &[]));
    }
    let note_s = t.elapsed().as_secs_f64();
    let types: serde_json::Map<String, serde_json::Value> = e
        .types
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({ "labelled": v.labelled, "caught": v.caught, "recall": v.recall() }),
            )
        })
        .collect();
    let out = json!({
        "texts": n, "mb": bytes as f64 / 1e6, "seconds": secs, "texts_per_s": n as f64 / secs,
        "mb_per_s": bytes as f64 / 1e6 / secs, "spans": spans, "build_ms": build_ms,
        "note_bytes": note.len(), "notes_per_s": a.copies as f64 / note_s,
        "note_mb_per_s": (note.len() * a.copies) as f64 / 1e6 / note_s,
        "precision": e.precision(), "recall": e.recall(), "types": types,
    });
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "PII detector on {} ({} texts × {}):",
        path.display(),
        texts.len(),
        a.copies
    );
    println!(
        "  {:>10.0} texts/s  {:>8.1} MB/s  ({} spans; dictionaries built in {build_ms:.0} ms)",
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        spans
    );
    println!(
        "  {:>10.0} notes/s  {:>8.1} MB/s  on {}-byte notes",
        a.copies as f64 / note_s,
        (note.len() * a.copies) as f64 / 1e6 / note_s,
        note.len()
    );
    println!(
        "  precision {:.3}, recall {:.3} (identifier types; {} reported, not counted)",
        e.precision(),
        e.recall(),
        eval::NOT_IDENTIFIERS.join(", ")
    );
    for (t, s) in &e.types {
        println!(
            "    {t:<20} {:>3}/{:<3} {:>5.1}%",
            s.caught,
            s.labelled,
            100.0 * s.recall()
        );
    }
    if a.errors {
        for (title, list) in [("missed", &e.missed), ("spurious", &e.spurious)] {
            println!("  {title} ({}):", list.len());
            for f in list {
                println!("    #{:<4} {:<20} {:?}", f.sample, f.kind, f.text);
            }
        }
    }
    Ok(())
}
