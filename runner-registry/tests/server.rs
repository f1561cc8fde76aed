//! The real `runner-registry` server on 127.0.0.1, used through `HttpRegistry` exactly as
//! `register` and `serve` use it.

#![allow(missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{assert_missing_truncated_corrupt, manifest, sha256_hex, Scale, Scaler, Server, BIN};
use runner_core::{load_any, register_model, HttpRegistry, Loaded, ModelStatus, Registry};

fn start(data: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(BIN);
    command.args(["serve", "--addr", "127.0.0.1:0", "--data"]).arg(data).args(extra).stderr(Stdio::null());
    Server::spawn(command)
}

fn token(data: &Path, org: &str, write: bool) -> String {
    let mut command = Command::new(BIN);
    command.args(["token", "create", "--org", org, "--data"]).arg(data);
    if write {
        command.arg("--write");
    }
    let output = command.output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A token with the admin right: the tests that delete need it (a write token may not).
fn admin_token(data: &Path, org: &str) -> String {
    let output =
        Command::new(BIN).args(["token", "create", "--org", org, "--admin", "--data"]).arg(data).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn client(server: &Server, token: Option<&str>, cache: &Path) -> HttpRegistry {
    HttpRegistry::with_cache(&server.url, token.map(str::to_string), cache).unwrap()
}

#[test]
fn register_and_load_over_http_with_dedupe_and_a_warm_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = token(&data, "acme", true);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&write), &dir.path().join("cache"));
    let artifact = dir.path().join("weights.bin");
    // Large enough to be streamed in 1 MiB writes by the async client (with the token).
    std::fs::write(&artifact, vec![42u8; 12 << 20]).unwrap();
    let register = || {
        register_model::<Scaler>("scaler")
            .organization("acme")
            .model(Scale(3.0))
            .artifact(artifact.to_str().unwrap(), "weights.bin")
            .register(&registry)
            .unwrap()
    };
    let first = register();
    assert_eq!(first.id().to_string(), "acme/scaler:1");
    let sent = registry.bytes_sent();
    assert!(sent >= 12 << 20, "the artifact was uploaded ({sent} bytes)");
    let second = register();
    assert_eq!(second.id().number, 2);
    assert_eq!(registry.bytes_sent(), sent, "re-registering unchanged files sends no file bytes");

    let model = Loaded::<Scaler>::load(&registry, &"acme/scaler:latest".parse().unwrap()).unwrap();
    assert_eq!(model.run(2.0).unwrap(), 6.0);
    let received = registry.bytes_received();
    assert!(received >= 12 << 20);
    let again = load_any(&registry, &"acme/scaler:2".parse().unwrap()).unwrap();
    assert_eq!(again.run_json(serde_json::json!(1.5)).unwrap(), serde_json::json!(4.5));
    assert_eq!(registry.bytes_received(), received, "the second load downloads nothing");

    // State survives a restart.
    drop(server);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&write), &dir.path().join("cache2"));
    assert_eq!(registry.latest("acme", "scaler").unwrap().unwrap().number, 2);
    Loaded::<Scaler>::load(&registry, &"acme/scaler:1".parse().unwrap()).unwrap();
}

#[test]
fn tokens_are_scoped_to_their_organization() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = token(&data, "acme", true);
    let reader = token(&data, "acme", false);
    let other = token(&data, "other", true);
    let server = start(&data, &[]);
    let cache = dir.path().join("cache");
    register_model::<Scaler>("secret")
        .organization("acme")
        .model(Scale(1.0))
        .register(&client(&server, Some(&acme), &cache))
        .unwrap();

    let theirs = client(&server, Some(&other), &cache);
    let err = theirs.models("acme", "secret").unwrap_err();
    assert!(matches!(err, runner_core::Error::NotFound { .. }), "404, not 403: {err}");
    assert!(theirs.repositories("acme").is_err());
    assert!(theirs.repositories("other").unwrap().is_empty());

    let read_only = client(&server, Some(&reader), &cache);
    assert_eq!(read_only.repositories("acme").unwrap(), ["secret"]);
    let err =
        register_model::<Scaler>("secret").organization("acme").model(Scale(1.0)).register(&read_only).unwrap_err();
    assert!(err.to_string().contains("may only read"), "{err}");

    let anonymous = client(&server, None, &cache);
    let err = anonymous.repositories("acme").unwrap_err();
    assert!(err.to_string().contains("refused the token"), "{err}");
    let forged = client(&server, Some("rrt_forged"), &cache);
    assert!(forged.repositories("acme").is_err());
}

#[test]
fn uploads_are_checked_and_limited_and_downloads_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &["--no-auth", "--max-file-size", "1000"]);
    let http = reqwest::blocking::Client::new();
    let blob = |sha: &str| format!("{}/v1/orgs/default/blobs/{sha}", server.url);

    // Content that does not match its declared sha256 is refused and not kept.
    let claimed = sha256_hex(b"what I claim");
    let response = http.put(blob(&claimed)).body("something else").send().unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(response.json::<serde_json::Value>().unwrap()["error"]["code"], "checksum_mismatch");
    assert_eq!(http.head(blob(&claimed)).send().unwrap().status().as_u16(), 404);

    // Over the size limit: 413, nothing kept.
    let big = vec![1u8; 2000];
    let response = http.put(blob(&sha256_hex(&big))).body(big.clone()).send().unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(http.head(blob(&sha256_hex(&big))).send().unwrap().status().as_u16(), 404);

    // A good upload, then a ranged download (how an interrupted download resumes).
    let content: Vec<u8> = (0..=255u8).cycle().take(900).collect();
    let sha = sha256_hex(&content);
    assert_eq!(http.put(blob(&sha)).body(content.clone()).send().unwrap().status().as_u16(), 201);
    let part = http.get(blob(&sha)).header("range", "bytes=100-199").send().unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &content[100..200]);

    // Malformed names and traversal attempts.
    for path in [
        "/v1/orgs/default/blobs/not-a-sha",
        "/v1/orgs/default/blobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/orgs/../repos",
        "/v1/orgs/default/repos/..%2Fx/models",
    ] {
        let status = http.get(format!("{}{path}", server.url)).send().unwrap().status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let status = http.post(format!("{}/v1/orgs/default/repos/Bad%20Name/models", server.url)).send().unwrap().status();
    assert_eq!(status.as_u16(), 400);
}

#[test]
fn concurrent_registrations_get_distinct_consecutive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth"]);
    let cache = dir.path().join("cache");
    let mut numbers: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let registry = client(&server, None, &cache);
                    register_model::<Scaler>("race").model(Scale(1.0)).register(&registry).unwrap().id().number
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_server_killed_mid_upload_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &["--no-auth"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    register_model::<Scaler>("crash").model(Scale(1.0)).register(&registry).unwrap();
    let taken = registry.create_model("default", "crash").unwrap();
    // Half an upload: the body is cut off when the server dies.
    let url = format!("{}/v1/orgs/default/blobs/{}", server.url, sha256_hex(&vec![9u8; 64 << 20]));
    let mut stream =
        std::net::TcpStream::connect(url.trim_start_matches("http://").split('/').next().unwrap()).unwrap();
    use std::io::Write;
    let path = url.splitn(4, '/').nth(3).unwrap();
    write!(stream, "PUT /{path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", 64 << 20).unwrap();
    stream.write_all(&vec![9u8; 1 << 20]).unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_dir(data.join("tmp")).unwrap().count() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the upload never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(server); // SIGKILL, mid-upload

    let server = start(&data, &["--no-auth"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    assert_eq!(registry.status(&taken).unwrap(), Some(ModelStatus::Uploading));
    assert_eq!(registry.latest("default", "crash").unwrap().unwrap().number, 1, "nothing half-visible");
    let partial = sha256_hex(&vec![9u8; 64 << 20]);
    let http = reqwest::blocking::Client::new();
    assert_eq!(
        http.head(format!("{}/v1/orgs/default/blobs/{partial}", server.url)).send().unwrap().status().as_u16(),
        404
    );
    let leftovers = std::fs::read_dir(data.join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "the partial upload was cleaned up at restart");
    // The retry succeeds.
    let next = register_model::<Scaler>("crash").model(Scale(2.0)).register(&registry).unwrap();
    assert_eq!(next.id().number, 3);
}

#[test]
fn serve_loads_from_the_registry_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = token(&data, "acme", true);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&write), &dir.path().join("cache"));
    register_model::<Scaler>("scaler").organization("acme").model(Scale(10.0)).register(&registry).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answer = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(runner_core::serve::serve_on(
            listener,
            std::sync::Arc::new(registry),
            vec!["acme/scaler:latest".parse().unwrap()],
            runner_core::serve::ServeOptions::default(),
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let answer = tokio::task::spawn_blocking(move || {
            let http = reqwest::blocking::Client::new();
            let started = std::time::Instant::now();
            while http.get(format!("http://{addr}/readyz")).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
                assert!(started.elapsed() < std::time::Duration::from_secs(20), "never ready");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            http.post(format!("http://{addr}/predict")).body("4.5").send().unwrap().text().unwrap()
        })
        .await
        .unwrap();
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
        answer
    });
    assert_eq!(answer, "45.0");
}

fn cli(registry: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command.args(args).args(["--registry", registry]).env_remove("RUNNER_REGISTRY").env_remove("RUNNER_ORGANIZATION");
    match token {
        Some(token) => command.env("RUNNER_REGISTRY_TOKEN", token),
        None => command.env_remove("RUNNER_REGISTRY_TOKEN"),
    };
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn inspect_a_registry_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // It deletes: the admin right.
    let admin = admin_token(&data, "default");
    let server = start(&data, &[]);
    let registry = client(&server, Some(&admin), &dir.path().join("cache"));
    let artifact = dir.path().join("notes.txt");
    std::fs::write(&artifact, "hello").unwrap();
    for scale in [1.0, 2.0] {
        register_model::<Scaler>("scaler")
            .model(Scale(scale))
            .artifact(artifact.to_str().unwrap(), "docs/notes.txt")
            .register(&registry)
            .unwrap();
    }
    // The same commands work on the server URL and on its data directory.
    for (at, token) in [(server.url.as_str(), Some(admin.as_str())), (data.to_str().unwrap(), None)] {
        let (ok, out, err) = cli(at, token, &["repos"]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "scaler");
        let (_, out, _) = cli(at, token, &["models", "scaler"]);
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert!(rows[0].starts_with("1") && rows[0].contains("ready") && rows[0].contains("scaler"), "{out}");
        let (_, out, _) = cli(at, token, &["show", "scaler:latest"]);
        let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(manifest["model"]["number"], 2);
        let (_, out, _) = cli(at, token, &["files", "scaler:1"]);
        assert!(out.lines().any(|l| l.ends_with("docs/notes.txt") && l.trim_start().starts_with('5')), "{out}");
    }
    let out_dir = dir.path().join("downloaded");
    let (ok, _, err) = cli(&server.url, Some(&admin), &["download", "scaler:2", "--out", out_dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(out_dir.join("docs/notes.txt")).unwrap(), "hello");

    let (ok, _, err) = cli(&server.url, Some(&admin), &["delete", "scaler:1"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&server.url, Some(&admin), &["models", "scaler"]);
    assert_eq!(out.lines().skip(1).count(), 1, "{out}");
    Loaded::<Scaler>::load(&registry, &"scaler:2".parse().unwrap()).unwrap();
    let (ok, _, err) = cli(&server.url, Some(&admin), &["delete", "scaler:latest"]);
    assert!(!ok && err.contains("not `latest`"), "{err}");
    let (ok, _, err) = cli(&server.url, None, &["repos"]);
    assert!(!ok && err.contains("refused the token"), "{err}");
    let (ok, _, err) = cli(&server.url, Some(&admin), &["delete-repo", "scaler"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&server.url, Some(&admin), &["repos"]);
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn malformed_requests_get_clear_errors_and_the_api_is_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth"]);
    let http = reqwest::blocking::Client::new();
    let number: serde_json::Value =
        http.post(format!("{}/v1/orgs/default/repos/m/models", server.url)).send().unwrap().json().unwrap();
    assert_eq!(number["number"], 1);
    let commit = format!("{}/v1/orgs/default/repos/m/models/1/manifest", server.url);
    let response = http.put(&commit).body("{ not a manifest").send().unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "invalid_manifest");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a valid manifest"), "{body}");
    let openapi: serde_json::Value = http.get(format!("{}/openapi.json", server.url)).send().unwrap().json().unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/v1/orgs/{org}/repos",
        "/v1/orgs/{org}/blobs/{sha256}",
        "/v1/orgs/{org}/repos/{repo}/models/{number}/manifest",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
    // The framework's own rejections answer in the JSON shape too: a model number that
    // is not one, and a method a route does not answer.
    let response = http.get(format!("{}/v1/orgs/default/repos/m/models/first", server.url)).send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`first`"), "{body}");
    let response = http.patch(&commit).send().unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

#[test]
fn requests_over_the_rate_limit_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let limited = token(&data, "acme", true);
    let other = token(&data, "acme", false);
    let server = start(&data, &["--rate-limit", "2"]);
    let http = reqwest::blocking::Client::new();
    let get = |token: &str| http.get(format!("{}/v1/orgs/acme/repos", server.url)).bearer_auth(token).send().unwrap();
    let statuses: Vec<u16> = (0..6).map(|_| get(&limited).status().as_u16()).collect();
    assert!(statuses.contains(&200) && statuses.contains(&429), "{statuses:?}");
    let refused = get(&limited);
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(refused.json::<serde_json::Value>().unwrap()["error"]["code"], "rate_limited");
    assert_eq!(get(&other).status().as_u16(), 200, "limits are per token");
    // The client waits as asked and gets through.
    let registry = client(&server, Some(&limited), &dir.path().join("cache"));
    assert!(registry.repositories("acme").unwrap().is_empty());
}

#[test]
fn two_registrations_of_one_number_race_safely_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    register_model::<Scaler>("raced").model(Scale(1.0)).register(&registry).unwrap();
    let id = runner_core::ModelId::new("default", "raced", 1).unwrap();
    let current = registry.manifest(&id).unwrap();
    let local = registry.fetch(&current).unwrap().join(&current.files[0].path);
    let mut first = registry.stage(&id).unwrap();
    let mut second = registry.stage(&id).unwrap();
    for staging in [&mut first, &mut second] {
        staging.put_file(&current.files[0].path, &local, current.files[0].origin).unwrap();
    }
    let mut winner = current.clone();
    winner.requirements = vec!["winner".into()];
    let mut loser = current;
    loser.requirements = vec!["loser".into()];
    first.commit(&winner).unwrap();
    let err = second.commit(&loser).unwrap_err();
    assert!(matches!(err, runner_core::Error::Conflict { .. }), "{err}");
    assert_eq!(registry.manifest(&id).unwrap().requirements, ["winner"]);
}

#[test]
fn a_folder_of_files_uploads_in_parallel_and_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    let folder = dir.path().join("shards");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    let mut total = 0u64;
    for i in 0..12u8 {
        let content = vec![i; 100_000 + usize::from(i) * 1000];
        total += content.len() as u64;
        let name = if i % 3 == 0 { format!("nested/shard-{i}.bin") } else { format!("shard-{i}.bin") };
        std::fs::write(folder.join(name), content).unwrap();
    }
    let registered = register_model::<Scaler>("sharded")
        .model(Scale(1.0))
        .artifact(format!("{}/*", folder.display()), "shards/*")
        .register(&registry)
        .unwrap();
    assert_eq!(registered.manifest.files.len(), 13);
    assert!(registry.bytes_sent() >= total);
    let model = Loaded::<Scaler>::load(&registry, &"sharded:1".parse().unwrap()).unwrap();
    for i in 0..12u8 {
        let name = if i % 3 == 0 { format!("shards/nested/shard-{i}.bin") } else { format!("shards/shard-{i}.bin") };
        let bytes = std::fs::read(model.volume().join(&name)).unwrap();
        assert!(bytes.len() == 100_000 + usize::from(i) * 1000 && bytes.iter().all(|b| *b == i), "{name}");
    }
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth"]);
    let cache = dir.path().join("cache");
    let registry = client(&server, None, &cache);
    let content: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let artifact = dir.path().join("big.bin");
    std::fs::write(&artifact, &content).unwrap();
    register_model::<Scaler>("resume")
        .model(Scale(1.0))
        .artifact(artifact.to_str().unwrap(), "big.bin")
        .register(&registry)
        .unwrap();

    // What an earlier, interrupted download left in the cache: the first 3 MB.
    let sha = sha256_hex(&content);
    std::fs::write(cache.join("tmp").join(format!("partial-{sha}")), &content[..3_000_000]).unwrap();
    let fresh = client(&server, None, &cache);
    let model = Loaded::<Scaler>::load(&fresh, &"resume:1".parse().unwrap()).unwrap();
    assert_eq!(std::fs::read(model.volume().join("big.bin")).unwrap(), content, "whole and verified");
    let received = fresh.bytes_received();
    assert!(received < 1_100_000, "only the missing 1 MB (and the small model file) came: {received}");

    // A corrupt partial is detected by the checksum and not used.
    let other_cache = dir.path().join("cache-corrupt");
    std::fs::create_dir_all(other_cache.join("tmp")).unwrap();
    let mut wrong = content[..3_000_000].to_vec();
    wrong[10] ^= 0xff;
    std::fs::write(other_cache.join("tmp").join(format!("partial-{sha}")), &wrong).unwrap();
    let corrupt = client(&server, None, &other_cache);
    let err = Loaded::<Scaler>::load(&corrupt, &"resume:1".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!other_cache.join("tmp").join(format!("partial-{sha}")).exists(), "the bad partial is removed");
    Loaded::<Scaler>::load(&corrupt, &"resume:1".parse().unwrap()).unwrap();
}

/// Flips a bit in the middle of a stored file, keeping its size.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn the_http_client_conforms_against_a_real_server() {
    use runner_core::registry::conformance::{self, Internals};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An organization-scoped token, as in production, with the admin right (the suite deletes).
    let admin = admin_token(&data, "acme");
    let server = start(&data, &[]);
    let registry = client(&server, Some(&admin), &dir.path().join("cache"));
    let blobs = data.join("blobs");
    // The server's directory, read as the registry it is.
    let stored = runner_core::LocalRegistry::open(&data).unwrap();
    conformance::all(
        &registry,
        "acme",
        &Internals {
            stored_contents: &|| stored.blob_count().unwrap(),
            // The server's copy: the client has never downloaded it, so it must notice.
            corrupt: &|file| flip_a_bit(&blobs.join("sha256").join(&file.sha256[..2]).join(&file.sha256)),
        },
    );
}

#[test]
fn content_is_scoped_to_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = token(&data, "acme", true);
    let other = token(&data, "other", true);
    let server = start(&data, &[]);
    let registered = register_model::<Scaler>("secret")
        .organization("acme")
        .model(Scale(7.0))
        .register(&client(&server, Some(&acme), &dir.path().join("cache-acme")))
        .unwrap();
    let file = &registered.manifest.files[0];
    let http = reqwest::blocking::Client::new();
    let blob = |org: &str| format!("{}/v1/orgs/{org}/blobs/{}", server.url, file.sha256);
    let status = |response: reqwest::blocking::Response| response.status().as_u16();

    // The owner reads it; another organization that knows the sha256 learns nothing.
    assert_eq!(status(http.head(blob("acme")).bearer_auth(&acme).send().unwrap()), 200);
    assert_eq!(status(http.head(blob("other")).bearer_auth(&other).send().unwrap()), 404, "HEAD reveals nothing");
    assert_eq!(status(http.get(blob("other")).bearer_auth(&other).send().unwrap()), 404);

    // Nor can it name the content in a manifest without sending it.
    let theirs = client(&server, Some(&other), &dir.path().join("cache-other"));
    let id = theirs.create_model("other", "stolen").unwrap();
    let mut manifest = registered.manifest.clone();
    manifest.model = id.clone();
    // HttpRegistry's staging would refuse this manifest itself; a hostile client sends it raw.
    let response = http
        .put(format!("{}/v1/orgs/other/repos/stolen/models/{}/manifest", server.url, id.number))
        .bearer_auth(&other)
        .header("if-none-match", "*")
        .body(manifest.to_json())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert!(response.text().unwrap().contains("has not uploaded"));
    assert_eq!(theirs.status(&id).unwrap(), Some(ModelStatus::Uploading), "nothing committed");

    // A wrong body for that sha256 is refused, even though the server holds the content.
    let response = http.put(blob("other")).bearer_auth(&other).body("not the content").send().unwrap();
    assert_eq!(status(response), 422);
    assert_eq!(status(http.head(blob("other")).bearer_auth(&other).send().unwrap()), 404);

    // Sending the real content is what grants it.
    let content =
        std::fs::read(registered_volume(&server, &acme, dir.path(), &registered.manifest).join(&file.path)).unwrap();
    assert_eq!(status(http.put(blob("other")).bearer_auth(&other).body(content.clone()).send().unwrap()), 201);
    assert_eq!(status(http.head(blob("other")).bearer_auth(&other).send().unwrap()), 200);
    assert_eq!(http.get(blob("other")).bearer_auth(&other).send().unwrap().bytes().unwrap().as_ref(), &content[..]);
}

/// The verified volume of a model, fetched by its owner.
fn registered_volume(server: &Server, token: &str, dir: &Path, manifest: &runner_core::Manifest) -> std::path::PathBuf {
    client(server, Some(token), &dir.join("cache-fetch")).fetch(manifest).unwrap()
}

#[test]
fn a_registry_from_before_grants_keeps_its_content_readable_by_its_owners() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = token(&data, "acme", true);
    let server = start(&data, &[]);
    let registered = register_model::<Scaler>("old")
        .organization("acme")
        .model(Scale(3.0))
        .register(&client(&server, Some(&acme), &dir.path().join("cache")))
        .unwrap();
    drop(server);
    std::fs::remove_dir_all(data.join("grants")).unwrap();
    let server = start(&data, &[]);
    let url = format!("{}/v1/orgs/acme/blobs/{}", server.url, registered.manifest.files[0].sha256);
    let response = reqwest::blocking::Client::new().head(url).bearer_auth(&acme).send().unwrap();
    assert_eq!(response.status().as_u16(), 200, "granted again at start from the models that name it");
    let loaded = load_any(&client(&server, Some(&acme), &dir.path().join("cache-2")), &"acme/old:1".parse().unwrap());
    assert_eq!(loaded.unwrap().run_json(serde_json::json!(2.0)).unwrap(), serde_json::json!(6.0));
}

/// Sets the modification time of everything under `dir` to two days ago.
fn age(dir: &Path) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
    for entry in walk(dir) {
        std::fs::File::open(&entry).unwrap().set_modified(then).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(walk(&entry.unwrap().path()));
        }
    }
    all
}

fn gc(data: &Path, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN).args(["gc", "--data"]).arg(data).args(extra).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn gc_removes_what_no_model_needs_and_spares_what_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = admin_token(&data, "acme"); // it deletes a model
    let server = start(&data, &[]);
    let registry = client(&server, Some(&acme), &dir.path().join("cache"));
    let kept = register_model::<Scaler>("keep").organization("acme").model(Scale(1.0)).register(&registry).unwrap();
    let gone = register_model::<Scaler>("gone").organization("acme").model(Scale(2.0)).register(&registry).unwrap();
    registry.delete_model(gone.id()).unwrap();
    let abandoned = registry.create_model("acme", "abandoned").unwrap();
    // The highest number of a repository is never given back (the next is taken above
    // it, so a given-back number is never reused): a newer one, abandoned too, stays.
    let newest = registry.create_model("acme", "abandoned").unwrap();
    let http = reqwest::blocking::Client::new();
    let blob = |sha: &str| format!("{}/v1/orgs/acme/blobs/{sha}", server.url);
    let put = |content: &'static str| {
        let sha = sha256_hex(content.as_bytes());
        assert_eq!(http.put(blob(&sha)).bearer_auth(&acme).body(content).send().unwrap().status().as_u16(), 201);
        sha
    };
    let head = |sha: &str| http.head(blob(sha)).bearer_auth(&acme).send().unwrap().status().as_u16();
    let orphan = put("uploaded, then never named");
    let reused = put("uploaded long ago, about to be named again");
    age(&data.join("blobs"));
    age(&data.join("orgs"));
    // After the ageing: a fresh upload (a registration in flight), and a client asking
    // for old content it will name instead of sending (its HEAD touches it).
    let fresh = put("uploaded just now");
    assert_eq!(head(&reused), 200);

    let dry = gc(&data, &["--grace-hours", "1", "--dry-run"]);
    assert_eq!(dry["collected"]["blobs"], 2, "{dry}");
    assert_eq!(dry["collected"]["abandoned"].as_array().unwrap().len(), 1, "{dry}");
    // On disk: a HEAD would touch it (a client about to reuse it) and so protect it.
    let stored = |sha: &str| data.join("blobs/sha256").join(&sha[..2]).join(sha).exists();
    assert!(stored(&orphan), "a dry run removes nothing");

    let done = gc(&data, &["--grace-hours", "1"]);
    assert_eq!(done["collected"]["blobs"], 2, "the orphan and the deleted model's file: {done}");
    assert!(!stored(&orphan) && !stored(&gone.manifest.files[0].sha256));
    assert_eq!(head(&orphan), 404);
    assert_eq!(head(&fresh), 200, "touched within the grace period");
    assert_eq!(head(&reused), 200, "touched by the HEAD of a registration in flight");
    assert_eq!(head(&kept.manifest.files[0].sha256), 200, "named by a ready model");
    assert_eq!(registry.status(&abandoned).unwrap(), None, "the abandoned number was given back");
    assert_eq!(registry.status(&newest).unwrap(), Some(ModelStatus::Uploading), "the highest number is kept");
    assert_eq!(registry.create_model("acme", "abandoned").unwrap().number, newest.number + 1);
    let again = client(&server, Some(&acme), &dir.path().join("cache-2"));
    let loaded = load_any(&again, &"acme/keep:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run_json(serde_json::json!(5.0)).unwrap(), serde_json::json!(5.0));
    assert_eq!(gc(&data, &["--grace-hours", "1"])["collected"]["blobs"], 0, "nothing left to collect");
}

/// Registers a model into `repository` with a `size`-byte artifact written at `artifact`,
/// which must fail; the error, as the user reads it.
fn registration_refused(registry: &HttpRegistry, repository: &str, artifact: &Path, size: usize) -> String {
    std::fs::write(artifact, vec![7u8; size]).unwrap();
    register_model::<Scaler>(repository)
        .model(Scale(1.0))
        .artifact(artifact.to_str().unwrap(), "big.bin")
        .register(registry)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_large_upload_over_the_servers_limit_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--no-auth", "--max-file-size", "10000000"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    let error = registration_refused(&registry, "limited", &dir.path().join("big.bin"), 12 << 20);
    assert!(error.contains("413") && error.contains("at most 10000000 bytes"), "{error}");
    assert_eq!(registry.latest("default", "limited").unwrap(), None, "nothing half-registered");
}

#[test]
fn aliases_from_the_command_line_over_http_record_the_token_and_guard_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // It deletes a model: the admin right.
    let admin = admin_token(&data, "default");
    let read = token(&data, "default", false);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&admin), &dir.path().join("cache"));
    for scale in [1.0, 2.0, 3.0] {
        register_model::<Scaler>("scaler").model(Scale(scale)).register(&registry).unwrap();
    }
    let url = server.url.as_str();
    let run = |token: &str, args: &[&str]| cli(url, Some(token), args);
    let (ok, out, err) = run(&admin, &["alias", "set", "scaler", "prod", "1", "--expect", "none"]);
    assert!(ok, "{err}");
    assert!(out.contains("prod") && out.contains("- -> scaler:1"), "{out}");
    let (ok, _, err) = run(&admin, &["alias", "set", "scaler", "prod", "2", "--expect", "3"]);
    assert!(!ok && err.contains("points at scaler:1, not scaler:3"), "{err}");
    let (ok, _, err) = run(&admin, &["alias", "set", "scaler", "prod", "2", "--expect", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&read, &["alias", "set", "scaler", "prod", "3"]);
    assert!(!ok && err.contains("may only read"), "{err}");
    let (ok, _, err) = run(&admin, &["alias", "set", "scaler", "latest", "3"]);
    assert!(!ok && err.contains("`latest` always means"), "{err}");

    // The alias resolves everywhere a model reference goes, over HTTP and on disk.
    let (ok, out, err) = run(&read, &["show", "scaler:prod"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["model"]["number"], 2);
    assert_eq!(registry.resolve(&"scaler:prod".parse().unwrap()).unwrap().number, 2);
    let (_, out, _) = run(&read, &["alias", "ls", "scaler"]);
    assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), ["prod             2        -"], "{out}");

    // A model an alias points at is not deleted; the refusal names the alias.
    let (ok, _, err) = run(&admin, &["delete", "scaler:2"]);
    assert!(!ok && err.contains("alias `prod`"), "{err}");
    assert_eq!(
        registry.status(&runner_core::ModelId::new("default", "scaler", 2).unwrap()).unwrap(),
        Some(ModelStatus::Ready)
    );

    let (ok, _, err) = run(&admin, &["alias", "rm", "scaler", "prod", "--expect", "1"]);
    assert!(!ok && err.contains("not scaler:1"), "{err}");
    let (ok, _, err) = run(&admin, &["alias", "rm", "scaler", "prod"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&read, &["show", "scaler:prod"]);
    assert!(!ok && err.contains("alias `prod` of `scaler` does not exist"), "{err}");

    // Every move, with the token that made it, oldest first; on the server and on disk.
    let token_id = std::fs::read_to_string(data.join("tokens.json")).unwrap();
    let tokens: Vec<serde_json::Value> = serde_json::from_str(&token_id).unwrap();
    let writer = tokens.iter().find(|t| t["right"] == "admin").unwrap()["id"].as_str().unwrap().to_string();
    let (_, out, _) = run(&read, &["alias", "history", "scaler", "prod"]);
    let moves: Vec<&str> = out.lines().collect();
    assert_eq!(moves.len(), 3, "{out}");
    for (line, change) in moves.iter().zip(["- -> scaler:1", "scaler:1 -> scaler:2", "scaler:2 -> -"]) {
        assert!(line.contains(change) && line.contains(&format!("by token {writer}")), "{line}");
    }
    drop(server);
    let (_, on_disk, _) = cli(data.to_str().unwrap(), None, &["alias", "history", "scaler"]);
    assert_eq!(on_disk, out);

    // The API documents the routes; a malformed query is a JSON 400.
    let server = start(&data, &["--no-auth"]);
    let http = reqwest::blocking::Client::new();
    let openapi: serde_json::Value = http.get(format!("{}/openapi.json", server.url)).send().unwrap().json().unwrap();
    for path in ["/v1/orgs/{org}/repos/{repo}/aliases/{alias}", "/v1/orgs/{org}/repos/{repo}/history"] {
        assert!(openapi["paths"][path].is_object(), "{path} undocumented");
    }
    let response =
        http.delete(format!("{}/v1/orgs/default/repos/scaler/aliases/prod?expect=two", server.url)).send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("model number"), "{body}");
}

/// A split set over the API shows on the repository page: the alias's badge names the
/// canary and its share, the models table marks the canary model, and the alias history
/// shows the split on each side of a move with the reason given (escaped); the canary's
/// own page names the alias. A reason over 2048 bytes is refused, and the OpenAPI document
/// names the fields the API answered.
#[test]
fn the_repository_page_shows_an_alias_split_and_why_it_moved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = token(&data, "default", true);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&write), &dir.path().join("cache"));
    for scale in [1.0, 2.0, 3.0] {
        register_model::<Scaler>("scaler").model(Scale(scale)).register(&registry).unwrap();
    }
    let http = reqwest::blocking::Client::new();
    let alias = format!("{}/v1/orgs/default/repos/scaler/aliases/prod", server.url);
    let set = |body: serde_json::Value| {
        let response = http.put(&alias).bearer_auth(&write).json(&body).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let (status, text) = set(serde_json::json!({ "number": 1 }));
    assert_eq!(status, 200, "{text}");
    let (status, text) = set(serde_json::json!({
        "number": 1, "canary": { "number": 2, "percent": 10 }, "reason": "step 1 of 3 <first users>"
    }));
    assert_eq!(status, 200, "{text}");
    let change: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(change["to_canary"], serde_json::json!({ "number": 2, "percent": 10 }), "{change}");
    let (status, text) = set(serde_json::json!({ "number": 1, "reason": "x".repeat(2049) }));
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("2048 bytes"), "{text}");

    let cookie = format!("runner_session={write}");
    let page = |path: &str| {
        let response = http.get(format!("{}{path}", server.url)).header("cookie", &cookie).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().unwrap()
    };
    let repository = page("/orgs/default/scaler");
    assert!(repository.contains(r#"<span class="badge alias">prod → 1 · canary 2 at 10%</span>"#), "{repository}");
    assert!(
        repository
            .contains(r#"<a href="/orgs/default/scaler/2">2</a></td><td><span class="badge ready">ready</span></td>"#),
        "{repository}"
    );
    assert!(repository.contains(r#"<span class="badge alias">prod (canary 10%)</span>"#), "{repository}");
    assert!(repository.contains("<th>why</th>"), "{repository}");
    assert!(repository.contains("<td>1 → 1 · canary 2 at 10%</td>"), "{repository}");
    assert!(repository.contains("<td>step 1 of 3 &lt;first users&gt;</td>"), "{repository}");
    // The first move said no reason: its row's last cell is empty.
    let created = repository.split("<td>created → 1</td>").nth(1).and_then(|row| row.split("</tr>").next());
    assert!(created.is_some_and(|row| row.ends_with("<td></td>")), "{repository}");

    // Moving on ends the split; the history shows the split it had.
    let (status, text) = set(serde_json::json!({ "number": 2, "reason": "rolled forward" }));
    assert_eq!(status, 200, "{text}");
    let repository = page("/orgs/default/scaler");
    assert!(repository.contains("<td>1 · canary 2 at 10% → 2</td>"), "{repository}");
    assert!(repository.contains("<td>rolled forward</td>"), "{repository}");
    assert!(repository.contains(r#"<span class="badge alias">prod → 2</span>"#), "{repository}");
    assert!(!repository.contains("(canary"), "{repository}");

    let (status, text) = set(serde_json::json!({ "number": 2, "canary": { "number": 3, "percent": 50 } }));
    assert_eq!(status, 200, "{text}");
    let canary = page("/orgs/default/scaler/3");
    assert!(canary.contains(r#"<span class="badge alias">prod (canary 50%)</span>"#), "{canary}");
    let target = page("/orgs/default/scaler/2");
    assert!(target.contains(r#"<span class="badge alias">prod</span>"#), "{target}");
    assert!(!page("/orgs/default/scaler/1").contains("badge alias"));

    // The OpenAPI document names every field the API answered and takes.
    let document: serde_json::Value = http.get(format!("{}/openapi.json", server.url)).send().unwrap().json().unwrap();
    let schemas = &document["components"]["schemas"];
    let documented = |schema: &str, object: &serde_json::Value| {
        for field in object.as_object().unwrap().keys() {
            assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field} undocumented");
        }
    };
    let listed: serde_json::Value = http
        .get(format!("{}/v1/orgs/default/repos/scaler/aliases", server.url))
        .bearer_auth(&write)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let prod = &listed["aliases"][0];
    documented("Alias", prod);
    documented("Canary", &prod["canary"]);
    documented("AliasMove", &change);
    let body = &document["paths"]["/v1/orgs/{org}/repos/{repo}/aliases/{alias}"]["put"]["requestBody"];
    let properties = &body["content"]["application/json"]["schema"]["properties"];
    assert_eq!(properties["reason"]["maxLength"], 2048, "{properties}");
    assert_eq!(properties["canary"]["oneOf"][0]["$ref"], "#/components/schemas/Canary", "{properties}");
    assert_eq!(schemas["Canary"]["properties"]["percent"]["maximum"], 100, "{schemas}");
}

/// schemathesis (PyPI; scripts/test.sh installs it, see scripts/tools.sh) against the
/// server's own OpenAPI document with an admin token and every check on: generated requests,
/// valid and not, get the statuses and bodies the document declares, and schema-valid
/// ones are not refused. Two passes: one as generated (most organizations are not the
/// token's, so most requests end at the organization check), and one aimed at the
/// token's organization (tests/schemathesis.toml, which also lists the two refusals no
/// schema can express), without the checks the override defeats: a mutated `org` is put
/// back to the token's (negative_data_rejection), and DELETE of a model still uploading
/// answers 404 (ensure_resource_availability; its number is given back through
/// `.../reservation`).
#[test]
fn schemathesis_finds_nothing_against_the_openapi_document() {
    let st = std::env::var("RUNNER_SCHEMATHESIS")
        .unwrap_or_else(|_| format!("{}/.cache/runner-tools/schemathesis-4.32.5/bin/st", env!("HOME")));
    assert!(
        Path::new(&st).exists(),
        "{st} is missing: run scripts/test.sh, or `. scripts/tools.sh; need_schemathesis`"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Admin: every route answers past the rights check, the token routes included.
    let token = admin_token(&data, "default");
    let server = start(&data, &[]);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let passes: [&[&str]; 2] =
        [&[], &["--config-file", config, "--exclude-checks", "negative_data_rejection,ensure_resource_availability"]];
    for pass in passes {
        let (config, exclude) = pass.split_at(pass.len().min(2));
        let output = Command::new(&st)
            .args(config)
            .args(["run", &format!("{}/openapi.json", server.url), "--checks", "all"])
            .args(exclude)
            .args(["--max-examples", "30", "--seed", "7", "--no-color"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "schemathesis {pass:?} found problems:\n{text}{stderr}");
        assert!(text.contains("passed"), "{text}");
    }
}

/// `--max-uploads-per-token`: while one token's upload is in flight, that token's next
/// one gets 429 with Retry-After, another token's goes through, and once the first ends
/// the token may upload again.
#[test]
fn uploads_in_flight_are_capped_per_token() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (busy, other) = (token(&data, "acme", true), token(&data, "acme", true));
    let server = start(&data, &["--max-uploads-per-token", "1"]);
    let slow_file = vec![7u8; 1000];
    let mut slow = std::net::TcpStream::connect(server.url.strip_prefix("http://").unwrap()).unwrap();
    write!(
        slow,
        "PUT /v1/orgs/acme/blobs/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {busy}\r\nContent-Length: 1000\r\n\r\n",
        sha256_hex(&slow_file)
    )
    .unwrap();
    slow.write_all(&slow_file[..10]).unwrap();

    let http = reqwest::blocking::Client::new();
    let put = |token: &str, content: &[u8]| {
        http.put(format!("{}/v1/orgs/acme/blobs/{}", server.url, sha256_hex(content)))
            .bearer_auth(token)
            .body(content.to_vec())
            .send()
            .unwrap()
    };
    // The slow upload's slot is taken once its head has been read.
    let started = std::time::Instant::now();
    let refused = loop {
        let response = put(&busy, b"second");
        if response.status().as_u16() == 429 || started.elapsed() > std::time::Duration::from_secs(5) {
            break response;
        }
        assert!(matches!(response.status().as_u16(), 200 | 201), "before the slow upload's slot is taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "too_many_uploads", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--max-uploads-per-token"), "{body}");
    assert_eq!(put(&other, b"another token's").status().as_u16(), 201, "the cap is per token");

    slow.write_all(&slow_file[10..]).unwrap();
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    assert_eq!(put(&busy, b"third").status().as_u16(), 201, "the slot is given back when the upload ends");
}

/// A tmpfs mounted for one test (which runs as root, as CI does), unmounted on drop: a
/// small disk that really fills up, rather than a writer that pretends to.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(at).output().unwrap();
        assert!(
            output.status.success(),
            "this test mounts a small tmpfs, which needs root (CI runs as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn bytes_under(dir: &Path) -> u64 {
    walk(dir).iter().filter(|p| p.is_file()).map(|p| p.metadata().unwrap().len()).sum()
}

/// A registry whose disk fills up during an upload answers 507 naming the problem and the
/// fix, keeps nothing of the upload, shows no model, and registers again once the space
/// is back (the failed upload's own space is given back at once).
#[test]
fn a_full_disk_fails_the_upload_clearly_keeps_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _disk = Tmpfs::mount(&data, "size=16m");
    let server = start(&data, &["--no-auth"]);
    let registry = client(&server, None, &dir.path().join("cache"));
    let error = registration_refused(&registry, "full", &dir.path().join("big.bin"), 24 << 20);
    assert!(error.contains("507") && error.contains("no space left to store the upload"), "{error}");
    assert!(error.contains("free space"), "{error}");
    assert_eq!(registry.latest("default", "full").unwrap(), None, "nothing half-registered");
    assert!(bytes_under(&data) < 1 << 20, "the failed upload left {} bytes", bytes_under(&data));

    let fits = dir.path().join("fits.bin");
    std::fs::write(&fits, vec![8u8; 6 << 20]).unwrap();
    let registered = register_model::<Scaler>("full")
        .model(Scale(2.0))
        .artifact(fits.to_str().unwrap(), "fits.bin")
        .register(&registry)
        .unwrap();
    let loaded = Loaded::<Scaler>::load(&registry, &registered.id().to_string().parse().unwrap()).unwrap();
    assert_eq!(loaded.run(2.0).unwrap(), 4.0);
    assert_eq!(std::fs::read(loaded.volume().join("fits.bin")).unwrap(), std::fs::read(&fits).unwrap());
}

/// A registry directory the server cannot write to stops it at start, naming the
/// directory and the reason, instead of failing each upload later.
#[test]
fn a_read_only_registry_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _disk = Tmpfs::mount(&data, "size=1m,ro");
    let output = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--no-auth", "--data"])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served from a read-only directory: {stderr}");
    assert!(stderr.contains(data.to_str().unwrap()) && stderr.contains("Read-only file system"), "{stderr}");
}

#[test]
fn model_listings_come_in_pages_newest_first_and_latest_reads_only_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = token(&data, "acme", true);
    let server = start(&data, &[]);
    let registry = client(&server, Some(&write), &dir.path().join("cache"));
    for scale in 0..3 {
        register_model::<Scaler>("paged").organization("acme").model(Scale(scale as f64)).register(&registry).unwrap();
    }
    // 22 numbers taken and never committed: the newest pages hold no ready model.
    let http = reqwest::blocking::Client::new();
    let models = format!("{}/v1/orgs/acme/repos/paged/models", server.url);
    for _ in 0..22 {
        assert_eq!(http.post(&models).bearer_auth(&write).send().unwrap().status().as_u16(), 201);
    }
    let page = |query: &str| -> (Vec<u64>, Option<u64>) {
        let response = http.get(format!("{models}{query}")).bearer_auth(&write).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let body: serde_json::Value = response.json().unwrap();
        let numbers = body["models"].as_array().unwrap().iter().map(|m| m["number"].as_u64().unwrap()).collect();
        (numbers, body["next"].as_u64())
    };
    assert_eq!(page("?limit=10"), ((16..=25).rev().collect(), Some(16)));
    assert_eq!(page("?limit=10&before=16"), ((6..=15).rev().collect(), Some(6)));
    assert_eq!(page("?limit=10&before=6"), ((1..=5).rev().collect(), None));
    assert_eq!(page("?limit=1000&before=2"), (vec![1], None));
    // Without a limit, every model, oldest first, as before pages existed.
    assert_eq!(page(""), ((1..=25).collect(), None));
    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?before=-1&limit=5"] {
        let response = http.get(format!("{models}{bad}")).bearer_auth(&write).send().unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let body: serde_json::Value = response.json().unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("limit") || bad.contains("before"), "{body}");
    }
    // The client: `latest` pages past the 22 uploading numbers to the newest ready one;
    // `models` gathers every page, oldest first.
    assert_eq!(registry.latest("acme", "paged").unwrap().unwrap().number, 3);
    let listed = registry.models("acme", "paged").unwrap();
    assert_eq!(listed.iter().map(|m| m.id.number).collect::<Vec<_>>(), (1..=25).collect::<Vec<_>>());
    assert_eq!(listed.iter().filter(|m| m.status == ModelStatus::Ready).count(), 3);
}

#[test]
fn content_posted_unnamed_is_stored_under_its_hash_and_granted_to_its_organization_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (acme, reader, other) = (token(&data, "acme", true), token(&data, "acme", false), token(&data, "other", true));
    let server = start(&data, &["--max-file-size", "1000000"]);
    let http = reqwest::blocking::Client::new();
    let content = b"weights posted without a name".to_vec();
    let sha256 = sha256_hex(&content);
    let post = |org: &str, token: &str, body: Vec<u8>| {
        http.post(format!("{}/v1/orgs/{org}/blobs", server.url)).bearer_auth(token).body(body).send().unwrap()
    };
    let head = |org: &str, token: &str| {
        http.head(format!("{}/v1/orgs/{org}/blobs/{sha256}", server.url)).bearer_auth(token).send().unwrap().status()
    };

    // Asked first: how large a content the server takes unnamed (here its file limit).
    let asked = http.head(format!("{}/v1/orgs/acme/blobs", server.url)).bearer_auth(&reader).send().unwrap();
    assert_eq!(asked.status(), 200);
    assert_eq!(asked.headers()["x-runner-max-unnamed-size"], "1000000");
    let created = post("acme", &acme, content.clone());
    assert_eq!(created.status(), 201);
    let stored: serde_json::Value = created.json().unwrap();
    assert_eq!(stored, serde_json::json!({ "sha256": sha256, "size": content.len() }));
    assert_eq!(head("acme", &acme), 200);
    let again = post("acme", &acme, content.clone());
    assert_eq!(again.status(), 200, "the organization had it");
    assert_eq!(again.json::<serde_json::Value>().unwrap(), stored);

    // Another organization is told nothing until it sends the content itself.
    assert_eq!(head("other", &other), 404);
    assert_eq!(post("other", &other, content.clone()).status(), 201, "new to this organization");
    assert_eq!(head("other", &other), 200);
    let prefixes = std::fs::read_dir(data.join("blobs/sha256")).unwrap().flatten();
    assert_eq!(prefixes.flat_map(|d| std::fs::read_dir(d.path()).unwrap()).count(), 1, "stored once");

    assert_eq!(post("acme", &reader, content.clone()).status(), 403, "a read token may not upload");
    let too_large = post("acme", &acme, vec![0u8; 1_000_001]);
    assert_eq!(too_large.status(), 413);
    assert!(too_large.text().unwrap().contains("at most 1000000 bytes"));
    assert_eq!(post("nobody", &acme, content).status(), 404, "another organization's token");
}

#[test]
fn the_sample_of_large_content_is_told_to_its_organization_only_and_goes_with_it() {
    use runner_core::registry::sample::sample_bytes;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (acme, reader, other) = (token(&data, "acme", true), token(&data, "acme", false), token(&data, "other", true));
    let server = start(&data, &[]);
    let http = reqwest::blocking::Client::new();
    let named: Vec<u8> = (0..9u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let unnamed: Vec<u8> = named.iter().map(|b| b ^ 0xa5).collect();
    let (named_sample, unnamed_sample) = (sample_bytes(&named).unwrap(), sample_bytes(&unnamed).unwrap());
    let known = |org: &str, token: &str, sample: &str| {
        let asked =
            http.head(format!("{}/v1/orgs/{org}/blobs?sample={sample}", server.url)).bearer_auth(token).send().unwrap();
        assert_eq!(asked.status(), 200);
        asked.headers()["x-runner-sample-known"].to_str().unwrap().to_string()
    };

    assert_eq!(known("acme", &reader, &named_sample), "false", "nothing sent yet");
    let put = http
        .put(format!("{}/v1/orgs/acme/blobs/{}", server.url, sha256_hex(&named)))
        .bearer_auth(&acme)
        .body(named.clone())
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);
    let posted =
        http.post(format!("{}/v1/orgs/acme/blobs", server.url)).bearer_auth(&acme).body(unnamed).send().unwrap();
    assert_eq!(posted.status(), 201);
    assert_eq!(known("acme", &reader, &named_sample), "true", "sent by name");
    assert_eq!(known("acme", &reader, &unnamed_sample), "true", "sent unnamed");
    assert_eq!(known("other", &other, &named_sample), "false", "nothing is told across organizations");

    // Not a sample: a clear 400.
    let bad = http.head(format!("{}/v1/orgs/acme/blobs?sample=ABC", server.url)).bearer_auth(&reader).send().unwrap();
    assert_eq!(bad.status(), 400);

    // No model names either content: once collected, its sample is forgotten too.
    let collected = gc(&data, &["--grace-hours", "0"]);
    assert_eq!(collected["collected"]["blobs"], 2, "{collected}");
    assert_eq!(collected["collected"]["samples"], 2, "{collected}");
    assert_eq!(known("acme", &reader, &named_sample), "false");
    assert!(std::fs::read_dir(data.join("samples/acme"))
        .unwrap()
        .flatten()
        .all(|d| { std::fs::read_dir(d.path()).unwrap().next().is_none() }));
}

fn verify(data: &Path) -> (bool, serde_json::Value) {
    let output = Command::new(BIN).args(["verify", "--deep", "--json", "--data"]).arg(data).output().unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("verify printed no report ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), report)
}

/// The directory backend against the same race as the shared one: a collector looping
/// with no grace, then with a short one, against registrations into the same directory
/// from 8 threads (each call opens its own lock files, so `flock` sees them as it sees
/// processes). With no grace a registration either succeeds (recovering by itself when
/// the collector takes its number or its contents) or fails with `Error::Gone`; with a
/// grace every one succeeds. Every one that succeeded loads with its exact bytes, and
/// `verify --deep` passes.
#[test]
fn directory_gc_looping_with_no_grace_loses_no_committed_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let registry = runner_core::LocalRegistry::open(&data).unwrap();
    let mut acknowledged = 0;
    for (grace, repository) in [(std::time::Duration::ZERO, "nograce"), (std::time::Duration::from_secs(1), "grace")] {
        let done = std::sync::atomic::AtomicBool::new(false);
        let (results, (runs, collected)) = std::thread::scope(|s| {
            let (data, done) = (&data, &done);
            let collector = s.spawn(move || {
                // In this process, to run as often as it can; `gc --data` runs the same code.
                let store = runner_core::registry::store::DirectoryStore::open(data).unwrap();
                let (mut runs, mut collected) = (0, runner_core::registry::store::Collected::default());
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let run = store.collect_garbage(grace, false).unwrap();
                    runs += 1;
                    collected.blobs += run.blobs;
                    collected.abandoned.extend(run.abandoned);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                (runs, collected)
            });
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (registry, work) = (&registry, dir.path().join(format!("{repository}{t}")));
                    s.spawn(move || {
                        std::fs::create_dir_all(&work).unwrap();
                        (0..25)
                            .map(|i| {
                                let scale = (t * 100 + i) as f64;
                                let artifact = work.join(format!("{i}.bin"));
                                std::fs::write(&artifact, format!("{repository}/{t}/{i} ").repeat(5000)).unwrap();
                                let registered = register_model::<Scaler>(repository)
                                    .organization("acme")
                                    .model(Scale(scale))
                                    .artifact(artifact.to_str().unwrap(), "extra.bin")
                                    .register(registry);
                                (scale, registered)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (results, collector.join().unwrap())
        });
        let attempted = results.len();
        let mut succeeded = 0;
        for (scale, result) in results {
            match result {
                Ok(registered) => {
                    succeeded += 1;
                    let model = format!("acme/{repository}:{}", registered.id().number).parse().unwrap();
                    let loaded = Loaded::<Scaler>::load(&registry, &model)
                        .unwrap_or_else(|e| panic!("{} is ready but cannot be loaded: {e}", registered.id()));
                    assert_eq!(loaded.run(1.0).unwrap(), scale);
                }
                Err(e) => assert!(
                    grace.is_zero() && matches!(e, runner_core::Error::Gone { .. }),
                    "a registration failed with a grace of {grace:?}: {e:?}"
                ),
            }
        }
        println!(
            "directory, gc looping with grace {grace:?} ({runs} runs, {} contents and {} numbers collected) against {attempted} registrations from 8 threads: {succeeded} acknowledged, 0 lost",
            collected.blobs,
            collected.abandoned.len()
        );
        match grace.is_zero() {
            true => assert!(!collected.abandoned.is_empty(), "the collector never overtook a registration"),
            false => assert_eq!(succeeded, attempted),
        }
        acknowledged += succeeded;
    }
    let (passed, report) = verify(&data);
    assert!(passed, "{report}");
    assert_eq!(report["models"], acknowledged, "{report}");
}

/// `verify` names a deleted, a truncated and a corrupted content by model and file, exits
/// 1, and passes once they are sent again.
#[test]
fn verify_names_each_missing_truncated_and_corrupt_file_of_a_directory_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let registry = runner_core::LocalRegistry::open(&data).unwrap();
    let models: Vec<_> = (0..4)
        .map(|i| {
            register_model::<Scaler>("scrub").organization("acme").model(Scale(i as f64)).register(&registry).unwrap()
        })
        .collect();
    let (passed, report) = verify(&data);
    assert!(passed, "{report}");
    assert_eq!((report["models"].as_u64(), report["files"].as_u64()), (Some(4), Some(4)), "{report}");
    let blob = |m: &runner_core::Registered| {
        let sha = &m.manifest.files[0].sha256;
        data.join("blobs/sha256").join(&sha[..2]).join(sha)
    };
    // Volumes are hard links to the blobs: break them first, so that the damage is the store's alone.
    std::fs::remove_dir_all(data.join("volumes")).ok();
    std::fs::remove_file(blob(&models[0])).unwrap();
    let content = std::fs::read(blob(&models[1])).unwrap();
    std::fs::write(blob(&models[1]), &content[..content.len() / 2]).unwrap();
    let mut content = std::fs::read(blob(&models[2])).unwrap();
    content[0] ^= 1;
    std::fs::write(blob(&models[2]), &content).unwrap();
    let (passed, report) = verify(&data);
    assert!(!passed, "{report}");
    assert_missing_truncated_corrupt(&report, &models);
    let output = Command::new(BIN).args(["verify", "--deep", "--data"]).arg(&data).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(&models[0].id().to_string()) && text.contains("3 problems"), "{text}");
}

/// A directory registration slower than the collector's grace keeps its number and what
/// it sent while it keeps the number alive (`keep_alive`, which `register` calls every
/// second), and commits; one that does not is refused with `Error::Gone` naming its
/// number, never made ready without its contents.
#[test]
fn a_directory_registration_kept_alive_outlives_a_short_grace() {
    use runner_core::FileOrigin;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let registry = runner_core::LocalRegistry::open(&data).unwrap();
    let store = runner_core::registry::store::DirectoryStore::open(&data).unwrap();
    let grace = std::time::Duration::from_secs(1);
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("the content of {name}")).unwrap();
        path
    };
    let kept = registry.create_model("acme", "slow").unwrap();
    let quiet = registry.create_model("acme", "slow").unwrap();
    registry.create_model("acme", "slow").unwrap(); // the highest, never given back
    let mut staging = registry.stage(&kept).unwrap();
    let first = staging.put_file("a.bin", &file("a.bin"), FileOrigin::Artifact).unwrap();
    let mut quiet_staging = registry.stage(&quiet).unwrap();
    let lone = quiet_staging.put_file("c.bin", &file("c.bin"), FileOrigin::Artifact).unwrap();
    let mut collected = runner_core::registry::store::Collected::default();
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(400));
        registry.keep_alive(&kept).unwrap();
        let run = store.collect_garbage(grace, false).unwrap();
        collected.blobs += run.blobs;
        collected.abandoned.extend(run.abandoned);
    }
    assert_eq!(collected.abandoned, vec![quiet.to_string()], "{collected:?}");
    let second = staging.put_file("b.bin", &file("b.bin"), FileOrigin::Artifact).unwrap();
    staging.commit(&manifest(&kept, vec![first.clone(), second])).unwrap();
    let ready = registry.manifest(&kept).unwrap();
    let volume = registry.fetch(&ready).unwrap();
    assert_eq!(std::fs::read_to_string(volume.join("a.bin")).unwrap(), "the content of a.bin");
    match quiet_staging.commit(&manifest(&quiet, vec![lone])) {
        Err(runner_core::Error::Gone { missing, .. }) => assert_eq!(missing.number, Some(quiet.number)),
        other => panic!("a commit of a number given back: {other:?}"),
    }
}
