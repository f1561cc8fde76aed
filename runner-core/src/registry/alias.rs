//! Aliases: names for model numbers that move (`iris:prod`), with a history of every
//! move, the rules every backend applies when one moves, and the guard that keeps a model
//! an alias points at from being deleted.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::names::validate_alias;

/// Where an alias points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias name (`prod`).
    pub name: String,
    /// The model number it resolves to.
    pub number: u64,
    /// A second model that answers a share of the alias's requests when it is served
    /// (`serve iris:prod`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// A traffic split: the second model of an alias and the share of requests it answers.
///
/// Which requests go to it is decided by `serve` (see the serving guide's "Traffic
/// splits"): a pure function of a sticky key and the split where the operator names one,
/// so every replica answers one user with one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Canary {
    /// The canary's model number, a ready model of the same repository.
    #[serde(deserialize_with = "whole_number")]
    pub number: u64,
    /// The share of requests it answers, in whole percents from 0 to 100.
    pub percent: u8,
}

impl std::fmt::Display for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}%", self.number, self.percent)
    }
}

/// One move of an alias, as its history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMove {
    /// Which alias.
    pub alias: String,
    /// Where it pointed before (`None`: it was created).
    pub from: Option<u64>,
    /// Where it points after (`None`: it was deleted).
    pub to: Option<u64>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who moved it: the token's name on a registry server, the user on a local registry.
    pub by: String,
    /// Whether the move was forced past an API fingerprint change.
    #[serde(default)]
    pub forced: bool,
    /// The split before the move, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_canary: Option<Canary>,
    /// The split after the move, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_canary: Option<Canary>,
    /// Why it moved, when the mover said (a rollout's step, or why it rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a move expects the alias to point at now: a compare-and-set, so that of two
/// rollouts racing, the second is told instead of silently undoing the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Whatever it points at (or that it does not exist).
    #[default]
    Any,
    /// That the alias does not exist yet.
    Unset,
    /// That it points at this number.
    Number(#[serde(deserialize_with = "whole_number")] u64),
}

/// A model number from JSON: an integer, or a number with no fraction (`4.0`), which JSON
/// Schema's `integer` (and many JSON writers) allow.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    use serde::de::Unexpected;
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a model number (a whole number from 1)")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<u64, E> {
            // 2^64 is the first float past u64::MAX.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }
    deserializer.deserialize_any(Whole)
}

/// How [`Registry::set_alias`](super::Registry::set_alias) moves an alias.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasOptions {
    /// The compare-and-set condition.
    #[serde(default)]
    pub expect: Expect,
    /// Move it even when the new model's API fingerprint differs from the current one's
    /// (or the canary's from the model's).
    #[serde(default)]
    pub force: bool,
    /// The split the alias has after the move: `None` sends every request to the model
    /// it points at (a move always sets the whole alias, so it also ends a split).
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Why, recorded in the history.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Checks that `expect` holds for an alias pointing at `current`; otherwise the
/// [`Error::Conflict`] says where it points.
pub fn check_expect(repository: &str, alias: &str, current: Option<u64>, expect: Expect) -> Result<()> {
    let holds = match expect {
        Expect::Any => true,
        Expect::Unset => current.is_none(),
        Expect::Number(n) => current == Some(n),
    };
    if holds {
        return Ok(());
    }
    let now = match current {
        Some(n) => format!("points at {repository}:{n}"),
        None => "does not exist".to_string(),
    };
    let wanted = match expect {
        Expect::Number(n) => format!("{repository}:{n}"),
        _ => "nothing".to_string(),
    };
    Err(Error::Conflict {
        message: format!(
            "alias `{alias}` of `{repository}` {now}, not {wanted} as this move expected: someone moved it meanwhile; nothing was changed (see `alias history`, then move it again)"
        ),
    })
}

/// The longest reason a move may record, in bytes.
pub const MAX_REASON: usize = 2048;

/// The rules of moving alias `alias` from the model `current` (its number and manifest)
/// to `target`, with `canary` the manifest of `options.canary`'s model: the alias name is
/// valid, the compare-and-set condition holds, the split is one (another model, at most
/// 100 %), and neither the target's API fingerprint (against the current model's) nor the
/// canary's (against the target's) changed unless `options.force`. Every backend calls it
/// under the lock (or in the transaction) that makes the move atomic.
pub fn check_move(
    alias: &str,
    current: Option<(u64, &Manifest)>,
    target: &Manifest,
    canary: Option<&Manifest>,
    options: &AliasOptions,
) -> Result<()> {
    validate_alias(alias)?;
    if options.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(Error::invalid_input(format!(
            "the reason for moving alias `{alias}` is longer than {MAX_REASON} bytes: say it shorter"
        )));
    }
    let repository = &target.model.repository;
    check_expect(repository, alias, current.map(|(n, _)| n), options.expect)?;
    if let Some(split) = options.canary {
        check_split(alias, target, split)?;
        let canary = canary.expect("the backend read the canary's manifest");
        if !options.force {
            check_api(alias, target, canary, true)?;
        }
    }
    let Some((number, manifest)) = current else { return Ok(()) };
    if options.force || number == target.model.number {
        return Ok(());
    }
    check_api(alias, manifest, target, false)
}

/// A split names another model of the repository, with a share from 0 to 100 %.
pub fn check_split(alias: &str, target: &Manifest, split: Canary) -> Result<()> {
    if split.number == target.model.number {
        return Err(Error::invalid_input(format!(
            "alias `{alias}` cannot split traffic between {} and itself: name another number as the canary",
            target.model
        )));
    }
    if split.percent > 100 {
        return Err(Error::invalid_input(format!(
            "a canary's share is a percentage from 0 to 100, not {}",
            split.percent
        )));
    }
    Ok(())
}

/// Refuses `new` where its API differs from `old`'s: the model an alias moves to against
/// the one it pointed at, or (`split`) a canary against the model the alias points at.
fn check_api(alias: &str, old: &Manifest, new: &Manifest, split: bool) -> Result<()> {
    let (Some(before), Some(after)) = (&old.api, &new.api) else { return Ok(()) };
    let changes = before.changes(after);
    if changes.is_empty() {
        return Ok(());
    }
    let (new_model, old_model, changes) = (&new.model, &old.model, changes.join("; "));
    let message = match split {
        false => format!(
            "{new_model} answers a different API than {old_model} that alias `{alias}` points at, so its callers could break: {changes}; nothing was changed (move it anyway with --force, or `force: true`)"
        ),
        true => format!(
            "{new_model} would answer a share of alias `{alias}`'s requests with a different API than {old_model}, so its callers could break: {changes}; nothing was changed (split anyway with --force, or `force: true`)"
        ),
    };
    Err(Error::Conflict { message })
}

/// The error for deleting a model that aliases point at.
pub fn aliased(model: &crate::names::ModelId, aliases: &[String]) -> Error {
    let names: Vec<String> = aliases.iter().map(|a| format!("`{a}`")).collect();
    Error::Conflict {
        message: format!(
            "{model} is what alias {} of `{}` points at; move or delete the alias first (`runner-registry alias rm {} {}`)",
            names.join(", "),
            model.repository,
            model.repository,
            aliases.first().map_or("ALIAS", String::as_str)
        ),
    }
}

/// The aliases of one repository and their history: what the directory registry stores in
/// `aliases.json` and the memory registry keeps, changed only under the repository's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AliasBook {
    /// Alias name -> model number.
    pub(crate) aliases: std::collections::BTreeMap<String, u64>,
    /// Alias name -> its split, for the aliases that have one. A map beside `aliases`
    /// (rather than a richer value in it) so that a file written before splits existed
    /// reads unchanged, and one without splits is written as before.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) canaries: std::collections::BTreeMap<String, Canary>,
    /// Every move, oldest first.
    pub(crate) history: Vec<AliasMove>,
}

impl AliasBook {
    pub(crate) fn list(&self) -> Vec<Alias> {
        self.aliases
            .iter()
            .map(|(name, number)| Alias {
                name: name.clone(),
                number: *number,
                canary: self.canaries.get(name).copied(),
            })
            .collect()
    }

    pub(crate) fn history(&self, alias: Option<&str>) -> Vec<AliasMove> {
        self.history.iter().filter(|m| alias.is_none_or(|a| m.alias == a)).cloned().collect()
    }

    /// The aliases pointing at `number`, or sending it a share of their requests.
    pub(crate) fn pointing_at(&self, number: u64) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|a| a.number == number || a.canary.is_some_and(|c| c.number == number))
            .map(|a| a.name)
            .collect()
    }

    /// Moves `alias` to ready model `number` (with `options.canary`'s split, or none)
    /// under the rules of [`check_move`]; `manifest_of` reads a ready model's manifest (an
    /// error when it is not ready).
    pub(crate) fn set(
        &mut self,
        alias: &str,
        number: u64,
        options: &AliasOptions,
        by: &str,
        manifest_of: impl Fn(u64) -> Result<Manifest>,
    ) -> Result<AliasMove> {
        validate_alias(alias)?;
        let target = manifest_of(number)?;
        let canary = options.canary.map(|c| manifest_of(c.number)).transpose()?;
        let current = self.aliases.get(alias).copied();
        let current_manifest = current.map(&manifest_of).transpose()?;
        check_move(alias, current.zip(current_manifest.as_ref()), &target, canary.as_ref(), options)?;
        let to = Some((number, options.canary));
        Ok(self.record(alias, to, by, options.force, options.reason.clone()))
    }

    /// Deletes `alias` when `expect` holds.
    pub(crate) fn delete(&mut self, repository: &str, alias: &str, expect: Expect, by: &str) -> Result<AliasMove> {
        validate_alias(alias)?;
        let Some(current) = self.aliases.get(alias).copied() else {
            return Err(no_such_alias(repository, alias));
        };
        check_expect(repository, alias, Some(current), expect)?;
        Ok(self.record(alias, None, by, false, None))
    }

    /// Points `alias` at `to` (a number and its split; `None` deletes it) and records the
    /// move.
    fn record(
        &mut self,
        alias: &str,
        to: Option<(u64, Option<Canary>)>,
        by: &str,
        forced: bool,
        reason: Option<String>,
    ) -> AliasMove {
        let from = self.aliases.get(alias).copied();
        let from_canary = self.canaries.get(alias).copied();
        self.canaries.remove(alias);
        match to {
            Some((n, canary)) => {
                self.aliases.insert(alias.to_string(), n);
                if let Some(canary) = canary {
                    self.canaries.insert(alias.to_string(), canary);
                }
            }
            None => {
                self.aliases.remove(alias);
            }
        }
        let change = AliasMove {
            alias: alias.to_string(),
            from,
            to: to.map(|(n, _)| n),
            at: crate::manifest::now_rfc3339(),
            by: by.to_string(),
            forced,
            from_canary,
            to_canary: to.and_then(|(_, c)| c),
            reason,
        };
        self.history.push(change.clone());
        change
    }
}

/// The error for an alias that does not exist.
pub fn no_such_alias(repository: &str, alias: &str) -> Error {
    Error::NotFound {
        what: "alias",
        message: format!(
            "alias `{alias}` of `{repository}` does not exist; set it with `runner-registry alias set {repository} {alias} NUMBER`"
        ),
    }
}

/// Who moves aliases of a local or in-memory registry: the user running the process.
pub(crate) fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "local".to_string())
}
