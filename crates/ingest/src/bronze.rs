//! Bronze: every input exactly as received, sealed, content-addressed.
//!
//! An object's name is `<format>/<first 16 hex of SHA-256>.<ext>.sealed`, so handing the same
//! export in twice stores it once (re-ingestion is idempotent), and gold can always be rebuilt
//! from bronze when a mapping, a rule or the vocabulary improves. The original file name is not
//! kept: exporters name files after patients (Synthea writes `Given_Family_uuid.json`), and the
//! name would sit in clear on disk and in every quarantine row.

use std::fs;
use std::path::{Path, PathBuf};

use medfed_keys::keyring::KeyProvider;
use medfed_keys::vault;
use sha2::{Digest, Sha256};

/// How a bronze object is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// A FHIR Bundle (or one resource) as JSON.
    FhirJson,
    /// FHIR Bulk Data NDJSON.
    FhirNdjson,
    /// A file of HL7 v2 messages (or one message received over MLLP).
    Hl7,
    /// A CSV file; its mapping is stored beside it.
    Csv,
}

impl Format {
    fn dir(self) -> &'static str {
        match self {
            Format::FhirJson => "fhir",
            Format::FhirNdjson => "fhir-ndjson",
            Format::Hl7 => "hl7",
            Format::Csv => "csv",
        }
    }

    const ALL: [Format; 4] = [
        Format::FhirJson,
        Format::FhirNdjson,
        Format::Hl7,
        Format::Csv,
    ];
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its format.
    pub format: Format,
    /// The sealed file.
    pub path: PathBuf,
    /// `fhir/0123456789abcdef.json`: how quarantine rows and the report name it.
    pub name: String,
}

/// The bronze directory of a site.
pub struct Bronze {
    dir: PathBuf,
}

impl Bronze {
    /// `<site>/bronze`.
    pub fn new(site: &Path) -> Self {
        Self {
            dir: site.join("bronze"),
        }
    }

    /// Seals and stores `bytes` (unless the same content is already there); returns the object
    /// and whether it was new.
    pub fn put(
        &self,
        kek: &dyn KeyProvider,
        format: Format,
        original: &str,
        bytes: &[u8],
    ) -> std::io::Result<(Object, bool)> {
        let digest = hex::encode(&Sha256::digest(bytes)[..8]);
        let ext: String = Path::new(original)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let dir = self.dir.join(format.dir());
        fs::create_dir_all(&dir)?;
        let file = format!("{digest}.{ext}");
        let path = dir.join(format!("{file}.sealed"));
        let name = format!("{}/{file}", format.dir());
        let object = Object {
            format,
            path: path.clone(),
            name: name.clone(),
        };
        if path.exists() {
            return Ok((object, false));
        }
        let sealed = vault::seal(kek, &name, bytes).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, sealed)?;
        fs::rename(&tmp, &path)?;
        Ok((object, true))
    }

    /// Every stored object, in name order (deterministic rebuilds).
    pub fn list(&self) -> std::io::Result<Vec<Object>> {
        let mut out = Vec::new();
        for format in Format::ALL {
            let dir = self.dir.join(format.dir());
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e?.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                let Some(stem) = file.strip_suffix(".sealed") else {
                    continue;
                };
                if stem.ends_with(".mapping") {
                    continue;
                }
                out.push(Object {
                    format,
                    name: format!("{}/{stem}", format.dir()),
                    path,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens an object.
    pub fn read(&self, kek: &dyn KeyProvider, object: &Object) -> Result<Vec<u8>, String> {
        let sealed =
            fs::read(&object.path).map_err(|e| format!("{}: {e}", object.path.display()))?;
        vault::open(kek, &sealed).map_err(|e| format!("{}: {e}", object.name))
    }

    /// Stores the mapping spec that goes with a CSV object.
    pub fn put_mapping(
        &self,
        kek: &dyn KeyProvider,
        csv: &Object,
        spec: &str,
    ) -> std::io::Result<()> {
        let path = mapping_path(csv);
        let sealed = vault::seal(kek, &format!("{}.mapping", csv.name), spec.as_bytes())
            .map_err(std::io::Error::other)?;
        fs::write(path, sealed)
    }

    /// The mapping spec of a CSV object.
    pub fn mapping(&self, kek: &dyn KeyProvider, csv: &Object) -> Result<String, String> {
        let path = mapping_path(csv);
        let sealed = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = vault::open(kek, &sealed).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }

    /// Every sealed file (objects and mappings), for key rotation.
    pub fn sealed_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for format in Format::ALL {
            if let Ok(entries) = fs::read_dir(self.dir.join(format.dir())) {
                out.extend(
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "sealed")),
                );
            }
        }
        out.sort();
        out
    }
}

fn mapping_path(csv: &Object) -> PathBuf {
    let file = csv
        .path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    csv.path
        .with_file_name(file.replace(".sealed", ".mapping.sealed"))
}
