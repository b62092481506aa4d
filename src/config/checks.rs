//! What would make an app fail at `start`, found before anything starts: values no process can
//! be given (NUL bytes, bad env names), files and addresses two apps would fight over, and what
//! the system must have (the `cwd`, the program, the user and group).
//!
//! The parser reports these with their position in the file; the daemon runs the same value
//! and conflict checks on every `start` request (a request need not come from a file).

use super::{AppConfig, ListenAddr};
use std::path::{Path, PathBuf};

/// Which setting of an app a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `command`.
    Command,
    /// `args[i]`.
    Arg(usize),
    /// `cwd`.
    Cwd,
    /// The name of `env.NAME`, or of `env_SET.NAME` (the table's key first).
    EnvName(String, String),
    /// The value of `env.NAME`, or of `env_SET.NAME`.
    EnvValue(String, String),
    /// `user`.
    User,
    /// `group`.
    Group,
    /// `out_file`.
    OutFile,
    /// `err_file`.
    ErrFile,
    /// `listen[i]`.
    Listen(usize),
    /// `front.listen`.
    FrontListen,
    /// `rlimits.NAME`.
    Rlimit(super::Resource),
    /// A key of its own (`memory_high`).
    Key(&'static str),
}

impl Field {
    /// The key as written under `[apps.NAME]`: `args[1]`, `env.TOKEN`, `front.listen`.
    pub fn key(&self) -> String {
        match self {
            Field::Command => "command".into(),
            Field::Arg(i) => format!("args[{i}]"),
            Field::Cwd => "cwd".into(),
            Field::EnvName(table, name) | Field::EnvValue(table, name) => format!("{table}.{name}"),
            Field::User => "user".into(),
            Field::Group => "group".into(),
            Field::OutFile => "out_file".into(),
            Field::ErrFile => "err_file".into(),
            Field::Listen(i) => format!("listen[{i}]"),
            Field::FrontListen => "front.listen".into(),
            Field::Rlimit(resource) => format!("rlimits.{resource}"),
            Field::Key(key) => (*key).into(),
        }
    }
}

/// One thing wrong with an app's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting.
    pub field: Field,
    /// What is wrong and what to do.
    pub message: String,
    /// Only a warning: it may work where the daemon runs (a program looked up in PATH).
    pub warning: bool,
}

impl Problem {
    fn error(field: Field, message: String) -> Problem {
        Problem { field, message, warning: false }
    }
}

/// Values no process can be given: NUL bytes in the program, an argument or an env value; an
/// env name that is empty or holds `=` or NUL; a soft resource limit above its hard one.
pub fn value_problems(app: &AppConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let nul = "contains a NUL byte (\\u0000), which no program can be given: remove it";
    if app.command.contains('\0') {
        out.push(Problem::error(Field::Command, nul.into()));
    }
    for (i, arg) in app.args.iter().enumerate() {
        if arg.contains('\0') {
            out.push(Problem::error(Field::Arg(i), nul.into()));
        }
    }
    let sets = app.env_sets.iter().map(|(set, vars)| (format!("env_{set}"), vars));
    for (table, vars) in std::iter::once(("env".to_string(), &app.env)).chain(sets) {
        for (name, value) in vars {
            let at = || (table.clone(), name.clone());
            if name.is_empty() {
                out.push(Problem::error(
                    Field::EnvName(table.clone(), name.clone()),
                    "an environment variable needs a name".into(),
                ));
            } else if name.contains('=') || name.contains('\0') {
                let (t, n) = at();
                out.push(Problem::error(
                    Field::EnvName(t, n),
                    "an environment variable name cannot contain '=' or a NUL byte: rename it".into(),
                ));
            }
            if value.contains('\0') {
                let (t, n) = at();
                out.push(Problem::error(Field::EnvValue(t, n), nul.into()));
            }
        }
    }
    for (resource, limit) in &app.rlimits {
        if let Some(message) = limit.problem() {
            out.push(Problem::error(Field::Rlimit(*resource), message));
        }
    }
    if let (Some(high), Some(max)) = (app.limits.memory_high, app.limits.memory_max) {
        if high > max {
            out.push(Problem::error(
                Field::Key("memory_high"),
                format!(
                    "memory_high ({}) is above memory_max ({}): the kernel would never throttle before it kills; set it lower",
                    super::format_size(high),
                    super::format_size(max)
                ),
            ));
        }
    }
    out
}

/// What the system must have for the app to start: its `cwd` (a directory), its program (an
/// absolute path that exists is required; one relative to `cwd` or found in PATH may appear
/// later or differ where the daemon runs, so their absence is a warning), its `user` and
/// `group`. Looks at the file system and the user database: call it off any async runtime.
pub fn system_problems(app: &AppConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if !app.cwd.is_dir() {
        let why = match std::fs::metadata(&app.cwd) {
            Ok(_) => "is not a directory".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be used: {e}"),
        };
        out.push(Problem::error(Field::Cwd, format!("{} {why}: create it or fix the path", app.cwd.display())));
    }
    if let Some(problem) = program_problem(app) {
        out.push(problem);
    }
    // mcpd never creates a log file's directory (it would through a planted symlink).
    let log_files = [(Field::OutFile, app.logs.out_file.as_ref()), (Field::ErrFile, app.logs.err_file.as_ref())];
    for (field, file) in log_files {
        let Some(dir) = file.and_then(|f| f.parent()).filter(|d| !d.as_os_str().is_empty()) else { continue };
        if !dir.is_dir() {
            let message =
                format!("directory {} does not exist: create it (mcpd does not create log directories)", dir.display());
            out.push(Problem::error(field, message));
        }
    }
    if let Some(user) = &app.user {
        let found = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
            Err(_) => nix::unistd::User::from_name(user),
        };
        match found {
            Ok(Some(_)) => {}
            Ok(None) => out.push(Problem::error(
                Field::User,
                format!("no user {user:?} on this system: create it (useradd) or name an existing one"),
            )),
            Err(e) => out.push(Problem::error(Field::User, format!("cannot look up user {user:?}: {e}"))),
        }
    }
    if let Some(group) = app.group.as_ref().filter(|g| g.parse::<u32>().is_err()) {
        match nix::unistd::Group::from_name(group) {
            Ok(Some(_)) => {}
            Ok(None) => out.push(Problem::error(
                Field::Group,
                format!("no group {group:?} on this system: create it (groupadd) or name an existing one"),
            )),
            Err(e) => out.push(Problem::error(Field::Group, format!("cannot look up group {group:?}: {e}"))),
        }
    }
    out
}

fn program_problem(app: &AppConfig) -> Option<Problem> {
    let command = &app.command;
    if command.contains('/') {
        let path = app.cwd.join(command);
        if is_executable(&path) {
            return None;
        }
        let what = if path.exists() { "is not an executable file" } else { "does not exist" };
        return Some(if Path::new(command).is_absolute() {
            Problem::error(Field::Command, format!("{} {what}: install it or fix the path", path.display()))
        } else {
            Problem {
                field: Field::Command,
                message: format!(
                    "{} {what} yet (relative to cwd): build or install it before `mcpd start`",
                    path.display()
                ),
                warning: true,
            }
        });
    }
    let path_var = app
        .env
        .get("PATH")
        .cloned()
        .or_else(|| app.env_file.as_deref().and_then(|f| super::read_env_file(f).ok()?.remove("PATH")))
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    if std::env::split_paths(&path_var).any(|dir| is_executable(&app.cwd.join(dir).join(command))) {
        return None;
    }
    Some(Problem {
        field: Field::Command,
        message: format!(
            "program {command:?} not found in PATH ({path_var}); the daemon looks in its own PATH (or env.PATH): \
             install it, or give its absolute path"
        ),
        warning: true,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A file or address two apps would both use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The later app (index in the slice given) and its setting.
    pub app: usize,
    /// Its setting.
    pub field: Field,
    /// The earlier app that has it too, and its setting.
    pub other: usize,
    /// The earlier app's setting.
    pub other_field: Field,
    /// The file or address, as shown.
    pub what: String,
}

enum Claim {
    File(PathBuf),
    Addr(ListenAddr),
}

impl Claim {
    fn clashes(&self, other: &Claim) -> bool {
        match (self, other) {
            (Claim::File(a), Claim::File(b)) => a == b,
            (Claim::Addr(ListenAddr::Unix(a)), Claim::Addr(ListenAddr::Unix(b))) => a == b,
            (Claim::Addr(ListenAddr::Tcp(a)), Claim::Addr(ListenAddr::Tcp(b))) => {
                a.port() != 0
                    && a.port() == b.port()
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            }
            _ => false,
        }
    }

    fn show(&self) -> String {
        match self {
            Claim::File(p) => p.display().to_string(),
            Claim::Addr(a) => a.to_string(),
        }
    }
}

fn claims(app: &AppConfig) -> Vec<(Field, Claim)> {
    let mut out = Vec::new();
    if let Some(file) = &app.logs.out_file {
        out.push((Field::OutFile, Claim::File(file.clone())));
    }
    if let Some(file) = app.logs.err_file.as_ref().filter(|_| !app.logs.merge_logs) {
        out.push((Field::ErrFile, Claim::File(file.clone())));
    }
    if let Some(file) = &app.pid_file {
        out.push((Field::Key("pid_file"), Claim::File(file.clone())));
    }
    out.extend(app.listen.iter().enumerate().map(|(i, a)| (Field::Listen(i), Claim::Addr(a.clone()))));
    if let Some(front) = &app.front {
        out.push((Field::FrontListen, Claim::Addr(front.listen.clone())));
    }
    out
}

/// Log files (`out_file`, `err_file`) and listening addresses (`listen`, `front.listen`) that
/// two apps share: their rotations would fight, the second bind would fail. Each conflict is
/// reported on the later app. Apps of the same name (a redefinition) are not compared. Linear
/// in the number of claims (claims are grouped by path or port).
pub fn conflicts(apps: &[&AppConfig]) -> Vec<Conflict> {
    #[derive(PartialEq, Eq, Hash)]
    enum Bucket {
        Path(PathBuf),
        Port(u16),
    }
    let mut seen: std::collections::HashMap<Bucket, Vec<(usize, Field, Claim)>> = Default::default();
    let mut out = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        for (field, claim) in claims(app) {
            let bucket = match &claim {
                Claim::File(p) | Claim::Addr(ListenAddr::Unix(p)) => Bucket::Path(p.clone()),
                Claim::Addr(ListenAddr::Tcp(a)) => Bucket::Port(a.port()),
            };
            let earlier = seen.entry(bucket).or_default();
            let clash = earlier.iter().find(|(j, _, theirs)| apps[*j].name != app.name && theirs.clashes(&claim));
            if let Some((j, other_field, _)) = clash {
                out.push(Conflict {
                    app: i,
                    field: field.clone(),
                    other: *j,
                    other_field: other_field.clone(),
                    what: claim.show(),
                });
            }
            earlier.push((i, field, claim));
        }
    }
    out
}

impl Conflict {
    /// What is wrong and what to do, naming the other app's setting as `other`.
    pub fn message(&self, other: &str) -> String {
        match self.field {
            Field::Key("pid_file") => format!(
                "{} is also {other}: two apps cannot share a pid file (each would overwrite the other's pid); give each its own",
                self.what
            ),
            Field::OutFile | Field::ErrFile => format!(
                "{} is also {other}: two apps cannot share a log file (their rotations would fight); give each its own",
                self.what
            ),
            _ => format!(
                "{} is also {other}: two apps cannot listen on one address (the second bind would fail); give each its own",
                self.what
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppName;

    fn app(name: &str) -> AppConfig {
        AppConfig::new(AppName::new(name).unwrap(), "sh".into(), vec![], "/".into())
    }

    #[test]
    fn values_no_process_can_be_given() {
        let mut a = app("a");
        a.args = vec!["ok".into(), "x\0y".into()];
        a.env.insert("A=B".into(), "1".into());
        a.env.insert(String::new(), "1".into());
        a.env.insert("OK".into(), "v\0".into());
        use crate::config::{Resource, Rlimit, RlimitValue::Limited};
        a.rlimits.insert(Resource::Nofile, Rlimit { soft: Limited(4096), hard: Limited(1024) });
        a.rlimits.insert(Resource::Core, Rlimit { soft: Limited(0), hard: Limited(1024) });
        let fields: Vec<Field> = value_problems(&a).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                Field::Arg(1),
                Field::EnvName("env".into(), String::new()),
                Field::EnvName("env".into(), "A=B".into()),
                Field::EnvValue("env".into(), "OK".into()),
                Field::Rlimit(Resource::Nofile)
            ]
        );
        assert!(value_problems(&app("b")).is_empty());
    }

    #[test]
    fn what_the_system_must_have() {
        let mut a = app("a");
        assert!(system_problems(&a).is_empty(), "sh is in PATH, / exists");
        a.cwd = "/nonexistent/dir".into();
        a.command = "/nonexistent/program".into();
        a.user = Some("no-such-user-here".into());
        a.group = Some("no-such-group-here".into());
        let problems = system_problems(&a);
        let fields: Vec<(Field, bool)> = problems.iter().map(|p| (p.field.clone(), p.warning)).collect();
        assert_eq!(
            fields,
            [(Field::Cwd, false), (Field::Command, false), (Field::User, false), (Field::Group, false)],
            "{problems:?}"
        );
        let mut b = app("b");
        b.command = "no-such-program-here".into();
        assert!(system_problems(&b)[0].warning, "not in PATH: the daemon's PATH may differ");
        b.command = "./no-such-program-here".into();
        assert!(system_problems(&b)[0].warning, "relative: may be built later");
    }

    #[test]
    fn shared_files_and_addresses() {
        let (mut a, mut b, mut c) = (app("a"), app("b"), app("c"));
        a.logs.out_file = Some("/var/log/x.log".into());
        b.logs.err_file = Some("/var/log/x.log".into());
        a.listen = vec![ListenAddr::Tcp("0.0.0.0:3000".parse().unwrap())];
        c.front = Some(crate::config::FrontConfig::new(ListenAddr::Tcp("127.0.0.1:3000".parse().unwrap())));
        let found = conflicts(&[&a, &b, &c]);
        let pairs: Vec<(usize, Field, usize, Field)> =
            found.iter().map(|c| (c.app, c.field.clone(), c.other, c.other_field.clone())).collect();
        assert_eq!(
            pairs,
            [(1, Field::ErrFile, 0, Field::OutFile), (2, Field::FrontListen, 0, Field::Listen(0))],
            "{found:?}"
        );
        // The same name is a redefinition, not a second app; merged logs have no err_file.
        let mut again = a.clone();
        again.logs.merge_logs = true;
        assert!(conflicts(&[&a, &again]).is_empty());
        b.logs.merge_logs = true;
        assert!(conflicts(&[&a, &b]).is_empty());
    }
}
