//! A yardstick measured in the same run as the load: the server's CPU for
//! a static response and for a request that makes one query. CPU per
//! delivery moves by a factor of three between VMs of the same kind
//! (docs/PERFORMANCE.md); its ratio to these does not, which is how issue 23
//! states its goal (a delivery near a static response, not above a
//! one-query request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{cpu_seconds, percentile};

/// Keep-alive connections, each with one request in flight.
const CONNECTIONS: usize = 16;

/// What the server spent on one kind of request.
pub(super) struct Reading {
    pub requests: u64,
    pub seconds: f64,
    pub server_cpu_us_per_request: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Reading {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "requests_per_sec": self.requests as f64 / self.seconds,
            "server_cpu_us_per_request": self.server_cpu_us_per_request,
            "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
        })
    }
}

/// `GET url` as fast as [`CONNECTIONS`] keep-alive connections go, for
/// `secs`, with the CPU of `pids` read around it. Every answer must be a
/// success: a refusal (a limit, a wrong path) would measure the refusal.
pub(super) async fn measure(url: &str, pids: &[u32], secs: u64) -> anyhow::Result<Reading> {
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        // A client each: one connection each, reused for every request.
        let client =
            reqwest::Client::builder().pool_max_idle_per_host(1).redirect(reqwest::redirect::Policy::none()).build()?;
        let (url, done, latencies) = (url.to_owned(), done.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut own = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let res = client.get(&url).send().await.with_context(|| format!("yardstick request to {url}"))?;
                let status = res.status();
                res.bytes().await?;
                if !status.is_success() {
                    bail!("the yardstick's request to {url} was answered {status}: it would measure a refusal");
                }
                own.push(t.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(own);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu: Option<f64> = pids.iter().zip(&cpu_before).map(|(p, b)| Some(cpu_seconds(*p)? - (*b)?)).sum();
    let requests = done.load(Ordering::Relaxed);
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    Ok(Reading {
        requests,
        seconds,
        server_cpu_us_per_request: cpu.filter(|_| requests > 0 && !pids.is_empty()).map(|c| c * 1e6 / requests as f64),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    })
}
