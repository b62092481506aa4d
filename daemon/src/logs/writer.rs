//! The thread that writes one capture's batches to its sink, so file I/O never runs on the
//! runtime thread. Started with the first batch, ended after [`IDLE`] without one (a quiet app
//! costs no thread), fed through a queue of [`QUEUED`] batches: reading the pipe and writing
//! the file overlap, lines keep their order, and a slow file makes the capture wait for room
//! (the app's pipe then fills and it blocks) instead of queueing without bound.

use super::sink::Sink;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Batches (of at most 64 KiB of lines each) waiting for the writer.
const QUEUED: usize = 4;
/// A writer with nothing to write this long ends.
const IDLE: Duration = Duration::from_secs(5);

enum Job {
    Batch(Vec<u8>, u64),
    /// Everything sent before is written: say so.
    Flush(oneshot::Sender<()>),
}

/// One capture's writer.
pub(super) struct Writer {
    sink: Arc<Mutex<Sink>>,
    tx: Option<SyncSender<Job>>,
    /// Woken each time the writer takes a job (there is room again).
    room: Arc<Notify>,
}

impl Writer {
    pub fn new(sink: Arc<Mutex<Sink>>) -> Writer {
        Writer { sink, tx: None, room: Arc::new(Notify::new()) }
    }

    fn start(&mut self) -> SyncSender<Job> {
        let (tx, rx) = sync_channel(QUEUED);
        let (sink, room) = (self.sink.clone(), self.room.clone());
        let spawned = std::thread::Builder::new().name("mcpd-log".into()).spawn(move || run(rx, sink, room));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a log writer thread");
        }
        self.tx = Some(tx.clone());
        tx
    }

    async fn send(&mut self, job: Job) {
        let never = tokio_util::sync::CancellationToken::new();
        let _ = self.send_unless(job, &never).await;
    }

    /// Queues `job`, or gives it back if `stop` is cancelled while the queue is full.
    async fn send_unless(&mut self, mut job: Job, stop: &tokio_util::sync::CancellationToken) -> Result<(), Job> {
        // Bounded: at most one thread start per send, and a started thread takes jobs.
        for _ in 0..3 {
            let tx = match &self.tx {
                Some(tx) => tx.clone(),
                None => self.start(),
            };
            loop {
                match tx.try_send(job) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(back)) => {
                        job = back;
                        tokio::select! {
                            _ = self.room.notified() => {}
                            _ = stop.cancelled() => return Err(job),
                        }
                    }
                    Err(TrySendError::Disconnected(back)) => {
                        // The writer ended (idle): start another.
                        job = back;
                        self.tx = None;
                        break;
                    }
                }
            }
        }
        tracing::error!("a log writer thread cannot be started; lines are lost");
        Ok(())
    }

    /// Queues a batch of whole lines.
    pub async fn write(&mut self, batch: Vec<u8>, lines: u64) {
        if !batch.is_empty() {
            self.send(Job::Batch(batch, lines)).await;
        }
    }

    /// Queues a batch of whole lines, or gives it back if `stop` is cancelled first (the
    /// queue is full: the file is slow).
    pub async fn write_unless(
        &mut self,
        batch: Vec<u8>,
        lines: u64,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), (Vec<u8>, u64)> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.send_unless(Job::Batch(batch, lines), stop).await {
            Ok(()) => Ok(()),
            Err(Job::Batch(batch, lines)) => Err((batch, lines)),
            Err(Job::Flush(_)) => Ok(()),
        }
    }

    /// Waits until every batch queued so far is in the file.
    pub async fn flush(&mut self) {
        if self.tx.is_none() {
            return;
        }
        let (done, written) = oneshot::channel();
        self.send(Job::Flush(done)).await;
        let _ = written.await;
    }
}

fn run(rx: Receiver<Job>, sink: Arc<Mutex<Sink>>, room: Arc<Notify>) {
    loop {
        match rx.recv_timeout(IDLE) {
            Ok(job) => {
                room.notify_one();
                match job {
                    Job::Batch(batch, lines) => sink.lock().expect("sink lock").write(&batch, lines),
                    Job::Flush(done) => drop(done.send(())),
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
