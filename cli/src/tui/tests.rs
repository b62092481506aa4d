//! The monitor fed with fake daemon events: key handling tables and screen snapshots.

use super::app::{Act, App, Command, Incoming, Mode};
use super::ui;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mcpd_core::config::AppConfig;
use mcpd_core::model::{AppDetail, AppInfo, AppName, AppStatus, ExitRecord, LogLine, LogStream};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant};

fn info(name: &str, status: AppStatus, pid: Option<u32>) -> AppInfo {
    AppInfo {
        name: AppName::new(name).unwrap(),
        instance: None,
        status,
        pid,
        restarts: if status == AppStatus::Errored { 16 } else { 1 },
        uptime_ms: pid.map(|_| 3_723_000),
        memory_bytes: pid.map(|p| u64::from(p) * 4096),
        cpu_percent: pid.map(|_| 1.5),
        reason: (status == AppStatus::Errored).then(|| "crash loop: 16 restarts in a row".into()),
        next_start_in_ms: None,
        status_text: (name == "web").then(|| "serving 3 sessions".into()),
        reload: None,
        log_error: None,
        sessions: Vec::new(),
        restarts_by_reason: Default::default(),
    }
}

fn apps() -> Vec<AppInfo> {
    vec![
        info("api", AppStatus::Online, Some(4242)),
        info("web", AppStatus::Online, Some(1234)),
        info("worker", AppStatus::Errored, None),
        info("cron", AppStatus::Stopped, None),
    ]
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// A monitor that received the fake apps, some samples and log lines for `web`.
fn fed() -> App {
    let mut app = App::default();
    let t0 = Instant::now();
    app.on_incoming(Incoming::Connected, t0);
    for i in 0..30u64 {
        let mut list = apps();
        list[1].cpu_percent = Some((i % 7) as f32 * 3.0);
        list[1].memory_bytes = Some((20 + i % 5) << 20);
        app.on_incoming(Incoming::Apps(list), t0 + Duration::from_secs(i));
    }
    app.on_key(key(KeyCode::Down));
    let lines = (1..=8)
        .map(|i| LogLine {
            app: "web".into(),
            stream: if i % 4 == 0 { LogStream::Err } else { LogStream::Out },
            time_ms: Some(1_795_521_600_000 + i),
            message: format!("request {i} served in {i}ms"),
        })
        .collect();
    app.on_incoming(Incoming::Logs { app: "web".into(), lines }, t0);
    app
}

fn detail() -> AppDetail {
    let mut config =
        AppConfig::new(AppName::new("web").unwrap(), "node".into(), vec!["server.js".into()], "/srv/web".into());
    config.limits.max_memory_restart = Some(512 << 20);
    let exit = |at: u64, pid: u32, code: i32, reason: &str, outcome: &str| ExitRecord {
        at_unix_ms: 1_795_521_600_000 + at,
        pid,
        code: Some(code),
        signal: None,
        reason: reason.into(),
        outcome: Some(outcome.into()),
    };
    AppDetail {
        info: apps()[1].clone(),
        config,
        last_exits: vec![
            exit(0, 1200, 1, "crash", "restart in 100 ms"),
            exit(60_000, 1220, 0, "user restart", "restarted as pid 1234"),
        ],
        other_instances: Vec::new(),
        tracking: None,
        cron_next_unix_ms: None,
    }
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    format!("{}", terminal.backend())
}

#[test]
fn keys_become_commands() {
    let web = || AppName::new("web").unwrap();
    let cases: Vec<(Vec<KeyCode>, Vec<Command>)> = vec![
        (vec![KeyCode::Char('r')], vec![Command::Act(Act::Restart, web())]),
        (vec![KeyCode::Char('R')], vec![Command::Act(Act::Reload, web())]),
        (vec![KeyCode::Char('s')], vec![Command::Act(Act::Stop, web())]),
        (vec![KeyCode::Char('S')], vec![Command::Act(Act::Start, web())]),
        (vec![KeyCode::Char('d'), KeyCode::Char('n')], vec![]),
        (vec![KeyCode::Char('d'), KeyCode::Char('y')], vec![Command::Act(Act::Delete, web())]),
        (vec![KeyCode::Char('k')], vec![Command::Select(Some(AppName::new("api").unwrap()))]),
        (vec![KeyCode::Down], vec![Command::Select(Some(AppName::new("worker").unwrap()))]),
        (vec![KeyCode::Enter], vec![Command::Detail(web())]),
        (
            vec![KeyCode::Char('/'), KeyCode::Char('c'), KeyCode::Char('r'), KeyCode::Enter],
            vec![Command::Select(Some(AppName::new("cron").unwrap()))],
        ),
        (vec![KeyCode::Char('?'), KeyCode::Char('r')], vec![]),
    ];
    for (keys, want) in cases {
        let mut app = fed();
        let got: Vec<Command> = keys.iter().flat_map(|k| app.on_key(key(*k))).collect();
        assert_eq!(got, want, "keys {keys:?}");
    }
    for quit in [KeyCode::Char('q'), KeyCode::Esc] {
        let mut app = fed();
        app.on_key(key(quit));
        assert!(app.quit, "{quit:?} quits");
    }
}

#[test]
fn main_screen() {
    insta::assert_snapshot!("main", screen(&fed()));
}

#[test]
fn details_screen() {
    let mut app = fed();
    app.on_key(key(KeyCode::Enter));
    app.on_incoming(Incoming::Detail(Box::new(detail())), Instant::now());
    insta::assert_snapshot!("details", screen(&app));
}

#[test]
fn logs_screen() {
    let mut app = fed();
    app.on_key(key(KeyCode::Char('l')));
    app.on_incoming(Incoming::Outcome("restart web: online (pid 1300, ready after 12 ms)".into()), Instant::now());
    insta::assert_snapshot!("logs", screen(&app));
}

#[test]
fn help_screen() {
    let mut app = fed();
    app.on_key(key(KeyCode::Char('?')));
    assert_eq!(app.mode, Mode::Help);
    insta::assert_snapshot!("help", screen(&app));
}

#[test]
fn disconnected_screen() {
    let mut app = fed();
    app.on_incoming(
        Incoming::Disconnected("no mcpd daemon is running on /root/.mcpd/mcpd.sock".into()),
        Instant::now(),
    );
    insta::assert_snapshot!("disconnected", screen(&app));
}

#[test]
fn small_and_tiny_terminals_draw_without_panicking() {
    for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1), (200, 60)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| ui::draw(f, &fed())).unwrap();
    }
}
