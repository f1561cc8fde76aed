//! Reading the serves' `/metrics`: per model number, the requests answered (by status)
//! and the latency histogram, as `runner_core`'s engine writes them (prometheus-client's
//! OpenMetrics text).
//!
//! Only the two families a rollout judges by are read (`runner_requests_total` and
//! `runner_request_duration_seconds_bucket`), from the server this workspace writes: a
//! line-by-line reading of `name{label="value",...} number` is all it takes, so no
//! general OpenMetrics parser is pulled in.

use std::collections::BTreeMap;
use std::time::Duration;

use runner_core::{Error, Result};

/// What one model number of a served name had answered at one moment, summed over the
/// serves read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionSample {
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered with a 5xx status (the server's or the model's failure; a 4xx is
    /// the caller's).
    pub errors: u64,
    /// Cumulative latency buckets: upper bound in seconds -> requests at or under it.
    pub buckets: BTreeMap<Bound, u64>,
}

/// A histogram bucket's upper bound, ordered (`+Inf` last).
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Every model number of one served name, at one moment.
pub type Sample = BTreeMap<u64, VersionSample>;

impl VersionSample {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &VersionSample) -> VersionSample {
        VersionSample {
            requests: self.requests.saturating_sub(before.requests),
            errors: self.errors.saturating_sub(before.errors),
            buckets: self
                .buckets
                .iter()
                .map(|(bound, n)| (*bound, n.saturating_sub(before.buckets.get(bound).copied().unwrap_or(0))))
                .collect(),
        }
    }

    /// The share of requests answered with an error (0 with no requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The `q` quantile of latency in seconds, interpolated within its bucket as
    /// Prometheus's `histogram_quantile` does; `None` with no requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.iter().next_back().map(|(_, n)| *n).filter(|n| *n > 0)?;
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for (bound, count) in &self.buckets {
            if *count as f64 >= rank {
                if bound.0.is_infinite() {
                    return Some(lower);
                }
                let inside = (*count - below) as f64;
                let into = if inside == 0.0 { 1.0 } else { (rank - below as f64) / inside };
                return Some(lower + (bound.0 - lower) * into);
            }
            (lower, below) = (bound.0, *count);
        }
        Some(lower)
    }
}

/// Adds what the OpenMetrics `text` says of the served name `model` to `sample`.
pub fn add_metrics(sample: &mut Sample, text: &str, model: &str) -> Result<()> {
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((name, rest)) = line.split_once('{') else { continue };
        if name != "runner_requests_total" && name != "runner_request_duration_seconds_bucket" {
            continue;
        }
        let (labels, value) = rest.rsplit_once("} ").ok_or_else(|| malformed(line))?;
        let labels = parse_labels(labels).ok_or_else(|| malformed(line))?;
        if labels.get("model").map(String::as_str) != Some(model) {
            continue;
        }
        let version: u64 = labels.get("version").and_then(|v| v.parse().ok()).ok_or_else(|| malformed(line))?;
        let value = value.split(' ').next().and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| malformed(line))? as u64;
        let entry = sample.entry(version).or_default();
        if name == "runner_requests_total" {
            let status: u16 = labels.get("status").and_then(|s| s.parse().ok()).ok_or_else(|| malformed(line))?;
            entry.requests += value;
            if status >= 500 {
                entry.errors += value;
            }
        } else {
            let le = labels.get("le").ok_or_else(|| malformed(line))?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| malformed(line))? };
            *entry.buckets.entry(Bound(bound)).or_default() += value;
        }
    }
    Ok(())
}

/// `model="iris",version="4"` as a map; `None` when it is not that shape.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        labels.insert(key.trim_start_matches(',').to_string(), after[..end].to_string());
        rest = &after[end + 1..];
    }
    Some(labels)
}

fn malformed(line: &str) -> Error {
    Error::msg(format!("a serve's /metrics has a line this rollout cannot read: `{line}`"))
}

/// Reads `/metrics` of every serve in `serves` (base URLs) and sums what they say of
/// `model`. A serve that cannot be read is an error naming it.
pub fn scrape(
    http: &reqwest::blocking::Client,
    serves: &[String],
    api_key: Option<&str>,
    model: &str,
) -> Result<Sample> {
    let mut sample = Sample::new();
    for serve in serves {
        let url = format!("{}/metrics", serve.trim_end_matches('/'));
        let mut request = http.get(&url).timeout(Duration::from_secs(10));
        if let Some(key) = api_key {
            request = request.bearer_auth(key);
        }
        let text = request.send().and_then(|r| r.error_for_status()).and_then(|r| r.text()).map_err(|e| {
            Error::msg(format!("cannot read {url}: {e}; is the serve running (and --serve-api-key its key)?"))
        })?;
        add_metrics(&mut sample, &text, model)?;
    }
    Ok(sample)
}

/// The split `serve` at `url` serves `model` with now: its number and its canary's
/// (number, share), from `GET /models/{model}`.
pub fn served_split(
    http: &reqwest::blocking::Client,
    url: &str,
    api_key: Option<&str>,
    model: &str,
) -> Result<(u64, Option<(u64, u8)>)> {
    let url = format!("{}/models/{model}", url.trim_end_matches('/'));
    let mut request = http.get(&url).timeout(Duration::from_secs(10));
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let info: serde_json::Value = request
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| Error::msg(format!("cannot read {url}: {e}; does that serve follow the alias?")))?;
    let number = info["number"].as_u64().ok_or_else(|| Error::msg(format!("{url} names no model number")))?;
    let canary = info["canary"]
        .as_object()
        .and_then(|c| Some((c.get("number")?.as_u64()?, u8::try_from(c.get("percent")?.as_u64()?).ok()?)));
    Ok((number, canary))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP runner_requests Prediction requests by model and HTTP status.
# TYPE runner_requests counter
runner_requests_total{model="iris",version="4",status="200"} 95
runner_requests_total{model="iris",version="4",status="500"} 5
runner_requests_total{model="iris",version="4",status="422"} 3
runner_requests_total{model="other",version="4",status="500"} 50
runner_request_duration_seconds_bucket{le="0.001",model="iris",version="4"} 50
runner_request_duration_seconds_bucket{le="0.002",model="iris",version="4"} 90
runner_request_duration_seconds_bucket{le="0.004",model="iris",version="4"} 100
runner_request_duration_seconds_bucket{le="+Inf",model="iris",version="4"} 100
# EOF
"#;

    #[test]
    fn reads_requests_errors_and_latency_of_one_model() {
        let mut sample = Sample::new();
        add_metrics(&mut sample, TEXT, "iris").unwrap();
        let four = sample[&4].clone();
        assert_eq!((four.requests, four.errors), (103, 5), "5xx are errors; 4xx are the callers'");
        // p50: rank 50 is the whole first bucket; p99: 9 of the 10 in (0.002, 0.004].
        assert!((four.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((four.quantile(0.99).unwrap() - 0.0038).abs() < 1e-12);
        // Twice the same counters: a step with nothing in it.
        add_metrics(&mut sample, TEXT, "iris").unwrap();
        let twice = sample[&4].clone();
        assert_eq!(twice.requests, 206);
        let none = twice.since(&twice);
        assert_eq!((none.requests, none.quantile(0.99)), (0, None));
        assert_eq!(twice.since(&four).buckets, four.buckets);
    }

    #[test]
    fn a_line_it_cannot_read_is_an_error_naming_it() {
        let mut sample = Sample::new();
        let error = add_metrics(&mut sample, "runner_requests_total{model=\"iris\" 3\n", "iris").unwrap_err();
        assert!(error.to_string().contains("runner_requests_total{model"), "{error}");
    }
}
