//! `pid_file` (PM2's): a file holding the pid of the app's serving generation, written when
//! that changes and removed when none serves. The writes run on blocking threads, in order.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How long an app task's end waits for its pid file's last write.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One app task's pid file.
#[derive(Debug, Default)]
pub(crate) struct PidFile {
    /// The file and pid last asked for.
    last: Option<(PathBuf, Option<u32>)>,
    /// The number of the last update asked for, and (shared with the writers) of the last one
    /// written, with the files the app no longer names (removed by whichever writer runs
    /// next): a writer that finds a later one done does nothing else.
    asked: u64,
    written: Arc<Mutex<(u64, Vec<PathBuf>)>>,
    /// The last writer, awaited before the app task ends (a removal must not be lost when
    /// the daemon exits right after).
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl PidFile {
    /// Makes `path` (if any) hold `pid`, or removes it when `pid` is none; a file the app no
    /// longer names is removed.
    pub fn update(&mut self, path: Option<&Path>, pid: Option<u32>) {
        // Called at each snapshot the app publishes: nothing to do, nothing allocated, unless
        // the file or the pid changed.
        if self.last.as_ref().map(|(p, pid)| (p.as_path(), *pid)) == path.map(|p| (p, pid)) {
            return;
        }
        let wanted = path.map(|p| (p.to_path_buf(), pid));
        let old = match (&self.last, &wanted) {
            (Some((old, _)), Some((new, _))) if old == new => None,
            (Some((old, _)), _) => Some(old.clone()),
            (None, _) => None,
        };
        self.last = wanted.clone();
        self.asked += 1;
        let (n, written) = (self.asked, self.written.clone());
        // Bounded: a file is added only when the app's pid_file changes to another.
        written.lock().expect("pid file lock").1.extend(old);
        self.writer = Some(tokio::task::spawn_blocking(move || {
            let mut done = written.lock().expect("pid file lock");
            for stale in std::mem::take(&mut done.1) {
                let _ = std::fs::remove_file(stale);
            }
            if done.0 > n {
                return;
            }
            done.0 = n;
            match wanted {
                Some((path, Some(pid))) => {
                    if let Err(e) = write(&path, pid) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file");
                    }
                }
                Some((path, None)) => drop(std::fs::remove_file(path)),
                None => {}
            }
        }));
    }

    /// Waits for the last write (or removal) asked for, a second at most: a file system that
    /// does not answer must not hold up the app's removal (the write still runs, on its thread).
    pub async fn flush(&mut self) {
        if let Some(writer) = self.writer.take() {
            if tokio::time::timeout(FLUSH_WAIT, writer).await.is_err() {
                tracing::warn!("the pid file's last write has not finished after {FLUSH_WAIT:?}");
            }
        }
    }
}

/// Refuses a directory another user could change under the daemon (which may be root): one
/// that is a symlink, is owned by another user, or that group or others may write to without
/// the sticky bit (`/tmp`'s bit keeps them from renaming or removing the daemon's files).
fn safe_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw() || meta.uid() == 0;
    let open = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
    match meta.is_dir() && ours && !open {
        true => Ok(()),
        false => Err(std::io::Error::other(format!(
            "{} is a symlink, another user's, or writable by others: put the pid file in a directory only the daemon's user (or root) may change",
            dir.display()
        ))),
    }
}

/// Writes `pid` to a new file beside `path`, then renames it over `path`: a reader never sees
/// half a pid, and a symlink planted at `path` is replaced, not followed.
fn write(path: &Path, pid: u32) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    safe_dir(path.parent().unwrap_or(Path::new("/")))?;
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
