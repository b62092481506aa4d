//! One function per verb; each turns a request into exactly one response.

use super::Daemon;
use crate::supervisor::Verb;
use mcpd_core::protocol::{Pong, Request, Response, Targets};

/// Dispatches a request.
pub(crate) async fn handle(request: Request, daemon: &Daemon) -> Response {
    let sup = &daemon.supervisor;
    match request {
        Request::Ping => Response::Pong(Pong {
            pid: std::process::id(),
            uptime_ms: u64::try_from(daemon.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            apps: sup.len(),
            version: crate::version(),
        }),
        Request::Start(start) => match sup.check_start(&start).await {
            Some(refused) => refused,
            None => sup.start(start).await,
        },
        Request::Stop(r) => sup.act(&r.targets, Verb::Stop).await,
        Request::Restart(r) => sup.act(&r.targets, Verb::Restart).await,
        Request::Delete(r) => sup.act(&r.targets, Verb::Delete).await,
        Request::Reload(r) => sup.reload(r).await,
        Request::Reset(r) => sup.act(&r.targets, Verb::Reset).await,
        Request::Signal(r) => sup.act(&r.targets, Verb::Signal { signal: r.signal, leader_only: r.leader_only }).await,
        Request::Env(r) => sup.env(&r).await,
        Request::Scale(r) => sup.scale(&r.name, r.instances).await,
        Request::Logs(r) => match sup.log_tail(&r).await {
            Ok(lines) => Response::Logs { lines, skipped: 0 },
            Err(e) => Response::Error(e),
        },
        Request::Flush(r) => sup.flush_logs(&r.targets).await,
        Request::Save => {
            let apps = sup.saved_apps();
            let count = apps.len();
            let paths = daemon.paths.clone();
            let saved = crate::supervisor::blocking(move || mcpd_core::persist::save(&paths, apps)).await;
            match saved.unwrap_or_else(|| Err(std::io::Error::other("the writer thread failed"))) {
                Ok(path) => Response::Message { text: format!("saved {count} apps to {}", path.display()) },
                Err(e) => Response::Error(mcpd_core::protocol::ProtoError::new(
                    mcpd_core::protocol::ErrorKind::Internal,
                    format!("cannot save the app list in {}: {e}", daemon.paths.home().display()),
                )),
            }
        }
        Request::Resurrect => match sup.resurrect().await {
            Ok(Some(outcomes)) => Response::Done { outcomes },
            Ok(None) => Response::Message { text: "nothing was saved (run `mcpd save` first)".into() },
            Err(e) => Response::Error(mcpd_core::protocol::ProtoError::new(
                mcpd_core::protocol::ErrorKind::InvalidRequest,
                e.to_string(),
            )),
        },
        // Streams (answered by the server loop); asked here, their first answer.
        Request::List | Request::Watch | Request::Events(_) => Response::List { apps: sup.list() },
        Request::Describe(r) => match sup.describe(&r.name) {
            Ok(detail) => Response::Describe(Box::new(detail)),
            Err(e) => Response::Error(e),
        },
        // Answered by the connection loop (it hands the connection over).
        Request::Update => Response::Error(mcpd_core::protocol::ProtoError::new(
            mcpd_core::protocol::ErrorKind::InvalidRequest,
            "update is answered on its own connection",
        )),
        Request::Kill => {
            // Stop every app first so the answer tells the client they are all down.
            let response = sup.act(&Targets::All, Verb::Stop).await;
            sup.shutdown().await;
            response
        }
    }
}
