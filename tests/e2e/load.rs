//! A small HTTP load generator for reload tests and benchmarks: steady short requests (one
//! connection each) and long streaming responses, counting every failure and cut stream.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the load saw.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub streams_ok: u64,
    pub streams_cut: u64,
    /// The first few failures, for the test message.
    pub errors: Vec<String>,
    /// When each successful request completed.
    pub successes: Vec<Instant>,
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
}

impl Stats {
    /// The longest time without a successful response (including the start and the end).
    pub fn longest_gap(&self) -> Duration {
        let mut times = self.successes.clone();
        times.sort();
        let mut edges = vec![self.started.unwrap_or_else(Instant::now)];
        edges.extend(times);
        edges.push(self.ended.unwrap_or_else(Instant::now));
        edges.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap_or_default()
    }

    fn error(&mut self, what: String) {
        if self.errors.len() < 10 {
            self.errors.push(what);
        }
    }
}

/// Running load; [`Load::stop`] ends it and returns what it saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Mutex<Stats>>,
}

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Requests per second over all request threads.
    pub rate: u32,
    pub request_threads: u32,
    /// Streams kept open at once.
    pub streams: u32,
    /// Events per stream and the pause between them.
    pub events: u32,
    pub event_ms: u32,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn exchange(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| format!("read: {e} after {} bytes", body.len()))?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(format!("bad answer: {:?}", body.lines().next().unwrap_or("")));
    }
    Ok(body)
}

impl Load {
    /// Starts the load against `addr`.
    pub fn start(addr: SocketAddr, shape: Shape) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats { started: Some(Instant::now()), ..Stats::default() }));
        let mut threads = Vec::new();
        let period = Duration::from_secs_f64(shape.request_threads as f64 / shape.rate.max(1) as f64);
        for _ in 0..shape.request_threads {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                let mut deadline = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let result = exchange(addr, "/");
                    let mut st = stats.lock().unwrap();
                    match result {
                        Ok(_) => {
                            st.ok += 1;
                            st.successes.push(Instant::now());
                        }
                        Err(e) => {
                            st.failed += 1;
                            st.error(format!("request: {e}"));
                        }
                    }
                    drop(st);
                    // Pacing is the load's shape: the next request is due one period later.
                    deadline += period;
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                }
            }));
        }
        for _ in 0..shape.streams {
            let (stop, stats) = (stop.clone(), stats.clone());
            let path = format!("/stream?n={}&ms={}", shape.events, shape.event_ms);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let result = exchange(addr, &path);
                    let mut st = stats.lock().unwrap();
                    match result {
                        Ok(body) if body.matches("data: ").count() == shape.events as usize => st.streams_ok += 1,
                        Ok(body) => {
                            st.streams_cut += 1;
                            st.error(format!("stream cut after {} events", body.matches("data: ").count()));
                        }
                        Err(e) => {
                            st.streams_cut += 1;
                            st.error(format!("stream: {e}"));
                        }
                    }
                }
            }));
        }
        Load { stop, threads, stats }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.stats.lock().unwrap().ok
    }

    /// Stops the load (streams finish their current response) and returns the figures.
    pub fn stop(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        let ended = Instant::now();
        for t in self.threads {
            let _ = t.join();
        }
        let mut stats = self.stats.lock().unwrap().clone();
        stats.ended = Some(ended);
        stats
    }
}
