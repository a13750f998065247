//! `medfed site rotate-key`: a new key-encryption key for a site.
//!
//! Envelope encryption makes this cheap: the Parquet data keys are re-wrapped (no table is
//! rewritten) and sealed files get a new header. Every new file is written beside the old one
//! first and swapped in only when all are ready; the new key replaces the old one last.

use std::path::{Path, PathBuf};

use medfed_keys::KEYRING;
use medfed_keys::keyring::{KeyError, KeyFile, KeyProvider, Keyring};
use medfed_keys::vault;

use crate::bronze::Bronze;
use crate::pipeline::key_path;

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Id of the retired key.
    pub old: String,
    /// Id of the new key.
    pub new: String,
    /// Keyrings re-wrapped.
    pub keyrings: usize,
    /// Sealed files re-sealed.
    pub sealed: usize,
}

/// Rotates the site's KEK.
pub fn rotate_key(site: &Path) -> Result<Rotation, String> {
    let key = key_path(site);
    let next = key.with_extension("key.new");
    if next.exists() {
        return Err(format!(
            "{} exists: an earlier rotation was interrupted. Data sealed under it reads with that key; move it to {} if `medfed site` cannot read the tables, else delete it, then retry",
            next.display(),
            key.display()
        ));
    }
    let old = KeyFile::open(&key).map_err(|e| e.to_string())?;
    let new = KeyFile::create(&next).map_err(|e| e.to_string())?;
    let mut swaps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let staged =
        |path: &Path, bytes: Vec<u8>, swaps: &mut Vec<(PathBuf, PathBuf)>| -> Result<(), String> {
            let tmp = path.with_extension("rotating");
            std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
            swaps.push((tmp, path.to_path_buf()));
            Ok(())
        };
    let result = (|| -> Result<(usize, usize), String> {
        let mut keyrings = 0;
        for dir in ["omop", "quarantine"] {
            let path = site.join(dir).join(KEYRING);
            if let Some(ring) = Keyring::load(&path).map_err(|e| e.to_string())? {
                let rewrapped = ring
                    .rewrap(&old, &new)
                    .map_err(|e: KeyError| e.to_string())?;
                let json = serde_json::to_vec_pretty(&rewrapped).map_err(|e| e.to_string())?;
                staged(&path, json, &mut swaps)?;
                keyrings += 1;
            }
        }
        let mut sealed_files = Bronze::new(site).sealed_files();
        if let Ok(entries) = std::fs::read_dir(site.join("silver")) {
            sealed_files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "sealed")),
            );
        }
        for path in &sealed_files {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let resealed = vault::reseal(&old, &new, &bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            staged(path, resealed, &mut swaps)?;
        }
        Ok((keyrings, sealed_files.len()))
    })();
    let (keyrings, sealed) = match result {
        Ok(n) => n,
        Err(e) => {
            for (tmp, _) in &swaps {
                let _ = std::fs::remove_file(tmp);
            }
            let _ = std::fs::remove_file(&next);
            return Err(e);
        }
    };
    for (tmp, path) in &swaps {
        std::fs::rename(tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::rename(&next, &key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(Rotation {
        old: old.key_id(),
        new: new.key_id(),
        keyrings,
        sealed,
    })
}
