//! `mcpd save` / `mcpd resurrect`: the app list in `$MCPD_HOME/dump.json`, written atomically
//! (temporary file, fsync, rename, fsync of the directory), versioned, and readable by every
//! later mcpd (fields added since are filled with their defaults). It holds the apps' env
//! values, so it is written with mode 0600.

use crate::config::AppConfig;
use crate::paths::Paths;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// The format written now.
pub const FORMAT_VERSION: u32 = 1;

/// One saved app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedApp {
    /// Its config.
    pub config: AppConfig,
    /// Whether it was running (it is started on resurrect) or stopped (only defined).
    pub running: bool,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// [`FORMAT_VERSION`] when written.
    pub version: u32,
    /// When, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub saved_at_unix_ms: u64,
    /// The apps, sorted by name.
    pub apps: Vec<SavedApp>,
}

/// The dump file of a home.
pub fn dump_path(paths: &Paths) -> PathBuf {
    paths.home().join("dump.json")
}

/// Writes the app list atomically.
pub fn save(paths: &Paths, apps: Vec<SavedApp>) -> std::io::Result<PathBuf> {
    let path = dump_path(paths);
    let saved = Saved {
        version: FORMAT_VERSION,
        saved_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        apps,
    };
    let tmp = path.with_extension("json.tmp");
    // Env values are secrets: the file is created 0600 before anything is written to it (a
    // stale temporary file, with whatever mode, is removed first; never followed if a link).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        serde_json::to_writer_pretty(&mut file, &saved)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(paths.home())?.sync_all()?;
    Ok(path)
}

/// Why a dump cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a dump this mcpd understands.
    #[error("{path} is not a saved app list this mcpd can read: {reason}; move it aside and `mcpd save` again")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the dump, or `None` when nothing was saved.
pub fn load(paths: &Paths) -> Result<Option<Saved>, LoadError> {
    let path = dump_path(paths);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Io { path, source }),
    };
    parse(&text).map(Some).map_err(|reason| LoadError::Format { path, reason })
}

/// Parses a dump of any version this mcpd knows.
pub fn parse(text: &str) -> Result<Saved, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version = serde_json::from_str::<Version>(text).map_err(|e| e.to_string())?.version;
    if version > FORMAT_VERSION {
        return Err(format!("it was saved by a newer mcpd (format {version}, this one reads up to {FORMAT_VERSION})"));
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_newer_versions_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert!(load(&paths).unwrap().is_none());
        let mut app = AppConfig::new(crate::model::AppName::new("web").unwrap(), "node".into(), vec![], "/srv".into());
        use crate::config::{Resource, Rlimit, RlimitValue};
        app.rlimits.insert(Resource::Nofile, Rlimit { soft: RlimitValue::Limited(1024), hard: RlimitValue::Infinity });
        save(&paths, vec![SavedApp { config: app.clone(), running: true }]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dump_path(&paths)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "env values are secrets");
        let saved = load(&paths).unwrap().unwrap();
        assert_eq!(saved.apps, [SavedApp { config: app, running: true }]);
        assert!(parse(r#"{"version": 99, "apps": []}"#).unwrap_err().contains("newer mcpd"));
        assert!(parse("not json").is_err());
    }

    #[test]
    fn the_first_release_format_still_loads() {
        let text = include_str!("../tests/e2e/fixtures/dump-v1-first-release.json");
        let saved = parse(text).expect("the checked-in dump of the first release loads");
        let names: Vec<&str> = saved.apps.iter().map(|a| a.config.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let web = &saved.apps[1].config;
        assert_eq!(web.ready, crate::config::Ready::None, "fields the first release lacked get their defaults");
        assert_eq!(web.restarts, crate::config::RestartConfig::default());
        assert_eq!(web.kill_timeout, std::time::Duration::from_millis(8000));
        assert!(!saved.apps[0].running);
    }
}
