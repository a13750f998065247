//! bronze → silver → gold for one site directory.
//!
//! ```text
//! <site>/keys/site.key        key-encryption key (created on first run, mode 0600)
//! <site>/keys/pseudonym.key   HMAC key of pseudonyms and date shifts (never rotated with the KEK:
//!                             a new one would re-pseudonymise every patient)
//! <site>/bronze/<format>/…    inputs as received, sealed, content-addressed
//! <site>/silver/<table>.jsonl.sealed   de-identified facts, one JSON per line
//! <site>/omop/<table>.parquet encrypted OMOP CDM tables + keyring.json (what the site serves)
//! <site>/quarantine/quarantine.parquet  rejected records and facts, encrypted
//! <site>/report.json          the quality report
//! ```
//!
//! Every run rebuilds silver and gold from all of bronze, so gold is a pure function of what
//! was received, the vocabulary and the rules: re-ingesting changes nothing, and improving a
//! mapping is "run it again".

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use medfed_keys::keyring::{self, KeyFile, Keyring};
use medfed_keys::parquet::{self as encrypted, KEYRING};
use medfed_keys::vault;
use rayon::prelude::*;

use crate::bronze::{Bronze, Format, Object};
use crate::deid::Deidentifier;
use crate::model::{Fact, Phi, Record, Reject};
use crate::report::{self, Quarantined, Report};
use crate::rules::Rules;
use crate::source;
use crate::vocab::Vocabulary;

/// What to add to bronze before rebuilding.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// FHIR Bundle JSON files, `.ndjson` files, or directories of them (a Bulk Data export).
    pub fhir: Vec<PathBuf>,
    /// Files of HL7 v2 messages.
    pub hl7: Vec<PathBuf>,
    /// CSV files, each with its mapping spec.
    pub csv: Vec<(PathBuf, PathBuf)>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sealing inputs into bronze.
    Store,
    /// Parsing bronze objects.
    Parse,
    /// Rules, de-identification, silver.
    Check,
    /// Writing gold.
    Write,
}

/// Why a run failed (bad *records* never fail a run: they are quarantined).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("cannot read input {0}: {1}")]
    Input(PathBuf, std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("keys: {0}")]
    Key(#[from] keyring::KeyError),
    #[error("storage: {0}")]
    Io(String),
    #[error("writing tables: {0}")]
    Write(#[from] encrypted::WriteError),
    #[error("building tables: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The KEK file of a site.
pub fn key_path(site: &Path) -> PathBuf {
    site.join("keys").join("site.key")
}

/// Ingests `inputs` into the site at `site` and rebuilds its tables.
pub fn run(
    site: &Path,
    inputs: &Inputs,
    today: NaiveDate,
    progress: &(dyn Fn(Phase, u64, u64) + Sync),
) -> Result<Report, IngestError> {
    let started = Instant::now();
    let kek = KeyFile::open_or_create(&key_path(site))?;
    let pseudonym_key = {
        let p = site.join("keys").join("pseudonym.key");
        if p.exists() {
            keyring::read_secret(&p)?
        } else {
            keyring::create_secret(&p)?
        }
    };
    let vocab = Vocabulary::for_site(site).map_err(IngestError::Config)?;
    let rules = Rules::for_site(site, today).map_err(IngestError::Config)?;
    let bronze = Bronze::new(site);
    let mut report = Report {
        new_inputs: store(&bronze, &kek, inputs, progress)?,
        ..Report::default()
    };

    // Parse every object in parallel; records keep bronze order.
    let objects = bronze.list().map_err(|e| IngestError::Io(e.to_string()))?;
    let total = objects.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let parsed: Vec<(Object, Vec<Record>)> = objects
        .into_par_iter()
        .map(|o| {
            let records = parse_object(&bronze, &kek, &o);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(Phase::Parse, n, total);
            (o, records)
        })
        .collect();

    let mut quarantine = Vec::new();
    let mut facts: Vec<(Fact, usize)> = Vec::new();
    let mut phis: Vec<Phi> = Vec::new();
    let mut phi_of: HashMap<String, usize> = HashMap::new();
    let mut seen_records = HashSet::new();
    let mut raws: Vec<(String, String, crate::model::Origin)> = Vec::new();
    for (object, records) in parsed {
        report.inputs.push(report::InputReport {
            name: object.name.clone(),
            records: records.len(),
        });
        for mut record in records {
            *report.records.entry(record.kind.clone()).or_default() += 1;
            let mut reject_record =
                |report: &mut Report, record: &Record, table: &str, reject: Reject| {
                    report.quarantined(table, &reject);
                    quarantine.push(Quarantined {
                        origin: record.origin.clone(),
                        kind: record.kind.clone(),
                        table: table.to_string(),
                        reject,
                        raw: record.raw.clone(),
                    });
                };
            if let Some(id) = &record.source_id
                && !seen_records.insert(id.clone())
            {
                let reject = Reject::new("duplicate", format!("{id} was already received"));
                reject_record(&mut report, &record, Report::RECORD, reject);
                continue;
            }
            for (table, reject) in std::mem::take(&mut record.failed) {
                reject_record(&mut report, &record, table, reject);
            }
            let parsed = std::mem::replace(&mut record.parsed, Ok(Vec::new()));
            match parsed {
                Err(reject) => reject_record(&mut report, &record, Report::RECORD, reject),
                Ok(list) => {
                    if let Some((patient, phi)) = record.phi.take() {
                        let slot = *phi_of.entry(patient).or_insert_with(|| {
                            phis.push(Phi::default());
                            phis.len() - 1
                        });
                        let into = &mut phis[slot];
                        into.names.extend(phi.names);
                        into.telecom.extend(phi.telecom);
                        into.identifiers.extend(phi.identifiers);
                        into.address.extend(phi.address);
                    }
                    let raw_index = raws.len();
                    raws.push((
                        record.kind.clone(),
                        record.raw.clone(),
                        record.origin.clone(),
                    ));
                    for mut fact in list {
                        match rules.check(&mut fact) {
                            Ok(()) => facts.push((fact, raw_index)),
                            Err(reject) => {
                                reject_record(&mut report, &record, fact.table(), reject)
                            }
                        }
                    }
                }
            }
        }
    }
    progress(Phase::Check, 0, facts.len() as u64);

    // Merge mentions, drop content duplicates, quarantine orphans.
    let facts = merge(facts, &raws, &mut report, &mut quarantine);

    // De-identify.
    let deid = Deidentifier::new(pseudonym_key, today);
    let silver: Vec<Fact> = facts
        .into_par_iter()
        .map(|f| {
            let phi = phi_of.get(f.patient()).map(|&i| &phis[i]);
            deid.apply(f, phi)
        })
        .collect();
    drop(phis);
    for f in &silver {
        report.loaded(f.table());
    }
    write_silver(site, &kek, &silver)?;

    progress(Phase::Write, 0, 1);
    let gold = crate::gold::build(&silver, &vocab)?;
    let omop = site.join("omop");
    std::fs::create_dir_all(&omop).map_err(|e| IngestError::Io(e.to_string()))?;
    let mut ring = Keyring::new(&kek);
    for (name, batch) in &gold.tables {
        let path = omop.join(format!("{name}.parquet"));
        encrypted::write_table(
            &path,
            name,
            batch.schema(),
            std::slice::from_ref(batch),
            Some((&mut ring, &kek)),
        )?;
        let t = report.table(name);
        t.rows = batch.num_rows();
        t.completeness = report::completeness(batch);
        t.coverage = gold.coverage.get(name).cloned();
    }
    ring.save(&omop.join(KEYRING))?;

    let qdir = site.join("quarantine");
    std::fs::create_dir_all(&qdir).map_err(|e| IngestError::Io(e.to_string()))?;
    let mut qring = Keyring::new(&kek);
    let (schema, batch) = report::quarantine_batch(&quarantine)?;
    encrypted::write_table(
        &qdir.join("quarantine.parquet"),
        "quarantine",
        schema,
        &[batch],
        Some((&mut qring, &kek)),
    )?;
    qring.save(&qdir.join(KEYRING))?;

    report.seconds = started.elapsed().as_secs_f64();
    let json = serde_json::to_vec_pretty(&report).map_err(|e| IngestError::Io(e.to_string()))?;
    std::fs::write(site.join("report.json"), json).map_err(|e| IngestError::Io(e.to_string()))?;
    progress(Phase::Write, 1, 1);
    Ok(report)
}

fn store(
    bronze: &Bronze,
    kek: &KeyFile,
    inputs: &Inputs,
    progress: &(dyn Fn(Phase, u64, u64) + Sync),
) -> Result<usize, IngestError> {
    let mut files: Vec<(Format, PathBuf, Option<PathBuf>)> = Vec::new();
    for p in &inputs.fhir {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| IngestError::Input(p.clone(), e))?;
            let mut found: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            found.sort();
            for f in found {
                match f.extension().and_then(|e| e.to_str()) {
                    Some("ndjson") => files.push((Format::FhirNdjson, f, None)),
                    Some("json") => files.push((Format::FhirJson, f, None)),
                    _ => {}
                }
            }
        } else if p.extension().is_some_and(|e| e == "ndjson") {
            files.push((Format::FhirNdjson, p.clone(), None));
        } else {
            files.push((Format::FhirJson, p.clone(), None));
        }
    }
    files.extend(inputs.hl7.iter().map(|p| (Format::Hl7, p.clone(), None)));
    files.extend(
        inputs
            .csv
            .iter()
            .map(|(c, m)| (Format::Csv, c.clone(), Some(m.clone()))),
    );
    let mut new = 0;
    let total = files.len() as u64;
    for (i, (format, path, mapping)) in files.into_iter().enumerate() {
        let bytes = std::fs::read(&path).map_err(|e| IngestError::Input(path.clone(), e))?;
        let spec = match &mapping {
            Some(m) => {
                let text =
                    std::fs::read_to_string(m).map_err(|e| IngestError::Input(m.clone(), e))?;
                source::csv::Mapping::parse(&text)
                    .map_err(|e| IngestError::Config(format!("{}: {e}", m.display())))?;
                Some(text)
            }
            None => None,
        };
        let original = path.file_name().and_then(|f| f.to_str()).unwrap_or("input");
        let (object, fresh) = bronze
            .put(kek, format, original, &bytes)
            .map_err(|e| IngestError::Io(e.to_string()))?;
        if let Some(spec) = spec {
            bronze
                .put_mapping(kek, &object, &spec)
                .map_err(|e| IngestError::Io(e.to_string()))?;
        }
        new += fresh as usize;
        progress(Phase::Store, i as u64 + 1, total);
    }
    Ok(new)
}

fn parse_object(bronze: &Bronze, kek: &KeyFile, o: &Object) -> Vec<Record> {
    let whole = |rule: &str, reason: String| {
        let origin = crate::model::Origin {
            file: o.name.clone(),
            locator: "file".into(),
        };
        vec![Record::new(
            origin,
            "file",
            String::new(),
            Err(Reject::new(rule, reason)),
        )]
    };
    let bytes = match bronze.read(kek, o) {
        Ok(b) => b,
        Err(e) => return whole("storage", e),
    };
    match o.format {
        Format::FhirJson => source::fhir::parse_bundle(&o.name, &bytes),
        Format::FhirNdjson => source::fhir::parse_ndjson(&o.name, &bytes),
        Format::Hl7 => source::hl7::parse_file(&o.name, &bytes),
        Format::Csv => match bronze
            .mapping(kek, o)
            .and_then(|s| source::csv::Mapping::parse(&s))
        {
            Ok(m) => source::csv::parse(&o.name, &bytes, &m),
            Err(e) => whole("mapping", e),
        },
    }
}

/// Merges person and visit mentions (later non-empty fields win), quarantines exact duplicate
/// events and facts about patients no source describes.
fn merge(
    facts: Vec<(Fact, usize)>,
    raws: &[(String, String, crate::model::Origin)],
    report: &mut Report,
    quarantine: &mut Vec<Quarantined>,
) -> Vec<Fact> {
    let mut out: Vec<(Fact, usize)> = Vec::with_capacity(facts.len());
    let mut person_at: HashMap<String, usize> = HashMap::new();
    let mut visit_at: HashMap<(String, String), usize> = HashMap::new();
    let mut content = HashSet::new();
    let mut reject = |report: &mut Report, fact: &Fact, raw: usize, r: Reject| {
        report.quarantined(fact.table(), &r);
        let (kind, text, origin) = &raws[raw];
        quarantine.push(Quarantined {
            origin: origin.clone(),
            kind: kind.clone(),
            table: fact.table().into(),
            reject: r,
            raw: text.clone(),
        });
    };
    let mut pending = Vec::new();
    for (fact, raw) in facts {
        match fact {
            Fact::Person(p) => match person_at.get(&p.patient) {
                Some(&i) => {
                    let (Fact::Person(into), _) = &mut out[i] else {
                        unreachable!("person index")
                    };
                    macro_rules! take { ($($f:ident),*) => { $( if p.$f.is_some() { into.$f = p.$f.clone(); } )* } }
                    take!(gender, birth, race, ethnicity, zip, state, death);
                    report.table("person").merged += 1;
                    report.loaded("person");
                }
                None => {
                    person_at.insert(p.patient.clone(), out.len());
                    out.push((Fact::Person(p), raw));
                }
            },
            Fact::Visit(v) => match visit_at.get(&(v.patient.clone(), v.visit.clone())) {
                Some(&i) => {
                    let (Fact::Visit(into), _) = &mut out[i] else {
                        unreachable!("visit index")
                    };
                    if v.class.is_some() {
                        into.class = v.class.clone();
                    }
                    if v.start.is_some() && into.start.is_none() {
                        into.start = v.start;
                    }
                    if v.end.is_some() {
                        into.end = v.end;
                    }
                    report.table("visit_occurrence").merged += 1;
                    report.loaded("visit_occurrence");
                }
                None => {
                    visit_at.insert((v.patient.clone(), v.visit.clone()), out.len());
                    out.push((Fact::Visit(v), raw));
                }
            },
            other => {
                let key = serde_json::to_string(&other).unwrap_or_default();
                if content.insert(key) {
                    pending.push((other, raw));
                } else {
                    reject(
                        report,
                        &other,
                        raw,
                        Reject::new(
                            "duplicate",
                            "same patient, code, time and value as an earlier record",
                        ),
                    );
                }
            }
        }
    }
    let persons: HashSet<String> = person_at.into_keys().collect();
    let mut kept = Vec::with_capacity(out.len() + pending.len());
    for (f, raw) in out.into_iter().chain(pending) {
        if persons.contains(f.patient()) {
            kept.push(f);
        } else {
            let r = Reject::new(
                "unknown_patient",
                "no Patient/PID/person row describes this patient",
            );
            reject(report, &f, raw, r);
        }
    }
    // Merged mentions were counted as loaded already; the rest are counted after de-identification.
    kept
}

fn write_silver(site: &Path, kek: &KeyFile, silver: &[Fact]) -> Result<(), IngestError> {
    let dir = site.join("silver");
    std::fs::create_dir_all(&dir).map_err(|e| IngestError::Io(e.to_string()))?;
    let mut by_table: std::collections::BTreeMap<&str, Vec<u8>> = std::collections::BTreeMap::new();
    for f in silver {
        let buf = by_table.entry(f.table()).or_default();
        serde_json::to_writer(&mut *buf, f).map_err(|e| IngestError::Io(e.to_string()))?;
        buf.push(b'\n');
    }
    for (table, lines) in by_table {
        let name = format!("silver/{table}.jsonl");
        let sealed = vault::seal(kek, &name, &lines).map_err(|e| IngestError::Io(e.to_string()))?;
        std::fs::write(dir.join(format!("{table}.jsonl.sealed")), sealed)
            .map_err(|e| IngestError::Io(e.to_string()))?;
    }
    Ok(())
}
