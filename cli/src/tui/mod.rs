//! `mcpd monit`: a terminal UI over the control socket. State ([`app`]) is separate from
//! drawing ([`ui`]); the loop is generic over the ratatui backend, so tests draw into a
//! `TestBackend`.

pub mod app;
mod link;
#[cfg(test)]
mod tests;
pub mod ui;

use app::{App, Incoming};
use crossterm::event::{Event, EventStream, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::{Stream, StreamExt};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;
use std::process::ExitCode;
use std::time::Instant;
use tokio::sync::mpsc;

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Runs the monitor until `q`.
pub async fn run() -> anyhow::Result<ExitCode> {
    let paths = crate::connect::paths()?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        hook(info);
    }));
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen, crossterm::cursor::Hide)?;
    let result = async {
        let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut link = link::Link::start(paths, tx);
        let mut app = App::default();
        event_loop(&mut terminal, &mut app, EventStream::new(), rx, |c| link.run(c)).await
    }
    .await;
    restore_terminal();
    result.map(|()| ExitCode::SUCCESS)
}

/// Draws, then waits for a key, a resize or a daemon event; redraws only when something
/// happened, so an idle monitor costs next to nothing.
pub async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut keys: impl Stream<Item = std::io::Result<Event>> + Unpin,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
    mut run: impl FnMut(app::Command),
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    loop {
        terminal.draw(|frame| ui::draw(frame, app))?;
        if app.quit {
            return Ok(());
        }
        let commands = tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => app.on_key(key),
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            Some(event) = incoming.recv() => app.on_incoming(event, Instant::now()),
        };
        for command in commands {
            run(command);
        }
    }
}
