//! `pid_file` (PM2's): a file holding the pid of the app's serving generation, written when
//! that changes and removed when none serves. The writes run on blocking threads, in order.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One app task's pid file.
#[derive(Debug, Default)]
pub(crate) struct PidFile {
    /// The file and pid last asked for.
    last: Option<(PathBuf, Option<u32>)>,
    /// The number of the last update asked for, and (shared with the writers) of the last one
    /// written: a writer that finds a later one done does nothing.
    asked: u64,
    written: Arc<Mutex<u64>>,
}

impl PidFile {
    /// Makes `path` (if any) hold `pid`, or removes it when `pid` is none; a file the app no
    /// longer names is removed.
    pub fn update(&mut self, path: Option<&Path>, pid: Option<u32>) {
        let wanted = path.map(|p| (p.to_path_buf(), pid));
        if wanted == self.last {
            return;
        }
        let old = match (&self.last, &wanted) {
            (Some((old, _)), Some((new, _))) if old == new => None,
            (Some((old, _)), _) => Some(old.clone()),
            (None, _) => None,
        };
        self.last = wanted.clone();
        self.asked += 1;
        let (n, written) = (self.asked, self.written.clone());
        tokio::task::spawn_blocking(move || {
            let mut done = written.lock().expect("pid file lock");
            if *done > n {
                return;
            }
            *done = n;
            if let Some(old) = old {
                let _ = std::fs::remove_file(old);
            }
            match wanted {
                Some((path, Some(pid))) => {
                    if let Err(e) = write(&path, pid) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file");
                    }
                }
                Some((path, None)) => drop(std::fs::remove_file(path)),
                None => {}
            }
        });
    }
}

/// Writes `pid` to a new file beside `path`, then renames it over `path`: a reader never sees
/// half a pid, and a symlink planted at `path` is replaced, not followed.
fn write(path: &Path, pid: u32) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = file.write_all(format!("{pid}\n").as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
