//! What the agent exposes on `--metrics ADDR`: `/metrics` in the Prometheus text format
//! (prometheus-client) and `/healthz` (`ok`, or `degraded: <why>` with status 503).
//!
//! The datapath's packet and byte counters are read from the node's pinned counters at each
//! scrape, as `fastpath stats` reads them, so the two always agree; the agent's own figures
//! (peers, etcd state, watch events, reconcile durations) are kept as it works.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// The agent's state, shared between its loop and the endpoint.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub peers: Gauge,
    pub ignored_records: Gauge,
    /// 1 while etcd answers, 0 while it does not.
    pub etcd_connected: Gauge,
    pub watch_events: Counter,
    /// Seconds one convergence of the node (`fastpath up`) took.
    pub reconcile_seconds: Histogram,
    health: Arc<Mutex<Health>>,
}

/// Why the agent is not healthy, if it is not.
#[derive(Default)]
struct Health {
    started: bool,
    etcd: Option<String>,
    node: Option<String>,
}

impl Metrics {
    /// The agent's metrics, and the datapath counters of `node` pinned under `pin_dir`.
    pub fn new(node: &str, pin_dir: PathBuf) -> Self {
        let mut registry = Registry::with_prefix("fastpath");
        let peers = Gauge::default();
        registry.register("peers", "Peers installed from etcd", peers.clone());
        let ignored_records = Gauge::default();
        registry.register(
            "ignored_records",
            "Node records in etcd that fail the checks and are not installed",
            ignored_records.clone(),
        );
        let etcd_connected = Gauge::default();
        registry.register(
            "etcd_connected",
            "1 while etcd answers, 0 while the agent is degraded",
            etcd_connected.clone(),
        );
        let watch_events = Counter::default();
        registry.register(
            "watch_events",
            "Watch responses from etcd about node records",
            watch_events.clone(),
        );
        // 1 ms to about 8 s.
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_seconds",
            "Time one convergence of the node to its config and peers took",
            reconcile_seconds.clone(),
        );
        registry.register_collector(Box::new(DatapathCounters {
            node: node.to_string(),
            pin_dir,
        }));
        Self {
            registry: Arc::new(registry),
            peers,
            ignored_records,
            etcd_connected,
            watch_events,
            reconcile_seconds,
            health: Arc::default(),
        }
    }

    /// etcd answers (`None`), or does not, and why.
    pub fn set_etcd_problem(&self, why: Option<String>) {
        self.etcd_connected.set(i64::from(why.is_none()));
        self.health.lock().expect("not poisoned").etcd = why;
    }

    /// The node is at its config (`None`), or could not be brought there, and why.
    pub fn set_node_problem(&self, why: Option<String>) {
        let mut health = self.health.lock().expect("not poisoned");
        health.started |= why.is_none();
        health.node = why;
    }

    /// Why the agent is degraded; `None` when it is healthy.
    fn degraded(&self) -> Option<String> {
        let health = self.health.lock().expect("not poisoned");
        match (&health.etcd, &health.node) {
            (Some(etcd), _) => Some(etcd.clone()),
            (None, Some(node)) => Some(node.clone()),
            (None, None) if !health.started => Some("starting".into()),
            (None, None) => None,
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                // A client that sends nothing is not waited for long.
                let _ = tokio::time::timeout(Duration::from_secs(5), metrics.answer(stream)).await;
            });
        }
    }

    /// Reads one request (its head, at most 8 KiB) and answers it.
    async fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, content_type, body) = match (method, path) {
            ("GET", "/metrics") => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.render(),
            ),
            ("GET", "/healthz") => match self.degraded() {
                None => ("200 OK", "text/plain", "ok\n".to_string()),
                Some(why) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("degraded: {why}\n"),
                ),
            },
            ("GET", _) => (
                "404 Not Found",
                "text/plain",
                "/metrics or /healthz\n".into(),
            ),
            _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }
}

/// The node's datapath counters, read from its pins at each scrape.
#[derive(Debug)]
struct DatapathCounters {
    node: String,
    pin_dir: PathBuf,
}

impl Collector for DatapathCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // No pins (mode kernel, or not up yet): no samples.
        let rows = control::datapath::pinned_counters(&self.pin_dir).unwrap_or_default();
        for (name, help, value) in [
            (
                "datapath_packets",
                "Packets the node's programs handled, by program, verdict and reason",
                (|r: &control::datapath::CounterRow| r.packets) as fn(&_) -> u64,
            ),
            (
                "datapath_bytes",
                "Bytes the node's programs handled, by program, verdict and reason",
                |r: &control::datapath::CounterRow| r.bytes,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for row in &rows {
                let labels = [
                    ("node", self.node.as_str()),
                    ("program", row.program),
                    ("verdict", row.verdict),
                    ("reason", row.reason.name()),
                ];
                ConstCounter::new(value(row)).encode(family.encode_family(&labels)?)?;
            }
        }
        // Every program, also those that lost none: a series that appears only once something
        // is lost cannot be told from one that was never exported.
        if let Ok(lost) = control::datapath::pinned_events_lost(&self.pin_dir) {
            let mut family = encoder.encode_descriptor(
                "monitor_events_lost",
                "Events for fastpath monitor the node's programs could not write (a full ring buffer), by program",
                None,
                MetricType::Counter,
            )?;
            for (program, count) in lost {
                let labels = [("node", self.node.as_str()), ("program", program)];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
