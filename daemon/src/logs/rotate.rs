//! Rotation: the live file is renamed to `NAME.out.log.2026-11-24T12-00-00.123Z` (names sort
//! in time order) and a new one is opened; compression and retention run on a thread of their
//! own, off the write path.

use flate2::write::GzEncoder;
use mcpd_core::config::LogConfig;
use std::path::{Path, PathBuf};

/// Renames `path` aside, then compresses and prunes in the background.
pub(super) fn rotate(path: &Path, config: &LogConfig) -> std::io::Result<()> {
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().replace(':', "-");
    let mut rotated = PathBuf::from(format!("{}.{stamp}", path.display()));
    let mut n = 1;
    while rotated.exists() || PathBuf::from(format!("{}.gz", rotated.display())).exists() {
        rotated = PathBuf::from(format!("{}.{stamp}-{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &rotated)?;
    let (live, compress, retain) = (path.to_path_buf(), config.log_compress, config.log_retain as usize);
    std::thread::Builder::new().name("mcpd-logrotate".into()).spawn(move || {
        if compress {
            if let Err(e) = gzip(&rotated) {
                tracing::warn!(file = %rotated.display(), error = %e, "cannot compress a rotated log");
            }
        }
        prune(&live, retain);
    })?;
    Ok(())
}

fn gzip(path: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let partial = PathBuf::from(format!("{}.gz.partial", path.display()));
    let mut input = std::fs::File::open(path)?;
    let mut encoder = GzEncoder::new(std::fs::File::create(&partial)?, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    std::fs::rename(&partial, &gz)?;
    std::fs::remove_file(path)
}

/// The rotated files of `live`, oldest first.
pub(super) fn rotated_files(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else { return Vec::new() };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".partial"))
        })
        .collect();
    files.sort();
    files
}

fn prune(live: &Path, retain: usize) {
    let files = rotated_files(live);
    for old in files.iter().take(files.len().saturating_sub(retain)) {
        let _ = std::fs::remove_file(old);
    }
}

/// Removes every rotated file of `live` (`mcpd flush`).
pub(super) fn remove_rotated(live: &Path) -> std::io::Result<()> {
    for file in rotated_files(live) {
        std::fs::remove_file(file)?;
    }
    Ok(())
}
