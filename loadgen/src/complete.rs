//! The completeness check: after a run, every publish a publisher sent must
//! be in the log exactly once and in its order, unless the proxy refused it
//! with `Rejected`; and the proxy's own count (`/stats` `publishes`) must
//! agree. A benchmark that loses or doubles publishes is measuring a broken
//! proxy, so any discrepancy is printed loudly, names the numbers, and makes
//! `loadgen` exit non-zero.
//!
//! The log is read back whole, as a client resuming from `seq` 0 of the
//! epoch (`e2e::client::read_whole_log`). Such a client is more than
//! `max_behind` behind and would get a `Gap` and a `Snapshot` instead of the
//! events, so the proxy is first restarted (SIGTERM, same data) with a
//! `max_behind` that covers the whole log; the run itself keeps the
//! `max_behind` it was configured with. Runs must not trim (the benchmark
//! configs keep a large `max_events` and an hour of retention).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::Proxy;
use serde_json::{json, Value};

use crate::bench::merge_config;

/// What one publisher sent: numbers `1..=count` (its `client_seq`s, also
/// `n` in the payload), tagged `p = tag`; `rejected` were refused.
#[derive(Debug, Clone)]
pub struct Sent {
    pub tag: u64,
    pub who: String,
    pub count: u64,
    pub rejected: BTreeSet<u64>,
}

impl Sent {
    fn expected_applied(&self) -> u64 {
        self.count - self.rejected.len() as u64
    }
}

/// What `/stats` must say about the publishes since the proxy last started.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Each publish reached this process once: `applied` is what was sent
    /// minus what was rejected, and nothing was taken for a duplicate.
    Exact,
    /// The proxy was killed and restarted during the run: publishes applied
    /// before the kill are not counted, and a resend of one whose
    /// `Accepted` was lost in the kill is rightly a duplicate. Of the
    /// `received` publishes sent to the new process (`resent` of them
    /// resends), each must be applied or a duplicate, and only resends may
    /// be duplicates.
    AfterRestart { received: u64, resent: u64 },
    /// Only the log is checked, not `/stats` (which `loadgen` reads over
    /// plain HTTP): for a proxy serving TLS, restarted plain by `verify`
    /// with the `config` it is given.
    LogOnly,
}

/// The result of the check.
#[derive(Debug, Default)]
pub struct Outcome {
    pub published: u64,
    pub rejected: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Every discrepancy, in words, with the numbers concerned.
    pub problems: Vec<String>,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// "0 lost, 0 duplicated", and what else went wrong.
    pub fn line(&self) -> String {
        let mut line = format!("{} lost, {} duplicated", self.lost, self.duplicated);
        if self.rejected > 0 {
            line.push_str(&format!(" ({} rejected)", self.rejected));
        }
        if !self.is_clean() {
            line.push_str(" -- INCOMPLETE");
        }
        line
    }

    /// The fields every result row carries.
    pub fn json(&self) -> Value {
        json!({
            "published": self.published, "rejected": self.rejected,
            "lost": self.lost, "duplicated": self.duplicated,
            "complete": self.is_clean(), "completeness": self.line(),
            "problems": self.problems,
        })
    }
}

/// Reads the proxy's `/stats`.
fn stats(proxy: &Proxy) -> Result<Value> {
    let (status, body) = proxy.try_get("/stats").context("GET /stats")?;
    if status != 200 {
        bail!("GET /stats answered {status}");
    }
    serde_json::from_str(&body).context("/stats is not JSON")
}

/// Checks that the log holds what `sent` says, and what `/stats` says
/// agrees. `config` is the config the proxy runs with; it is restarted
/// (see the module's doc), so call this when the run is over.
pub async fn verify(
    proxy: &mut Proxy,
    config: &str,
    sent: &[Sent],
    expect: Expect,
) -> Result<Outcome> {
    let mut out = Outcome {
        published: sent.iter().map(|s| s.count).sum(),
        rejected: sent.iter().map(|s| s.rejected.len() as u64).sum(),
        ..Outcome::default()
    };
    let s = match expect {
        Expect::LogOnly => Value::Null,
        _ => stats(proxy)?,
    };
    let counter = |key: &str| s["publishes"][key].as_u64();
    let (Some(applied), Some(duplicate)) = (counter("applied"), counter("duplicate")) else {
        if !matches!(expect, Expect::LogOnly) {
            bail!("/stats has no publishes.applied and publishes.duplicate: {s}");
        }
        return check_log(proxy, config, sent, out).await;
    };
    let expected: u64 = sent.iter().map(Sent::expected_applied).sum();
    match expect {
        Expect::LogOnly => {}
        Expect::Exact => {
            if duplicate != 0 {
                out.problems.push(format!(
                    "/stats publishes.duplicate is {duplicate}, not 0: publishes were taken for resends"
                ));
            }
            if applied != expected {
                out.problems.push(format!(
                    "/stats publishes.applied is {applied}, but {expected} were sent and not rejected"
                ));
            }
        }
        Expect::AfterRestart { received, resent } => {
            if applied + duplicate != received {
                out.problems.push(format!(
                    "/stats after the restart: {applied} applied + {duplicate} duplicate, but {received} were sent to the new process"
                ));
            }
            if duplicate > resent {
                out.problems.push(format!(
                    "/stats publishes.duplicate is {duplicate}, more than the {resent} resends"
                ));
            }
        }
    }
    check_log(proxy, config, sent, out).await
}

/// Restarts the proxy with `config` (and a `max_behind` covering the log),
/// reads the log back and checks each publisher's numbers.
async fn check_log(
    proxy: &mut Proxy,
    config: &str,
    sent: &[Sent],
    mut out: Outcome,
) -> Result<Outcome> {
    proxy.terminate();
    let read_back = merge_config(config, "max_behind = 4000000000\n");
    proxy
        .rewrite_config(&read_back)
        .context("rewriting the proxy's config")?;
    proxy.restart();
    let log = e2e::client::read_whole_log(&proxy.ws_url(), Duration::from_secs(300))
        .await
        .context("reading the whole log back")?;

    for publisher in sent {
        let numbers: Vec<u64> = log
            .iter()
            .filter(|e| e.payload["p"].as_u64() == Some(publisher.tag))
            .map(|e| e.payload["n"].as_u64().unwrap_or(0))
            .collect();
        check_numbers(publisher, &numbers, &mut out);
    }
    for problem in &out.problems {
        eprintln!("!!! LOADGEN COMPLETENESS FAILURE: {problem}");
    }
    Ok(out)
}

/// Compares the numbers one publisher has in the log, in log order, with
/// what it sent.
fn check_numbers(publisher: &Sent, numbers: &[u64], out: &mut Outcome) {
    let who = &publisher.who;
    let mut seen = vec![0u32; publisher.count as usize + 1];
    let mut foreign = Vec::new();
    for &n in numbers {
        match seen.get_mut(n as usize) {
            Some(c) if n > 0 => *c += 1,
            _ => foreign.push(n),
        }
    }
    let mut lost = Vec::new();
    let mut doubled = Vec::new();
    let mut refused_but_applied = Vec::new();
    for n in 1..=publisher.count {
        let c = seen[n as usize];
        let refused = publisher.rejected.contains(&n);
        match (c, refused) {
            (0, false) => lost.push(n),
            (1.., true) => refused_but_applied.push(n),
            _ => {}
        }
        if c > 1 {
            doubled.push(n);
        }
    }
    let out_of_order: Vec<(u64, u64)> = numbers
        .windows(2)
        .filter(|w| w[1] <= w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    out.lost += lost.len() as u64;
    out.duplicated += doubled.len() as u64;
    if !lost.is_empty() {
        out.problems.push(format!(
            "{who}: {} of {} publishes not in the log (lost): {}",
            lost.len(),
            publisher.count,
            ranges(&lost)
        ));
    }
    if !doubled.is_empty() {
        out.problems.push(format!(
            "{who}: {} publishes in the log more than once: {}",
            doubled.len(),
            ranges(&doubled)
        ));
    }
    if !refused_but_applied.is_empty() {
        out.problems.push(format!(
            "{who}: rejected and yet in the log: {}",
            ranges(&refused_but_applied)
        ));
    }
    if !foreign.is_empty() {
        out.problems.push(format!(
            "{who}: numbers in the log it never sent: {}",
            ranges(&foreign)
        ));
    }
    if let Some((a, b)) = out_of_order.first() {
        out.problems.push(format!(
            "{who}: {} places out of client_seq order in the log, the first: {a} then {b}",
            out_of_order.len()
        ));
    }
}

/// `1..=3, 7, 9..=12`, with at most 20 pieces shown.
fn ranges(numbers: &[u64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] <= end + 1 {
            i += 1;
            end = sorted[i];
        }
        pieces.push(if start == end {
            start.to_string()
        } else {
            format!("{start}..={end}")
        });
        i += 1;
    }
    let shown = pieces.len().min(20);
    let mut text = pieces[..shown].join(", ");
    if pieces.len() > shown {
        text.push_str(&format!(", and {} more ranges", pieces.len() - shown));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(count: u64, rejected: &[u64]) -> Sent {
        Sent {
            tag: 1,
            who: "p".into(),
            count,
            rejected: rejected.iter().copied().collect(),
        }
    }

    #[test]
    fn a_complete_log_is_clean() {
        let mut out = Outcome::default();
        check_numbers(&sent(5, &[3]), &[1, 2, 4, 5], &mut out);
        assert!(out.is_clean(), "{:?}", out.problems);
        assert_eq!(out.line(), "0 lost, 0 duplicated");
    }

    #[test]
    fn lost_doubled_reordered_and_refused_numbers_are_named() {
        let mut out = Outcome::default();
        check_numbers(&sent(9, &[9]), &[1, 2, 2, 5, 4, 7, 9, 12], &mut out);
        assert_eq!((out.lost, out.duplicated), (3, 1));
        let all = out.problems.join("\n");
        assert!(all.contains("lost): 3, 6, 8"), "{all}");
        assert!(all.contains("more than once: 2"), "{all}");
        assert!(all.contains("rejected and yet in the log: 9"), "{all}");
        assert!(all.contains("never sent: 12"), "{all}");
        assert!(all.contains("the first: 2 then 2"), "{all}");
    }

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[7, 1, 2, 3, 9, 10]), "1..=3, 7, 9..=10");
    }
}
