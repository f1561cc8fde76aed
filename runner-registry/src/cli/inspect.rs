//! The inspection commands (`repos`, `models`, `show`, `files`, `download`, `delete`,
//! `delete-repo`, `alias`, `rollout`): a registry directory or server read or changed through
//! runner-core's `Registry`, as a registration would.

use super::args::{AliasCommand, At, Command};

/// An inspection command, run on an opened registry and organization.
type Inspection = dyn FnOnce(&dyn runner_core::Registry, &str) -> runner_core::Result<()>;

pub(crate) fn inspect(command: Command) -> runner_core::Result<()> {
    use runner_core::open_registry;
    let (at, run): (At, Box<Inspection>) = match command {
        Command::Repos { at } => (
            at,
            Box::new(|r, org| {
                for repo in r.repositories(org)? {
                    println!("{repo}");
                }
                Ok(())
            }),
        ),
        Command::Models { repository, at } => (
            at,
            Box::new(move |r, org| {
                println!("{:<8} {:<10} {:>6} {:>14}  {:<16} CREATED", "NUMBER", "STATUS", "FILES", "BYTES", "RUNNER");
                for m in r.models(org, &repository)? {
                    let (files, bytes, runner, created) = match &m.manifest {
                        Some(man) => (
                            man.files.len().to_string(),
                            man.total_bytes().to_string(),
                            man.runner.name.clone(),
                            man.created_at.clone(),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    println!(
                        "{:<8} {:<10} {files:>6} {bytes:>14}  {runner:<16} {created}",
                        m.id.number,
                        m.status.to_string()
                    );
                }
                Ok(())
            }),
        ),
        Command::Show { model, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                println!("{}", String::from_utf8_lossy(&r.manifest(&id)?.to_json()).trim_end());
                Ok(())
            }),
        ),
        Command::Files { model, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                for f in r.manifest(&id)?.files {
                    println!("{:>14}  {}  {}", f.size, f.sha256, f.path);
                }
                Ok(())
            }),
        ),
        Command::Download { model, out, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                let manifest = r.manifest(&id)?;
                let volume = r.fetch(&manifest)?;
                for f in &manifest.files {
                    let target = out.join(&f.path);
                    std::fs::create_dir_all(target.parent().expect("files have a parent"))
                        .and_then(|()| std::fs::copy(volume.join(&f.path), &target).map(|_| ()))
                        .map_err(|e| runner_core::Error::msg(format!("writing {}: {e}", target.display())))?;
                }
                println!("{} files, {} bytes -> {}", manifest.files.len(), manifest.total_bytes(), out.display());
                Ok(())
            }),
        ),
        Command::Delete { model, at } => (
            at,
            Box::new(move |r, org| {
                let reference = with_org(&model, org)?;
                let runner_core::Version::Number(number) = reference.version else {
                    return Err(runner_core::Error::msg("delete takes a model number, not `latest`"));
                };
                let id = runner_core::ModelId::new(&reference.organization, &reference.repository, number)?;
                r.delete_model(&id)?;
                println!("deleted {id}");
                Ok(())
            }),
        ),
        Command::Alias { command } => alias_command(command),
        Command::DeleteRepo { repository, at } => {
            let registry = runner_core::registry_location(Some(&at.registry));
            return match registry.starts_with("http://") || registry.starts_with("https://") {
                true => runner_core::HttpRegistry::new(&registry, std::env::var(runner_core::TOKEN_ENV).ok())?
                    .delete_repository(&at.org, &repository),
                false => runner_core::LocalRegistry::open(&registry)?.delete_repository(&at.org, &repository),
            }
            .map(|()| println!("deleted repository {repository}"));
        }
        Command::Rollout { plan, at } => {
            let plan = plan.plan(at.org.clone());
            (
                at,
                Box::new(move |r, _| {
                    let report = &mut |line: &str| println!("{line}");
                    match crate::rollout::rollout(r, &plan, report)? {
                        crate::rollout::Outcome::Passed => Ok(()),
                        crate::rollout::Outcome::RolledBack { reason, .. } => Err(runner_core::Error::msg(reason)),
                    }
                }),
            )
        }
        Command::Serve { .. }
        | Command::Token { .. }
        | Command::Gc { .. }
        | Command::Import { .. }
        | Command::Verify { .. }
        | Command::Export { .. }
        | Command::Audit { .. } => {
            unreachable!("handled by main")
        }
    };
    let registry = open_registry(&runner_core::registry_location(Some(&at.registry)))?;
    run(registry.as_ref(), &at.org)
}

/// A model reference; `--org` applies when the reference names no organization.
fn with_org(model: &str, org: &str) -> runner_core::Result<runner_core::ModelRef> {
    let mut reference: runner_core::ModelRef = model.parse()?;
    if !model.contains('/') {
        reference.organization = org.to_string();
    }
    Ok(reference)
}

/// The compare-and-set condition of `alias set --expect`.
fn parse_expect(expect: Option<&str>) -> runner_core::Result<runner_core::registry::Expect> {
    use runner_core::registry::Expect;
    match expect {
        None => Ok(Expect::Any),
        Some("none") => Ok(Expect::Unset),
        Some(n) => n.parse::<u64>().map(Expect::Number).map_err(|_| {
            runner_core::Error::invalid_input(format!(
                "--expect `{n}` is neither a model number nor `none` (the alias must not exist yet)"
            ))
        }),
    }
}

fn print_move(repository: &str, change: &runner_core::registry::AliasMove) {
    let side = |n: Option<u64>, canary: Option<runner_core::registry::Canary>| {
        let split = canary.map_or(String::new(), |c| format!(" (canary {repository}:{c})"));
        n.map_or("-".to_string(), |n| format!("{repository}:{n}{split}"))
    };
    let forced = if change.forced { "  (forced)" } else { "" };
    let reason = change.reason.as_ref().map_or(String::new(), |r| format!("  because: {r}"));
    println!(
        "{}  {:<12} {} -> {}  by {}{forced}{reason}",
        change.at,
        change.alias,
        side(change.from, change.from_canary),
        side(change.to, change.to_canary),
        change.by
    );
}

fn alias_command(command: AliasCommand) -> (At, Box<Inspection>) {
    use runner_core::registry::{AliasOptions, Canary, Expect};
    match command {
        AliasCommand::Set { repository, alias, number, expect, force, canary, percent, reason, at } => (
            at,
            Box::new(move |r, org| {
                let canary = canary.zip(percent).map(|(number, percent)| Canary { number, percent });
                let expect = parse_expect(expect.as_deref())?;
                let options = AliasOptions { expect, force, canary, reason: reason.clone() };
                print_move(&repository, &r.set_alias(org, &repository, &alias, number, &options)?);
                Ok(())
            }),
        ),
        AliasCommand::Ls { repository, at } => (
            at,
            Box::new(move |r, org| {
                println!("{:<16} {:<8} CANARY", "ALIAS", "NUMBER");
                for alias in r.aliases(org, &repository)? {
                    let canary = alias.canary.map_or("-".to_string(), |c| c.to_string());
                    println!("{:<16} {:<8} {canary}", alias.name, alias.number);
                }
                Ok(())
            }),
        ),
        AliasCommand::Rm { repository, alias, expect, at } => (
            at,
            Box::new(move |r, org| {
                let expect = expect.map_or(Expect::Any, Expect::Number);
                print_move(&repository, &r.delete_alias(org, &repository, &alias, expect)?);
                Ok(())
            }),
        ),
        AliasCommand::History { repository, alias, at } => (
            at,
            Box::new(move |r, org| {
                for change in r.alias_history(org, &repository, alias.as_deref())? {
                    print_move(&repository, &change);
                }
                Ok(())
            }),
        ),
    }
}
