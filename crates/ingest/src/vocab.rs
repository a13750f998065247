//! Source codes → OMOP standard concept ids.
//!
//! A site's own vocabulary is the shipped `vocab/concept_map.csv` (the codes of the demo and the
//! public samples, ids from OHDSI Athena) plus any `<site>/vocab/*.csv` with the same columns,
//! which add or override rows. A code with no row keeps its `*_source_value`, gets concept 0 (the
//! OMOP convention for "no matching concept") and is counted in the coverage report, so the
//! custodian sees which codes to map next.

use std::collections::HashMap;
use std::path::Path;

const SHIPPED: &str = include_str!("../vocab/concept_map.csv");

/// Vocabularies whose codes are matched case-insensitively (demographic and visit words).
const FOLDED: [&str; 4] = ["Gender", "Race", "Ethnicity", "Visit"];

/// The concept map.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    map: HashMap<(String, String), i32>,
}

impl Vocabulary {
    /// The shipped map only.
    pub fn shipped() -> Self {
        let mut v = Self::default();
        v.add_csv(SHIPPED, "vocab/concept_map.csv")
            .expect("shipped concept map parses");
        v
    }

    /// The shipped map plus the site's `vocab/*.csv`.
    pub fn for_site(site: &Path) -> Result<Self, String> {
        let mut v = Self::shipped();
        let dir = site.join("vocab");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(v);
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            v.add_csv(&text, &f.display().to_string())?;
        }
        Ok(v)
    }

    /// Adds rows `vocabulary,code,concept_id[,domain,name]` (header and `#` lines skipped).
    pub fn add_csv(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .flexible(true)
            .from_reader(text.as_bytes());
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| format!("{origin}: {e}"))?;
            let (Some(vocab), Some(code), Some(id)) = (row.get(0), row.get(1), row.get(2)) else {
                return Err(format!(
                    "{origin} row {}: needs vocabulary,code,concept_id",
                    i + 2
                ));
            };
            let id: i32 = id.trim().parse().map_err(|_| {
                format!(
                    "{origin} row {}: concept_id `{id}` is not an integer",
                    i + 2
                )
            })?;
            self.map.insert(key(vocab.trim(), code.trim()), id);
        }
        Ok(())
    }

    /// The concept of a code, if mapped.
    pub fn concept(&self, vocabulary: &str, code: &str) -> Option<i32> {
        self.map.get(&key(vocabulary, code.trim())).copied()
    }

    /// Number of mapped codes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn key(vocabulary: &str, code: &str) -> (String, String) {
    if FOLDED.contains(&vocabulary) {
        (vocabulary.to_string(), code.to_lowercase())
    } else {
        (vocabulary.to_string(), code.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_rows_extend_and_override_the_shipped_map() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vocab")).unwrap();
        std::fs::write(
            dir.path().join("vocab/local.csv"),
            "vocabulary,code,concept_id\nCVX,140,40213154\nGender,female,1\n",
        )
        .unwrap();
        let v = Vocabulary::for_site(dir.path()).unwrap();
        assert_eq!(v.concept("CVX", "140"), Some(40213154));
        assert_eq!(v.concept("Gender", "FEMALE"), Some(1));
        assert_eq!(v.concept("LOINC", "8480-6"), Some(3004249));
        assert_eq!(v.concept("LOINC", "nope"), None);
        std::fs::write(dir.path().join("vocab/bad.csv"), "v,c,id\nX,1,one\n").unwrap();
        assert!(
            Vocabulary::for_site(dir.path())
                .unwrap_err()
                .contains("not an integer")
        );
    }
}
