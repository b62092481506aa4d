//! The monitor's state and how keys and daemon events change it. No drawing, no I/O: the
//! returned [`Command`]s are carried out by the link to the daemon.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mcpd_core::model::{AppDetail, AppInfo, AppName, LogLine};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Samples kept per app for the sparklines (about two minutes).
pub const HISTORY: usize = 120;
/// Log lines kept for the selected app.
const LOG_LINES: usize = 500;

/// A verb the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Restart,
    Reload,
    Stop,
    Start,
    Delete,
}

impl Act {
    /// The verb as the CLI spells it.
    pub fn verb(&self) -> &'static str {
        match self {
            Act::Restart => "restart",
            Act::Reload => "reload",
            Act::Stop => "stop",
            Act::Start => "start",
            Act::Delete => "delete",
        }
    }
}

/// What the link to the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a verb on an app.
    Act(Act, AppName),
    /// Follow this app's logs and fetch its details (None: nothing selected).
    Select(Option<AppName>),
    /// Fetch the app's details again.
    Detail(AppName),
}

/// What the link reports.
#[derive(Debug, Clone)]
pub enum Incoming {
    Connected,
    Disconnected(String),
    Apps(Vec<AppInfo>),
    Detail(Box<AppDetail>),
    Logs { app: String, lines: Vec<LogLine> },
    Outcome(String),
}

/// Which overlay or input has the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Filter,
    ConfirmDelete(AppName),
    Help,
}

/// Which pane is enlarged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Table,
    Details,
    Logs,
}

/// CPU and memory samples of one app.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub cpu: VecDeque<u64>,
    pub memory: VecDeque<u64>,
    last: Option<Instant>,
}

/// The monitor's whole state.
#[derive(Debug)]
pub struct App {
    pub apps: Vec<AppInfo>,
    pub selected: usize,
    pub filter: String,
    pub mode: Mode,
    pub focus: Focus,
    pub detail: Option<AppDetail>,
    pub logs: VecDeque<LogLine>,
    pub history: HashMap<String, History>,
    pub status: String,
    pub connected: bool,
    pub disconnect_reason: Option<String>,
    pub quit: bool,
}

impl Default for App {
    fn default() -> App {
        App {
            apps: Vec::new(),
            selected: 0,
            filter: String::new(),
            mode: Mode::Normal,
            focus: Focus::Table,
            detail: None,
            logs: VecDeque::new(),
            history: HashMap::new(),
            status: String::new(),
            connected: false,
            disconnect_reason: Some("connecting".into()),
            quit: false,
        }
    }
}

impl App {
    /// The apps the filter lets through.
    pub fn visible(&self) -> Vec<&AppInfo> {
        self.apps.iter().filter(|a| a.name.as_str().contains(self.filter.as_str())).collect()
    }

    /// The selected app.
    pub fn selected_app(&self) -> Option<&AppInfo> {
        self.visible().get(self.selected).copied()
    }

    fn selected_name(&self) -> Option<AppName> {
        self.selected_app().map(|a| a.name.clone())
    }

    fn move_selection(&mut self, delta: isize) -> Vec<Command> {
        let count = self.visible().len();
        if count == 0 {
            return Vec::new();
        }
        let before = self.selected_name();
        self.selected = (self.selected as isize + delta).clamp(0, count as isize - 1) as usize;
        self.reselect(before)
    }

    /// After the selection may have changed: follow the new app.
    fn reselect(&mut self, before: Option<AppName>) -> Vec<Command> {
        let count = self.visible().len();
        self.selected = self.selected.min(count.saturating_sub(1));
        let now = self.selected_name();
        if now == before {
            return Vec::new();
        }
        self.logs.clear();
        self.detail = None;
        vec![Command::Select(now)]
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::ConfirmDelete(name) => {
                self.mode = Mode::Normal;
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    self.status = format!("deleting {name}...");
                    vec![Command::Act(Act::Delete, name)]
                } else {
                    self.status = "delete cancelled".into();
                    Vec::new()
                }
            }
            Mode::Filter => {
                let before = self.selected_name();
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) => self.filter.push(c),
                    _ => {}
                }
                self.reselect(before)
            }
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        let act = |app: &mut App, act: Act| match app.selected_name() {
            Some(name) => {
                app.status = format!("{} {name}...", act.verb());
                vec![Command::Act(act, name)]
            }
            None => Vec::new(),
        };
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                Vec::new()
            }
            KeyCode::Esc if self.focus != Focus::Table => {
                self.focus = Focus::Table;
                Vec::new()
            }
            KeyCode::Esc => {
                self.quit = true;
                Vec::new()
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Enter => {
                self.focus = if self.focus == Focus::Details { Focus::Table } else { Focus::Details };
                self.selected_name().map(Command::Detail).into_iter().collect()
            }
            KeyCode::Char('l') => {
                self.focus = if self.focus == Focus::Logs { Focus::Table } else { Focus::Logs };
                Vec::new()
            }
            KeyCode::Char('r') => act(self, Act::Restart),
            KeyCode::Char('R') => act(self, Act::Reload),
            KeyCode::Char('s') => act(self, Act::Stop),
            KeyCode::Char('S') => act(self, Act::Start),
            KeyCode::Char('d') => {
                if let Some(name) = self.selected_name() {
                    self.mode = Mode::ConfirmDelete(name);
                }
                Vec::new()
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                Vec::new()
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Something from the daemon; `now` paces the sparkline samples.
    pub fn on_incoming(&mut self, incoming: Incoming, now: Instant) -> Vec<Command> {
        match incoming {
            Incoming::Connected => {
                self.connected = true;
                self.disconnect_reason = None;
                Vec::new()
            }
            Incoming::Disconnected(reason) => {
                self.connected = false;
                self.disconnect_reason = Some(reason);
                Vec::new()
            }
            Incoming::Apps(apps) => {
                let before = self.selected_name();
                let old_row = self.selected_app().cloned();
                for app in &apps {
                    self.record(app, now);
                }
                self.apps = apps;
                let mut commands = self.reselect(before.clone());
                if commands.is_empty() {
                    if let (Some(name), Some(old), Some(new)) = (before, old_row, self.selected_app()) {
                        if (old.status, old.pid, old.restarts) != (new.status, new.pid, new.restarts) {
                            commands.push(Command::Detail(name));
                        }
                    }
                }
                if self.detail.is_none() && commands.is_empty() {
                    commands.extend(self.selected_name().map(Command::Detail));
                }
                commands
            }
            Incoming::Detail(detail) => {
                if Some(&detail.info.name) == self.selected_name().as_ref() {
                    self.detail = Some(*detail);
                }
                Vec::new()
            }
            Incoming::Logs { app, lines } => {
                if self.selected_name().is_some_and(|n| n.as_str() == app) {
                    self.logs.extend(lines);
                    while self.logs.len() > LOG_LINES {
                        self.logs.pop_front();
                    }
                }
                Vec::new()
            }
            Incoming::Outcome(message) => {
                self.status = message;
                Vec::new()
            }
        }
    }

    fn record(&mut self, app: &AppInfo, now: Instant) {
        let h = self.history.entry(app.name.to_string()).or_default();
        if h.last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(500)) {
            return;
        }
        h.last = Some(now);
        h.cpu.push_back((app.cpu_percent.unwrap_or(0.0) * 10.0) as u64);
        h.memory.push_back(app.memory_bytes.unwrap_or(0));
        for series in [&mut h.cpu, &mut h.memory] {
            while series.len() > HISTORY {
                series.pop_front();
            }
        }
    }
}
