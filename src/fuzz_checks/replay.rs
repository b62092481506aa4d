//! Every file of `fuzz/corpus/TARGET/` (seeds and the inputs of past findings) through the
//! check its fuzz target runs, on the stable toolchain.

use std::path::{Path, PathBuf};

/// The corpus files of `target`; a target without any fails, so a renamed directory is noticed.
fn corpus(root: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root.join("fuzz/corpus").join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// Runs every corpus file of `target` under the repository at `root` through `check`,
/// naming the file that fails (the replay tests of this crate and of the daemon's targets).
pub fn replay(root: &Path, target: &str, check: fn(&[u8])) {
    for (path, bytes) in corpus(root, target) {
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            panic!("fuzz/corpus/{target}/{} fails its check", path.file_name().unwrap().to_string_lossy());
        }
    }
}

#[cfg(test)]
fn replay_here(target: &str, check: fn(&[u8])) {
    replay(Path::new(env!("CARGO_MANIFEST_DIR")), target, check);
}

#[test]
fn frame_corpus() {
    replay_here("frame", super::frame);
}

#[test]
fn config_corpus() {
    replay_here("config", super::config);
}

#[test]
fn config_values_corpus() {
    replay_here("config_values", super::config_values);
}

#[test]
fn dotenv_corpus() {
    replay_here("dotenv", super::dotenv);
}

#[cfg(feature = "probe")]
#[test]
fn mcp_reply_corpus() {
    replay_here("mcp_reply", super::mcp_reply);
}

#[test]
fn dump_corpus() {
    replay_here("dump", super::dump);
}
