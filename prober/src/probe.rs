//! One probe of one target: the request, then (when up) the payload for bandwidth and the
//! load endpoint, as a `ProbeResult`.

use std::time::{Duration, SystemTime};

use http::Method;
use pipeline::{
    proto::ingest::{Event, ProbeResult, event::Payload},
    region::Region,
};

use crate::{
    measure::{Http, Measured, Outcome},
    targets::Target,
};

/// Most bytes of the load endpoint's answer that are read as JSON.
const MAX_LOAD_BYTES: usize = 4096;

/// How a probe ended, for the `outcome` label of `prober_probes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The expected status arrived with its whole body.
    Up,
    /// Another status.
    UnexpectedStatus,
    /// The timeout fired first.
    Timeout,
    /// Refused or dropped connection, failed TLS, broken response.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Up => "up",
            Verdict::UnexpectedStatus => "unexpected_status",
            Verdict::Timeout => "timeout",
            Verdict::Error => "error",
        }
    }
}

/// A probe's figures, before they become an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub verdict: Verdict,
    pub result: ProbeResult,
    /// Why a probe is down, or why its load or bandwidth is missing.
    pub problems: Vec<String>,
}

/// Probes `target` from `vantage`.
pub async fn probe(http: &Http, target: &Target, vantage: Region) -> Probe {
    let main = http
        .request(&target.method, &target.url, target.timeout, 0)
        .await;
    let status = main.phases.status;
    let verdict = match (&main.outcome, status) {
        (Outcome::TimedOut, _) => Verdict::Timeout,
        (Outcome::Failed(_), _) => Verdict::Error,
        (Outcome::Complete, Some(s)) if s == target.expected_status => Verdict::Up,
        (Outcome::Complete, _) => Verdict::UnexpectedStatus,
    };
    let mut problems = Vec::new();
    match &main.outcome {
        Outcome::Failed(problem) => problems.push(problem.clone()),
        Outcome::TimedOut => problems.push(format!("timed out after {:?}", target.timeout)),
        Outcome::Complete if verdict == Verdict::UnexpectedStatus => problems.push(format!(
            "status {} instead of {}",
            status.unwrap_or_default(),
            target.expected_status
        )),
        Outcome::Complete => {}
    }
    let up = verdict == Verdict::Up;
    let mut result = ProbeResult {
        target: target.name.clone(),
        up,
        status_code: status.map_or(0, u32::from),
        response_time_ms: millis(main.phases.total),
        network_latency_ms: main.phases.network_latency.map_or(0, millis),
        bandwidth_bytes_per_second: 0,
        cpu_load: 0.0,
        vantage_region: vantage.to_proto() as i32,
        tls_handshake_ms: main.phases.tls_handshake.map_or(0, millis),
        time_to_first_byte_ms: main.phases.time_to_first_byte.map_or(0, millis),
    };
    // A down store's payload and load would measure the failure again.
    if up {
        if let Some(url) = &target.payload_url {
            let payload = http.request(&Method::GET, url, target.timeout, 0).await;
            match bandwidth(&payload) {
                Ok(bps) => result.bandwidth_bytes_per_second = bps,
                Err(problem) => problems.push(format!("payload: {problem}")),
            }
        }
        if let Some(url) = &target.load_url {
            let load = http
                .request(&Method::GET, url, target.timeout, MAX_LOAD_BYTES)
                .await;
            match cpu_load(&load) {
                Ok(value) => result.cpu_load = value,
                Err(problem) => problems.push(format!("load: {problem}")),
            }
        }
    }
    Probe {
        verdict,
        result,
        problems,
    }
}

/// Whole milliseconds, saturating (a timeout is at most an hour).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Bytes per second over the whole download, from the request to the last byte: what a
/// customer's page load of that payload sees.
fn bandwidth(m: &Measured) -> Result<u64, String> {
    match (&m.outcome, m.phases.status) {
        (Outcome::Complete, Some(200..=299)) => {}
        (Outcome::Complete, Some(status)) => return Err(format!("status {status}")),
        (Outcome::TimedOut, _) => return Err("timed out".into()),
        (Outcome::Failed(problem), _) => return Err(problem.clone()),
        (Outcome::Complete, None) => return Err("no status".into()),
    }
    let seconds = m.phases.total.as_secs_f64();
    if seconds <= 0.0 {
        return Err("took no measurable time".into());
    }
    Ok((m.phases.body_bytes as f64 / seconds) as u64)
}

/// The load endpoint's answer: JSON `{"cpu_load": <number within 0..=1>}`.
pub fn cpu_load(m: &Measured) -> Result<f64, String> {
    #[derive(serde::Deserialize)]
    struct Load {
        cpu_load: f64,
    }
    match (&m.outcome, m.phases.status) {
        (Outcome::Complete, Some(200..=299)) => {}
        (Outcome::Complete, status) => return Err(format!("status {}", status.unwrap_or(0))),
        (Outcome::TimedOut, _) => return Err("timed out".into()),
        (Outcome::Failed(problem), _) => return Err(problem.clone()),
    }
    let load: Load = serde_json::from_slice(&m.body)
        .map_err(|e| format!("expected {{\"cpu_load\": <0..=1>}}: {e}"))?;
    if !(0.0..=1.0).contains(&load.cpu_load) {
        return Err(format!("cpu_load {} is not within 0..=1", load.cpu_load));
    }
    Ok(load.cpu_load)
}

/// The event that carries a probe taken at `at`.
pub fn event(target: &Target, result: ProbeResult, at: SystemTime) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Some(at.into()),
        store_id: target.store_id.clone(),
        region: target.region.to_proto() as i32,
        payload: Some(Payload::Probe(result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Phases;

    fn answered(status: u16, body: &[u8]) -> Measured {
        Measured {
            outcome: Outcome::Complete,
            phases: Phases {
                status: Some(status),
                body_bytes: body.len() as u64,
                total: Duration::from_millis(500),
                ..Phases::default()
            },
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_load_endpoint_answers_json_within_0_and_1() {
        assert_eq!(
            cpu_load(&answered(200, br#"{"cpu_load": 0.42, "x": 1}"#)),
            Ok(0.42)
        );
        assert!(
            cpu_load(&answered(200, br#"{"cpu_load": 1.5}"#))
                .unwrap_err()
                .contains("within 0..=1")
        );
        assert!(
            cpu_load(&answered(200, b"0.4"))
                .unwrap_err()
                .contains("expected {\"cpu_load\"")
        );
        assert_eq!(cpu_load(&answered(503, b"")), Err("status 503".into()));
    }

    #[test]
    fn bandwidth_is_bytes_over_the_whole_download() {
        assert_eq!(bandwidth(&answered(200, &[0; 1000])), Ok(2000));
        assert_eq!(bandwidth(&answered(404, b"")), Err("status 404".into()));
    }
}
