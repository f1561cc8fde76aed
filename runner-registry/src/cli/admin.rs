//! The commands that open the server's own storage: `serve`, `gc`, `verify`, `export`,
//! `import`, and (through `access`) `token` and `audit`.

use runner_core::serve::serve_connections;

use super::access::{self, record};
use super::args::Command;
use crate::audit::{Action, AuditQuery};
use crate::export::{export, Selection};
use crate::verify::verify;
use crate::{router, Config};

/// The commands that open the server's own storage.
pub(crate) async fn serve_or_administer(command: Command) -> Result<(), String> {
    match command {
        Command::Gc { storage, grace_hours, dry_run, every_hours } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let grace = std::time::Duration::from_secs_f64(grace_hours.max(0.0) * 3600.0);
            loop {
                let collected = backend.collect_garbage(grace, dry_run).await.map_err(|e| e.to_string())?;
                let report = serde_json::json!({ "dry_run": dry_run, "collected": collected });
                if !dry_run {
                    record(&*backend, "*", Action::Gc, None, report["collected"].to_string()).await;
                }
                println!("{report}");
                match every_hours {
                    Some(hours) => {
                        tokio::time::sleep(std::time::Duration::from_secs_f64(hours.max(0.001) * 3600.0)).await
                    }
                    None => return Ok(()),
                }
            }
        }
        Command::Verify { storage, deep, json, concurrency } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let progress = match std::io::IsTerminal::is_terminal(&std::io::stderr()) && !json {
                true => indicatif::ProgressBar::new(0).with_style(
                    indicatif::ProgressStyle::with_template("verifying {bar:40} {pos}/{len} contents ({eta})")
                        .expect("a valid template"),
                ),
                false => indicatif::ProgressBar::hidden(),
            };
            let concurrency = usize::from(concurrency);
            let verified = verify(&*backend, deep, concurrency, &progress).await.map_err(|e| e.to_string())?;
            progress.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&verified).expect("serializes"));
            } else {
                for p in &verified.problems {
                    println!("{}  {}  (sha256 {}): {}", p.model, p.file, p.sha256, p.problem);
                }
                let read =
                    if deep { format!(", {} bytes read and hashed", verified.bytes_read) } else { String::new() };
                println!(
                    "{} ready models, {} files, {} contents checked{read}: {} problems",
                    verified.models,
                    verified.files,
                    verified.contents,
                    verified.problems.len()
                );
            }
            match verified.problems.len() {
                0 => Ok(()),
                n => Err(format!("{n} files of ready models cannot be served as their manifests say")),
            }
        }
        Command::Export { to, org, repo, storage } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let target = runner_core::registry::store::DirectoryStore::open(&to).map_err(|e| e.to_string())?;
            let selection = Selection { organization: org, repository: repo };
            let exported = export(&*backend, &target, &selection).await.map_err(|e| e.to_string())?;
            let report = serde_json::to_string(&exported).expect("serializes");
            let organization = selection.organization.as_deref().unwrap_or("*");
            let target = format!("to {}: {report}", to.display());
            record(&*backend, organization, Action::Export, selection.repository.as_deref(), target).await;
            println!("{report}");
            Ok(())
        }
        Command::Import { from, storage } => {
            let shared = storage.open_shared().await.map_err(|e| e.to_string())?;
            let imported = shared.import(&from).await.map_err(|e| e.to_string())?;
            let report = serde_json::to_string(&imported).expect("serializes");
            record(&shared, "*", Action::Import, None, format!("from {}: {report}", from.display())).await;
            println!("{report}");
            Ok(())
        }
        Command::Token { command } => access::token(command).await,
        Command::Audit { storage, org, repo, since, limit, json } => {
            access::audit(&storage, AuditQuery { organization: org, repository: repo, since, limit }, json).await
        }
        Command::Serve { storage, addr, no_auth, max_file_size, rate_limit, max_uploads_per_token, connections } => {
            let backend = storage.open(true).await.map_err(|e| e.to_string())?;
            let config = Config {
                auth: !no_auth,
                max_file_size,
                rate_limit: std::num::NonZeroU32::new(rate_limit),
                max_uploads_per_token: std::num::NonZeroUsize::new(max_uploads_per_token),
            };
            let app = router(backend, &config);
            let limits = connections.limits();
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            println!("listening on http://{local}");
            if no_auth {
                tracing::warn!("--no-auth: every request may read and write every organization");
            }
            serve_connections(listener, app, limits, runner_core::serve::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        _ => unreachable!("inspection commands are handled by main"),
    }
}
