//! Drawing the monitor from its state; nothing here changes the state.

use super::app::{App, Focus, Mode};
use crate::format;
use mcpd_core::model::{AppStatus, LogStream};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;

fn status_color(status: AppStatus) -> Color {
    match status {
        AppStatus::Online => Color::Green,
        AppStatus::Errored => Color::Red,
        AppStatus::Stopped => Color::DarkGray,
        AppStatus::Starting | AppStatus::Stopping | AppStatus::Reloading => Color::Yellow,
        AppStatus::WaitingRestart => Color::Magenta,
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let [banner, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(6), Constraint::Length(1)]).areas(frame.area());
    draw_banner(frame, banner, app);
    let rows = app.visible().len() as u16 + 3;
    let (table_h, middle_h) = match app.focus {
        Focus::Table => (Constraint::Max(rows.max(4)), Constraint::Length(9)),
        Focus::Details => (Constraint::Max(rows.clamp(4, 7)), Constraint::Min(10)),
        Focus::Logs => (Constraint::Max(rows.clamp(4, 6)), Constraint::Length(0)),
    };
    let logs_h = if app.focus == Focus::Details { Constraint::Length(5) } else { Constraint::Min(4) };
    let [table, middle, logs] = Layout::vertical([table_h, middle_h, logs_h]).areas(body);
    draw_table(frame, table, app);
    if middle.height > 0 {
        let [details, sparks] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(middle);
        draw_details(frame, details, app);
        draw_sparklines(frame, sparks, app);
    }
    draw_logs(frame, logs, app);
    draw_status(frame, status, app);
    match &app.mode {
        Mode::Help => draw_help(frame),
        Mode::ConfirmDelete(name) => draw_popup(
            frame,
            "delete",
            vec![
                Line::from(format!("Delete {name}? It is stopped and forgotten.")),
                Line::from("y: delete   any other key: cancel"),
            ],
        ),
        _ => {}
    }
}

fn draw_banner(frame: &mut Frame, area: Rect, app: &App) {
    let (text, style) = match (&app.disconnect_reason, app.connected) {
        (Some(reason), false) => {
            (format!(" disconnected — retrying ({reason})"), Style::new().fg(Color::White).bg(Color::Red))
        }
        _ => (format!(" mcpd monit — {} apps — ? for help", app.apps.len()), Style::new().add_modifier(Modifier::BOLD)),
    };
    frame.render_widget(Paragraph::new(text).style(style), area);
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App) {
    let visible = app.visible();
    let height = area.height.saturating_sub(3) as usize;
    let offset = app.selected.saturating_sub(height.saturating_sub(1));
    let dash = || "-".to_string();
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .skip(offset)
        .map(|(i, a)| {
            let note =
                a.reason.clone().or_else(|| a.status_text.clone()).or_else(|| a.log_error.clone()).unwrap_or_default();
            let row = Row::new(vec![
                Span::raw(a.label()),
                Span::styled(a.status.to_string(), Style::new().fg(status_color(a.status))),
                Span::raw(a.pid.map_or_else(dash, |p| p.to_string())),
                Span::raw(a.uptime_ms.map_or_else(dash, format::duration_ms)),
                Span::raw(a.restarts.to_string()),
                Span::raw(a.cpu_percent.map_or_else(dash, |c| format!("{c:.1}%"))),
                Span::raw(a.memory_bytes.map_or_else(dash, format::bytes)),
                Span::raw(note),
            ]);
            if i == app.selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Min(6),
    ];
    let header = Row::new(["NAME", "STATUS", "PID", "UPTIME", "↺", "CPU", "MEMORY", "NOTE"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let title = if app.filter.is_empty() { " apps ".to_string() } else { format!(" apps matching /{} ", app.filter) };
    let table = Table::new(rows, widths).column_spacing(1).header(header).block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn draw_details(frame: &mut Frame, area: Rect, app: &App) {
    let mut lines = Vec::new();
    match (&app.detail, app.selected_app()) {
        (Some(d), Some(_)) => {
            let c = &d.config;
            lines.push(Line::from(format!("{} {}", c.command, c.args.join(" "))));
            lines.push(Line::from(format!("cwd {}", c.cwd.display())));
            let memory = c.limits.max_memory_restart.map_or("-".to_string(), mcpd_core::config::format_size);
            lines.push(Line::from(format!(
                "ready {}  kill {} after {}  memory limit {memory}",
                c.ready,
                c.kill_signal,
                format::duration_ms(c.kill_timeout.as_millis() as u64)
            )));
            lines.push(Line::from(format!("restart {}  max_restarts {}", c.restarts.restart, c.restarts.max_restarts)));
            lines.push(Line::styled("last exits:", Style::new().add_modifier(Modifier::BOLD)));
            for e in d.last_exits.iter().rev() {
                let at = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_unix_ms),
                );
                let then = e.outcome.as_deref().unwrap_or("");
                lines.push(Line::from(format!("{at} pid {} {} ({}) {then}", e.pid, e.describe(), e.reason)));
            }
            if d.last_exits.is_empty() {
                lines.push(Line::from("none"));
            }
        }
        (None, Some(a)) => lines.push(Line::from(format!("loading {}...", a.name))),
        _ => lines.push(Line::from("no app selected")),
    }
    let title = app.selected_app().map_or(" details ".into(), |a| format!(" {} ", a.name));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(title)), area);
}

fn draw_sparklines(frame: &mut Frame, area: Rect, app: &App) {
    let [cpu, memory] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let history = app.selected_app().and_then(|a| app.history.get(a.name.as_str()));
    let data = |series: Option<&std::collections::VecDeque<u64>>, width: u16| -> Vec<u64> {
        let v: Vec<u64> = series.map(|s| s.iter().copied().collect()).unwrap_or_default();
        v[v.len().saturating_sub(width.saturating_sub(2) as usize)..].to_vec()
    };
    let cpu_now = app.selected_app().and_then(|a| a.cpu_percent).map_or("-".into(), |c| format!("{c:.1}%"));
    let mem_now = app.selected_app().and_then(|a| a.memory_bytes).map_or("-".into(), format::bytes);
    let cpu_data = data(history.map(|h| &h.cpu), cpu.width);
    let mem_data = data(history.map(|h| &h.memory), memory.width);
    frame.render_widget(
        Sparkline::default()
            .data(&cpu_data)
            .style(Style::new().fg(Color::Cyan))
            .block(Block::bordered().title(format!(" cpu {cpu_now} "))),
        cpu,
    );
    frame.render_widget(
        Sparkline::default()
            .data(&mem_data)
            .style(Style::new().fg(Color::Blue))
            .block(Block::bordered().title(format!(" memory {mem_now} "))),
        memory,
    );
}

fn draw_logs(frame: &mut Frame, area: Rect, app: &App) {
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .logs
        .iter()
        .skip(app.logs.len().saturating_sub(height))
        .map(|l| match l.stream {
            LogStream::Out => Line::from(l.message.clone()),
            LogStream::Err => Line::styled(l.message.clone(), Style::new().fg(Color::Red)),
        })
        .collect();
    let title = app.selected_app().map_or(" logs ".into(), |a| format!(" logs: {} ", a.name));
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App) {
    let text = match &app.mode {
        Mode::Filter => format!("/{}▏ (Enter: keep, Esc: clear)", app.filter),
        _ if !app.status.is_empty() => app.status.clone(),
        _ => {
            "↑↓ select  Enter details  l logs  r restart  R reload  s stop  S start  d delete  / filter  q quit".into()
        }
    };
    frame.render_widget(Paragraph::new(text).style(Style::new().fg(Color::Gray)), area);
}

const HELP: &[(&str, &str)] = &[
    ("↑/↓, k/j", "select an app"),
    ("Enter", "details (command, limits, last exits)"),
    ("l", "enlarge the live log pane"),
    ("r", "restart the app"),
    ("R", "reload it (new generation first)"),
    ("s / S", "stop / start it"),
    ("d", "delete it (asks first)"),
    ("/", "filter apps by name"),
    ("?", "this help"),
    ("q, Esc", "quit"),
];

fn draw_help(frame: &mut Frame) {
    let lines = HELP.iter().map(|(k, v)| Line::from(format!("{k:<10} {v}"))).collect();
    draw_popup(frame, "keys", lines);
}

fn draw_popup(frame: &mut Frame, title: &str, lines: Vec<Line>) {
    let area = frame.area();
    let width = area.width.min(56);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(format!(" {title} "))), popup);
}
