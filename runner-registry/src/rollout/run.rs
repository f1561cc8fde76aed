//! The rollout loop: one alias move per step, each judged on the serves' metrics.
//!
//! Every decision is an alias move with `expect` the number the alias pointed at when the
//! rollout began, so a person (or another rollout) who moved the alias meanwhile stops
//! this one with a conflict rather than being overridden. A rollout killed part way
//! leaves the split where its last step put it, which is a state the serves handle like
//! any other; running it again resumes (its first step sets the split again).

use std::time::{Duration, Instant};

use runner_core::registry::{AliasOptions, Canary, Expect};
use runner_core::{Error, Registry, Result};

use super::scrape::{scrape, served_split, Sample, VersionSample};

/// What a rollout does, and its limits.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The organization of the repository.
    pub organization: String,
    /// The repository (the name the serves serve it under).
    pub repository: String,
    /// The alias to move (`prod`).
    pub alias: String,
    /// The model number to roll out.
    pub to: u64,
    /// The canary's share at each step, rising, in percents; 100 promotes it (the alias
    /// then points at it alone).
    pub steps: Vec<u8>,
    /// How long each step runs before it is judged.
    pub every: Duration,
    /// The largest share of the canary's requests that may fail (5xx) in a step (0.01: 1 %).
    pub max_error_rate: f64,
    /// The largest ratio of the canary's p99 latency to the model's in a step, if any.
    pub max_p99_ratio: Option<f64>,
    /// Requests the canary must answer in a step before it is judged: with fewer, the
    /// step runs on (another `every`) until it has them.
    pub min_requests: u64,
    /// How long a step may run on waiting for `min_requests`: past it, a canary that
    /// cannot be judged is rolled back (the history says so) rather than waited for
    /// forever, as a progress deadline does in Argo Rollouts.
    pub step_timeout: Duration,
    /// The serves following the alias (base URLs): their `/metrics` are the evidence.
    pub serves: Vec<String>,
    /// The serves' API key, if they have one.
    pub api_key: Option<String>,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every step passed; the alias points at the new model (or, when the steps stop short
    /// of 100, the canary has the last step's share).
    Passed,
    /// A step broke a limit; the alias points at the old model alone, and its history
    /// says why.
    RolledBack {
        /// The share at which it broke.
        step: u8,
        /// Why, as recorded in the history.
        reason: String,
    },
}

/// Runs `plan` against `registry`, reporting each step through `report`. An error (the
/// alias moved by someone else, a serve that cannot be read, a bad plan) stops the
/// rollout where it is; a canary that breaks a limit is rolled back.
pub fn rollout(registry: &dyn Registry, plan: &Plan, report: &mut dyn FnMut(&str)) -> Result<Outcome> {
    check(plan)?;
    let (org, repo, alias) = (&plan.organization, &plan.repository, &plan.alias);
    let entry = registry.alias_entry(org, repo, alias)?.ok_or_else(|| {
        Error::invalid_input(format!(
            "alias `{alias}` of `{repo}` does not exist: a rollout moves an alias from the model it points at (`runner-registry alias set {repo} {alias} NUMBER` first)"
        ))
    })?;
    let from = entry.number;
    if from == plan.to {
        return Err(Error::invalid_input(format!("alias `{alias}` of `{repo}` points at {from} already")));
    }
    if let Some(canary) = entry.canary.filter(|c| c.number != plan.to) {
        return Err(Error::Conflict {
            message: format!(
                "alias `{alias}` of `{repo}` is rolling out {} ({}% of requests); end that first (`runner-registry alias set {repo} {alias} {from}`)",
                canary.number, canary.percent
            ),
        });
    }
    let http = reqwest::blocking::Client::new();
    let api_key = plan.api_key.as_deref();
    let mut passed = Vec::new();
    // The split the alias has, as far as this rollout knows: each move checks it is still so.
    let mut last = entry.canary;
    let mut move_alias = |number: u64, canary: Option<Canary>, reason: &str| -> Result<()> {
        set(registry, plan, (from, last), number, canary, reason)?;
        last = canary;
        Ok(())
    };
    for &step in &plan.steps {
        if step == 100 {
            let reason = format!("rollout of {} complete: {}", plan.to, summary(&passed));
            move_alias(plan.to, None, &reason)?;
            report(&format!("promoted {repo}:{}: {alias} points at it alone", plan.to));
            return Ok(Outcome::Passed);
        }
        let reason = format!("rollout of {}: step {step}%", plan.to);
        move_alias(from, Some(Canary { number: plan.to, percent: step }), &reason)?;
        report(&format!("step {step}%: {alias} sends {step}% of requests to {repo}:{}", plan.to));
        wait_until_served(registry, &http, plan, (from, Some((plan.to, step))))?;
        let before = scrape(&http, &plan.serves, api_key, repo)?;
        let mut waited = Duration::ZERO;
        let (canary, model) = loop {
            std::thread::sleep(plan.every);
            waited += plan.every;
            let now = scrape(&http, &plan.serves, api_key, repo)?;
            let (canary, model) = (delta(&now, &before, plan.to), delta(&now, &before, from));
            // Judged early when the errors alone already break the limit, whatever comes.
            let hopeless = canary.errors as f64 > plan.max_error_rate * plan.min_requests.max(canary.requests) as f64;
            if canary.requests >= plan.min_requests || hopeless {
                break (canary, model);
            }
            if waited >= plan.step_timeout {
                let reason = format!(
                    "rollout of {} rolled back at step {step}%: the canary answered {} of the {} requests it needs to be judged in {}s (--step-timeout); send the serves traffic, or lower --min-requests",
                    plan.to,
                    canary.requests,
                    plan.min_requests,
                    waited.as_secs()
                );
                move_alias(from, None, &reason)?;
                report(&format!("rolled back: {reason}"));
                return Ok(Outcome::RolledBack { step, reason });
            }
            report(&format!(
                "step {step}%: the canary answered {} of the {} requests it needs to be judged after {}s; waiting",
                canary.requests,
                plan.min_requests,
                waited.as_secs()
            ));
        };
        let verdict = judge(plan, &canary, &model);
        match verdict {
            Ok(figures) => {
                report(&format!("step {step}% passed: {figures}"));
                passed.push(format!("{step}% ({figures})"));
            }
            Err(broken) => {
                let reason = format!("rollout of {} rolled back at step {step}%: {broken}", plan.to);
                move_alias(from, None, &reason)?;
                report(&format!("rolled back: {reason}"));
                return Ok(Outcome::RolledBack { step, reason });
            }
        }
    }
    Ok(Outcome::Passed)
}

/// The plan's own mistakes, before anything moves.
fn check(plan: &Plan) -> Result<()> {
    let rising = plan.steps.windows(2).all(|w| w[0] < w[1]);
    if plan.steps.is_empty() || !rising || plan.steps.iter().any(|s| *s == 0 || *s > 100) {
        return Err(Error::invalid_input(format!(
            "--steps {:?} is not a rising list of shares from 1 to 100 (e.g. 5,25,50,100)",
            plan.steps
        )));
    }
    if plan.serves.is_empty() && plan.steps.iter().any(|s| *s < 100) {
        return Err(Error::invalid_input(
            "a rollout judges each step on the serves following the alias: name them with --serve URL",
        ));
    }
    if !(0.0..=1.0).contains(&plan.max_error_rate) || plan.max_p99_ratio.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(Error::invalid_input(
            "--max-error-rate is a share from 0% to 100%, --max-p99-ratio a ratio over 0",
        ));
    }
    Ok(())
}

/// Moves the alias to `number` with `canary`, when it still points at `from` with the
/// split `last` this rollout set: the number is the move's compare-and-set; the split is
/// read just before, so a person who changed only the share is told, not overridden (in
/// the moment between that read and the move, only the number is guarded).
fn set(
    registry: &dyn Registry,
    plan: &Plan,
    (from, last): (u64, Option<Canary>),
    number: u64,
    canary: Option<Canary>,
    reason: &str,
) -> Result<()> {
    unchanged(registry, plan, (from, last))?;
    let options =
        AliasOptions { expect: Expect::Number(from), canary, reason: Some(reason.to_string()), ..Default::default() };
    registry.set_alias(&plan.organization, &plan.repository, &plan.alias, number, &options).map(|_| ())
}

/// The alias still points at `from` with the split `last` this rollout set; otherwise a
/// conflict saying where it points now.
fn unchanged(registry: &dyn Registry, plan: &Plan, (from, last): (u64, Option<Canary>)) -> Result<()> {
    let (org, repo, alias) = (&plan.organization, &plan.repository, &plan.alias);
    let now = registry.alias_entry(org, repo, alias)?;
    if now.as_ref().is_none_or(|now| now.number != from || now.canary != last) {
        let now = now.map_or("does not exist".to_string(), |now| match now.canary {
            Some(canary) => format!("points at {} with canary {canary}", now.number),
            None => format!("points at {} alone", now.number),
        });
        return Err(Error::Conflict {
            message: format!(
                "alias `{alias}` of `{repo}` {now}, not where this rollout left it: someone changed it meanwhile; the rollout stops here and changes nothing (see `runner-registry alias history {repo} {alias}`)"
            ),
        });
    }
    Ok(())
}

/// Waits (up to a step) until every serve serves `split`: metrics taken before would
/// judge the step on traffic of the last one.
/// The alias is checked meanwhile (about every second): a serve waits for a split that
/// someone replaced forever.
fn wait_until_served(
    registry: &dyn Registry,
    http: &reqwest::blocking::Client,
    plan: &Plan,
    split: (u64, Option<(u64, u8)>),
) -> Result<()> {
    let give_up = Instant::now() + plan.every.max(Duration::from_secs(30));
    let set = (split.0, split.1.map(|(number, percent)| Canary { number, percent }));
    for serve in &plan.serves {
        for look in 0u64.. {
            let now = served_split(http, serve, plan.api_key.as_deref(), &plan.repository)?;
            if now == split {
                break;
            }
            if look % 20 == 19 {
                unchanged(registry, plan, set)?;
            }
            if Instant::now() > give_up {
                return Err(Error::msg(format!(
                    "{serve} still serves {now:?}, not {split:?}: does it follow {}:{}? (the split stays where it is)",
                    plan.repository, plan.alias
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

fn delta(now: &Sample, before: &Sample, version: u64) -> VersionSample {
    let empty = VersionSample::default();
    now.get(&version).unwrap_or(&empty).since(before.get(&version).unwrap_or(&empty))
}

/// A step's verdict: its figures when it passed, the broken limit when not.
fn judge(plan: &Plan, canary: &VersionSample, model: &VersionSample) -> std::result::Result<String, String> {
    let rate = canary.error_rate();
    let mut figures = format!("canary error rate {:.2}% ({} of {})", rate * 100.0, canary.errors, canary.requests);
    if rate > plan.max_error_rate {
        return Err(format!("{figures}, over the limit of {:.2}%", plan.max_error_rate * 100.0));
    }
    if let (Some(canary_p99), Some(model_p99)) = (canary.quantile(0.99), model.quantile(0.99)) {
        let ratio = canary_p99 / model_p99;
        figures.push_str(&format!(
            ", p99 {:.2} ms against the model's {:.2} ms ({ratio:.2}x)",
            canary_p99 * 1e3,
            model_p99 * 1e3
        ));
        if let Some(max) = plan.max_p99_ratio.filter(|max| ratio > *max) {
            return Err(format!("{figures}, over the limit of {max}x"));
        }
    }
    Ok(figures)
}

fn summary(passed: &[String]) -> String {
    match passed.is_empty() {
        true => "no step before it".to_string(),
        false => format!("steps {}", passed.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &[u8]) -> Plan {
        Plan {
            organization: "default".into(),
            repository: "iris".into(),
            alias: "prod".into(),
            to: 5,
            steps: steps.to_vec(),
            every: Duration::from_millis(1),
            max_error_rate: 0.01,
            max_p99_ratio: Some(1.5),
            min_requests: 1,
            step_timeout: Duration::from_secs(60),
            serves: vec!["http://127.0.0.1:1".into()],
            api_key: None,
        }
    }

    #[test]
    fn a_plan_must_rise_from_1_to_100() {
        for steps in [&[][..], &[0, 50], &[50, 25], &[5, 5], &[5, 101]] {
            assert!(check(&plan(steps)).is_err(), "{steps:?} passed");
        }
        assert!(check(&plan(&[5, 25, 50, 100])).is_ok());
    }

    #[test]
    fn a_step_breaks_on_errors_or_latency() {
        let sample = |requests, errors, p99_bucket: f64| {
            let mut s = VersionSample { requests, errors, ..Default::default() };
            s.buckets.insert(super::super::scrape::Bound(p99_bucket), requests);
            s.buckets.insert(super::super::scrape::Bound(f64::INFINITY), requests);
            s
        };
        let plan = plan(&[5, 100]);
        assert!(judge(&plan, &sample(100, 1, 0.001), &sample(900, 0, 0.001)).is_ok());
        let errors = judge(&plan, &sample(100, 5, 0.001), &sample(900, 0, 0.001)).unwrap_err();
        assert!(errors.contains("5.00% (5 of 100)") && errors.contains("1.00%"), "{errors}");
        let slow = judge(&plan, &sample(100, 0, 0.004), &sample(900, 0, 0.001)).unwrap_err();
        assert!(slow.contains("4.00x") && slow.contains("1.5x"), "{slow}");
    }
}
