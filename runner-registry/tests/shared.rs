//! Replicas of `runner-registry` on one real PostgreSQL and one real Garage (an S3 server),
//! used through `HttpRegistry` exactly as `register` and `serve` use them.

#![allow(missing_docs)]

mod cluster;
mod common;
mod services;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cluster::{blob_key, client, runtime, Cluster};
use common::{assert_missing_truncated_corrupt, manifest, sha256_hex, Scale, Scaler, BIN};
use object_store::ObjectStore;
use runner_core::{register_model, Error, HttpRegistry, Loaded, ModelStatus, Registry};

#[test]
fn the_http_client_conforms_against_a_replica_on_postgres_and_garage() {
    use runner_core::registry::conformance::{self, Internals};
    let cluster = Cluster::start();
    // The suite deletes: the admin right.
    let admin = cluster.token_with(&["--org", "acme", "--admin"]);
    let replica = cluster.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let registry = client(&replica, &admin, dir.path());
    let bucket = cluster.bucket();
    let rt = runtime();
    conformance::all(
        &registry,
        "acme",
        &Internals {
            stored_contents: &|| {
                rt.block_on(async {
                    use futures::TryStreamExt;
                    let listed: Vec<_> = bucket.list(Some(&"blobs".into())).try_collect().await.unwrap();
                    listed.len()
                })
            },
            // The store's copy: the client never downloaded it, so it must notice.
            corrupt: &|file| {
                rt.block_on(async {
                    let key = blob_key(&file.sha256);
                    let mut bytes = bucket.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 1;
                    bucket.put(&key, bytes.into()).await.unwrap();
                })
            },
        },
    );
}

#[test]
fn two_replicas_give_64_concurrent_registrations_distinct_consecutive_numbers() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = [cluster.replica(&[]), cluster.replica(&[])];
    let dir = tempfile::tempdir().unwrap();
    let mut numbers: Vec<(u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let (replica, token, cache) = (&replicas[i % 2], &token, dir.path().join(format!("cache-{i}")));
                s.spawn(move || {
                    let registry = client(replica, token, &cache);
                    let model = register_model::<Scaler>("race")
                        .organization("acme")
                        .model(Scale(i as f64))
                        .register(&registry)
                        .unwrap_or_else(|e| panic!("registration {i} through replica {}: {e}", i % 2));
                    (model.id().number, i as f64)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    numbers.sort_by_key(|(n, _)| *n);
    assert_eq!(numbers.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (1..=64).collect::<Vec<_>>());
    // Every model loads through either replica, with the weights it was registered with.
    for (replica, fresh) in replicas.iter().zip(["a", "b"]) {
        let registry = client(replica, &token, &dir.path().join(fresh));
        for (number, scale) in &numbers {
            let loaded = Loaded::<Scaler>::load(&registry, &format!("acme/race:{number}").parse().unwrap()).unwrap();
            assert_eq!(loaded.run(2.0).unwrap(), 2.0 * scale, "model {number} through {}", replica.url);
        }
    }
    assert_eq!(cluster.count("SELECT count(*) FROM models WHERE state = 'ready'"), 64);
}

#[test]
fn one_number_committed_through_two_replicas_has_one_winner() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let (a, b) = (cluster.replica(&[]), cluster.replica(&[]));
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb) = (client(&a, &token, &dir.path().join("a")), client(&b, &token, &dir.path().join("b")));
    for round in 0..8 {
        let id = ra.create_model("acme", "race").unwrap();
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<runner_core::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = [(&ra, "a"), (&rb, "b")]
                .into_iter()
                .map(|(registry, name)| {
                    let (id, barrier, dir) = (&id, &barrier, dir.path());
                    s.spawn(move || {
                        let file = dir.join(format!("{name}-{round}.bin"));
                        std::fs::write(&file, format!("{name} {round}")).unwrap();
                        let mut staging = registry.stage(id).unwrap();
                        let entry = staging.put_file("model.bin", &file, runner_core::FileOrigin::Saved).unwrap();
                        let manifest = manifest(id, vec![entry]);
                        barrier.wait();
                        staging.commit(&manifest)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results.iter().any(|r| matches!(r, Err(Error::Conflict { .. }))),
            "round {round}: the loser is told: {results:?}"
        );
        assert_eq!(rb.status(&id).unwrap(), Some(ModelStatus::Ready));
    }
}

/// A one-file manifest for `id`.
#[test]
fn a_replica_killed_mid_upload_leaves_nothing_visible_and_the_other_keeps_serving() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let (a, b) = (cluster.replica(&[]), cluster.replica(&[]));
    let dir = tempfile::tempdir().unwrap();
    let rb = client(&b, &token, &dir.path().join("b"));
    register_model::<Scaler>("crash").organization("acme").model(Scale(1.0)).register(&rb).unwrap();
    let taken = rb.create_model("acme", "crash").unwrap();
    // 64 MiB declared, 24 MiB sent: parts are in the store when replica a dies.
    let content = vec![7u8; 64 << 20];
    let sha256 = sha256_hex(&content);
    let address = a.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    use std::io::Write;
    write!(
        stream,
        "PUT /v1/orgs/acme/blobs/{sha256} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        content.len()
    )
    .unwrap();
    stream.write_all(&content[..24 << 20]).unwrap();
    let started = std::time::Instant::now();
    while cluster.count("SELECT count(*) FROM uploads") == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the multipart upload never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(a); // SIGKILL, mid-upload

    assert_eq!(rb.status(&taken).unwrap(), Some(ModelStatus::Uploading));
    assert_eq!(rb.latest("acme", "crash").unwrap().unwrap().number, 1, "nothing half-visible");
    let http = reqwest::blocking::Client::new();
    let head = http.head(format!("{}/v1/orgs/acme/blobs/{sha256}", b.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(head.status().as_u16(), 404, "the cut-off content is not stored");
    let listed = runtime().block_on(async { cluster.bucket().head(&blob_key(&sha256)).await });
    assert!(listed.is_err(), "no object was completed: {listed:?}");
    // The other replica keeps registering and serving.
    let next = register_model::<Scaler>("crash").organization("acme").model(Scale(2.0)).register(&rb).unwrap();
    assert_eq!(next.id().number, 3);
    let loaded = Loaded::<Scaler>::load(&rb, &"acme/crash:3".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(1.0).unwrap(), 2.0);
    // The collector aborts the dead replica's multipart upload and gives back the number.
    let collected = cluster.gc(0.0);
    assert_eq!(collected["collected"]["uploads"], 1, "{collected}");
    assert_eq!(collected["collected"]["abandoned"], serde_json::json!(["acme/crash:2"]), "{collected}");
    assert_eq!(cluster.count("SELECT count(*) FROM uploads"), 0);
    assert_eq!(rb.status(&taken).unwrap(), None);
}

#[test]
fn gc_concurrent_with_registrations_on_both_replicas_loses_nothing() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = [cluster.replica(&[]), cluster.replica(&[])];
    let http = reqwest::blocking::Client::new();
    // Contents sent but named by no model yet (a registration that will reuse them, or
    // one abandoned), and one that nothing will ever name.
    let contents: Vec<Vec<u8>> = (0..24).map(|i| format!("weights {i}").repeat(1000).into_bytes()).collect();
    let orphan = b"never named".to_vec();
    for content in contents.iter().chain([&orphan]) {
        let url = format!("{}/v1/orgs/acme/blobs/{}", replicas[0].url, sha256_hex(content));
        let sent = http.put(url).bearer_auth(&token).body(content.clone()).send().unwrap();
        assert_eq!(sent.status().as_u16(), 201);
    }
    // Older than the collector's grace of 1.8 seconds.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let dir = tempfile::tempdir().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (registered, collections) = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut runs = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                runs.push(cluster.gc(0.0005));
            }
            runs
        });
        let handles: Vec<_> = contents
            .iter()
            .enumerate()
            .map(|(i, content)| {
                let (replica, token, cache) = (&replicas[i % 2], &token, dir.path().join(format!("c{i}")));
                s.spawn(move || {
                    // Spread out over the collector's runs.
                    std::thread::sleep(std::time::Duration::from_millis(40 * i as u64));
                    let registry = client(replica, token, &cache);
                    let file = cache.join("weights.bin");
                    std::fs::create_dir_all(&cache).unwrap();
                    std::fs::write(&file, content).unwrap();
                    let id = registry.create_model("acme", "gc").unwrap();
                    let mut staging = registry.stage(&id).unwrap();
                    let entry = staging.put_file("weights.bin", &file, runner_core::FileOrigin::Saved).unwrap();
                    staging.commit(&manifest(&id, vec![entry])).map(|()| id)
                })
            })
            .collect();
        let registered: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (registered, collector.join().unwrap())
    });
    assert!(!collections.is_empty());
    let removed: u64 = collections.iter().map(|c| c["collected"]["blobs"].as_u64().unwrap()).sum();
    assert!(removed >= 1, "the collector ran and removed the orphan: {collections:?}");
    let reader = client(&replicas[1], &token, &dir.path().join("verify"));
    for (result, content) in registered.iter().zip(&contents) {
        let id = result.as_ref().unwrap_or_else(|e| panic!("a registration lost its content to the collector: {e}"));
        let manifest = reader.manifest(id).unwrap();
        let volume = reader.fetch(&manifest).unwrap();
        assert_eq!(&std::fs::read(volume.join("weights.bin")).unwrap(), content, "{id}");
    }
    let head = http
        .head(format!("{}/v1/orgs/acme/blobs/{}", replicas[1].url, sha256_hex(&orphan)))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(head.status().as_u16(), 404, "the content no model names was collected");
}

#[test]
fn the_database_and_the_store_restart_under_idle_replicas() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let registry = client(&replica, &token, &dir.path().join("cache"));
    let model = register_model::<Scaler>("restart").organization("acme").model(Scale(3.0)).register(&registry).unwrap();
    let http = reqwest::blocking::Client::new();
    let models = format!("{}/v1/orgs/acme/repos/restart/models", replica.url);

    cluster.postgres.stop();
    let down = http.get(&models).bearer_auth(&token).send().unwrap();
    assert_eq!(down.status().as_u16(), 503, "no database: a clear 503");
    assert!(down.headers().contains_key("retry-after"));
    let body: serde_json::Value = down.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("database is unavailable") && message.contains("retry"), "{message}");
    cluster.postgres.start_again();
    let up = http.get(&models).bearer_auth(&token).send().unwrap();
    assert_eq!(up.status().as_u16(), 200, "the replica reconnected: {}", up.text().unwrap());

    let file = &model.manifest.files[0];
    let blob = format!("{}/v1/orgs/acme/blobs/{}", replica.url, file.sha256);
    cluster.garage.stop();
    let down = http.get(&blob).bearer_auth(&token).send().unwrap();
    assert_eq!(down.status().as_u16(), 503, "no store: a clear 503");
    let body: serde_json::Value = down.json().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("object store is unavailable"), "{body}");
    // A registration while the store is down changes nothing.
    let failed = register_model::<Scaler>("restart").organization("acme").model(Scale(4.0)).register(&registry);
    assert!(failed.is_err());
    cluster.garage.start_again();
    let up = http.get(&blob).bearer_auth(&token).send().unwrap();
    assert_eq!(up.status().as_u16(), 200);
    assert_eq!(sha256_hex(&up.bytes().unwrap()), file.sha256);
    let listed = registry.models("acme", "restart").unwrap();
    assert_eq!(
        registry.latest("acme", "restart").unwrap().map(|id| id.number),
        Some(1),
        "the failed registration left no model: {listed:?}"
    );
    let next = register_model::<Scaler>("restart").organization("acme").model(Scale(5.0)).register(&registry).unwrap();
    let loaded = Loaded::<Scaler>::load(&registry, &next.id().to_string().parse().unwrap()).unwrap();
    assert_eq!(loaded.run(1.0).unwrap(), 5.0);
}

#[test]
fn downloads_answer_byte_ranges_from_the_store_and_small_contents_from_memory() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let http = reqwest::blocking::Client::new();
    // Larger than one part: sent as a multipart upload.
    let content: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let sha256 = sha256_hex(&content);
    let url = format!("{}/v1/orgs/acme/blobs/{sha256}", replica.url);
    let wrong = http.put(format!("{}/v1/orgs/acme/blobs/{}", replica.url, "0".repeat(64)));
    let refused = wrong.bearer_auth(&token).body(content.clone()).send().unwrap();
    assert_eq!(refused.status().as_u16(), 422, "a mismatched sha256 is refused");
    assert_eq!(cluster.count("SELECT count(*) FROM uploads"), 0, "and its multipart upload aborted");
    assert_eq!(http.put(&url).bearer_auth(&token).body(content.clone()).send().unwrap().status().as_u16(), 201);
    let whole = http.get(&url).bearer_auth(&token).send().unwrap();
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().unwrap().as_ref(), content.as_slice());
    let part = http.get(&url).bearer_auth(&token).header("range", "bytes=1000-1999").send().unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 1000-1999/{}", content.len()));
    assert_eq!(part.bytes().unwrap().as_ref(), &content[1000..2000]);
    let tail = http.get(&url).bearer_auth(&token).header("range", "bytes=-10").send().unwrap();
    assert_eq!(tail.bytes().unwrap().as_ref(), &content[content.len() - 10..]);
    let outside = http.get(&url).bearer_auth(&token).header("range", format!("bytes={}-", content.len())).send();
    assert_eq!(outside.unwrap().status().as_u16(), 416);
    // Another organization neither reads it nor learns that it exists.
    let other = cluster.token("rival");
    let theirs = format!("{}/v1/orgs/rival/blobs/{sha256}", replica.url);
    assert_eq!(http.head(&theirs).bearer_auth(&other).send().unwrap().status().as_u16(), 404);
    assert_eq!(http.get(&theirs).bearer_auth(&other).send().unwrap().status().as_u16(), 404);

    // Small content is read from the store once, checked, then answered from memory;
    // damaged content is not kept (and the client's own check refuses it).
    let bucket = cluster.bucket();
    let small = b"a model's small config".to_vec();
    let small_sha = sha256_hex(&small);
    let small_url = format!("{}/v1/orgs/acme/blobs/{small_sha}", replica.url);
    assert_eq!(http.put(&small_url).bearer_auth(&token).body(small.clone()).send().unwrap().status().as_u16(), 201);
    let put_in_store = |bytes: &[u8]| {
        runtime().block_on(async { bucket.put(&blob_key(&small_sha), bytes.to_vec().into()).await.unwrap() });
    };
    put_in_store(b"a model's small confiG");
    let damaged = http.get(&small_url).bearer_auth(&token).send().unwrap().bytes().unwrap();
    assert_eq!(damaged.as_ref(), b"a model's small confiG");
    put_in_store(&small);
    assert_eq!(http.get(&small_url).bearer_auth(&token).send().unwrap().bytes().unwrap().as_ref(), small.as_slice());
    runtime().block_on(async { bucket.delete(&blob_key(&small_sha)).await.unwrap() });
    let remembered = http.get(&small_url).bearer_auth(&token).send().unwrap();
    assert_eq!(remembered.bytes().unwrap().as_ref(), small.as_slice(), "answered from memory");
    let part = http.get(&small_url).bearer_auth(&token).header("range", "bytes=2-6").send().unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &small[2..7]);
    // Memory does not widen who may read it.
    let theirs = format!("{}/v1/orgs/rival/blobs/{small_sha}", replica.url);
    assert_eq!(http.get(&theirs).bearer_auth(&other).send().unwrap().status().as_u16(), 404);
}

#[test]
fn a_directory_registry_imports_whole_checked_and_idempotently() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = runner_core::LocalRegistry::open(&data).unwrap();
    for scale in [1.0, 2.0, 3.0] {
        register_model::<Scaler>("iris").organization("acme").model(Scale(scale)).register(&local).unwrap();
    }
    register_model::<Scaler>("other").organization("rival").model(Scale(9.0)).register(&local).unwrap();
    local.create_model("acme", "iris").unwrap(); // number 4, still uploading: not imported
    local.delete_model(&runner_core::ModelId::new("acme", "iris", 2).unwrap()).unwrap();
    let any = runner_core::registry::AliasOptions::default();
    local.set_alias("acme", "iris", "prod", 1, &any).unwrap();
    local.set_alias("acme", "iris", "prod", 3, &any).unwrap();
    let output = Command::new(BIN).args(["token", "create", "--org", "acme", "--data"]).arg(&data).output().unwrap();
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let import = || {
        let output = cluster.command(&["import", "--from"]).arg(&data).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };

    let (ok, first) = import();
    assert!(ok, "{first}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["models"], serde_json::json!(["acme/iris:1", "acme/iris:3", "rival/other:1"]), "{first}");
    assert_eq!(first["tokens"], 1);
    assert_eq!(first["aliases"], 1);
    let replica = cluster.replica(&[]);
    // The directory's own token reads the imported models, under their numbers.
    let registry = client(&replica, &token, &dir.path().join("cache"));
    assert_eq!(registry.latest("acme", "iris").unwrap().unwrap().number, 3);
    assert_eq!(registry.status(&runner_core::ModelId::new("acme", "iris", 2).unwrap()).unwrap(), None);
    let model = Loaded::<Scaler>::load(&registry, &"acme/iris:3".parse().unwrap()).unwrap();
    assert_eq!(model.run(1.0).unwrap(), 3.0);
    // The alias comes along, with its history as it was.
    assert_eq!(registry.resolve(&"acme/iris:prod".parse().unwrap()).unwrap().number, 3);
    assert_eq!(
        registry.alias_history("acme", "iris", None).unwrap(),
        local.alias_history("acme", "iris", None).unwrap()
    );
    // New registrations continue after the imported numbers.
    let write = cluster.token("acme");
    let writer = client(&replica, &write, &dir.path().join("cache-w"));
    let next = register_model::<Scaler>("iris").organization("acme").model(Scale(5.0)).register(&writer).unwrap();
    assert_eq!(next.id().number, 4);

    let (ok, again) = import();
    assert!(ok, "{again}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!((again["models"].as_array().unwrap().len(), again["blobs"].as_u64()), (0, Some(0)), "{again}");
    assert_eq!(again["already"], 3, "{again}");
    assert_eq!(again["tokens"], 0, "{again}");
    assert_eq!(again["aliases"], 0, "{again}");

    // Damaged content is refused by name, and its model is not imported.
    let damaged = register_model::<Scaler>("broken").organization("acme").model(Scale(7.0)).register(&local).unwrap();
    let file = &damaged.manifest.files[0];
    let blob = data.join("blobs/sha256").join(&file.sha256[..2]).join(&file.sha256);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let (ok, refused) = import();
    assert!(!ok);
    assert!(refused.contains("is damaged") && refused.contains("acme/broken:1"), "{refused}");
    assert!(registry.models("acme", "broken").map(|m| m.is_empty()).unwrap_or(true), "no half model");
}

#[test]
fn presigned_downloads_send_clients_straight_to_the_store() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&["--presign-seconds", "60"]);
    let dir = tempfile::tempdir().unwrap();
    let registry = client(&replica, &token, &dir.path().join("cache"));
    let model = register_model::<Scaler>("direct").organization("acme").model(Scale(4.0)).register(&registry).unwrap();
    let file = &model.manifest.files[0];
    let no_redirects =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let blob = format!("{}/v1/orgs/acme/blobs/{}", replica.url, file.sha256);
    let answer = no_redirects.get(&blob).bearer_auth(&token).send().unwrap();
    assert_eq!(answer.status().as_u16(), 307);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&cluster.garage.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // The signed URL alone reads the content, with ranges, and nothing else.
    let direct = reqwest::blocking::get(&location).unwrap();
    assert_eq!(sha256_hex(&direct.bytes().unwrap()), file.sha256);
    let part = reqwest::blocking::Client::new().get(&location).header("range", "bytes=0-3").send().unwrap();
    assert_eq!(part.status().as_u16(), 206);
    // Another organization gets no URL.
    let rival = cluster.token("rival");
    let theirs = format!("{}/v1/orgs/rival/blobs/{}", replica.url, file.sha256);
    assert_eq!(no_redirects.get(&theirs).bearer_auth(&rival).send().unwrap().status().as_u16(), 404);
    // The client follows the redirect (and leaves its token behind): load works as ever.
    let fresh = client(&replica, &token, &dir.path().join("fresh"));
    let loaded = Loaded::<Scaler>::load(&fresh, &"acme/direct:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(2.0).unwrap(), 8.0);
}

#[test]
fn serve_follows_an_alias_moved_through_another_replica() {
    let cluster = Cluster::start();
    let (first, second) = (cluster.replica(&[]), cluster.replica(&[]));
    let token = cluster.token("acme");
    let dir = tempfile::tempdir().unwrap();
    let writer = client(&first, &token, &dir.path().join("cache-w"));
    for scale in [10.0, 20.0] {
        register_model::<Scaler>("scaler").organization("acme").model(Scale(scale)).register(&writer).unwrap();
    }
    let any = runner_core::registry::AliasOptions::default();
    writer.set_alias("acme", "scaler", "prod", 1, &any).unwrap();
    // The server reads the registry through the other replica.
    let reader = client(&second, &token, &dir.path().join("cache-r"));
    runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = runner_core::serve::ServeOptions {
            follow_interval: std::time::Duration::from_millis(50),
            ..Default::default()
        };
        let serving = tokio::spawn(runner_core::serve::serve_on(
            listener,
            Arc::new(reader),
            vec!["acme/scaler:prod".parse().unwrap()],
            options,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let answers = tokio::task::spawn_blocking(move || {
            let http = reqwest::blocking::Client::new();
            let ask = || {
                let response = http.post(format!("{url}/predict")).body("4.5").send().ok()?;
                let model = response.headers().get(runner_core::serve::MODEL_HEADER)?.to_str().ok()?.to_string();
                Some((response.text().ok()?, model))
            };
            let started = std::time::Instant::now();
            let mut seen = Vec::new();
            loop {
                // Each distinct answer once, in order (the move is marked between them).
                match ask() {
                    Some(answer) if !seen.contains(&answer) => seen.push(answer),
                    _ => {}
                }
                if seen.len() == 1 && seen[0].0 == "45.0" {
                    writer.set_alias("acme", "scaler", "prod", 2, &any).unwrap();
                    seen.push(("moved".into(), String::new()));
                }
                if seen.last().is_some_and(|(answer, _)| answer == "90.0") {
                    return seen;
                }
                assert!(started.elapsed() < std::time::Duration::from_secs(30), "never followed: {seen:?}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
        .await
        .unwrap();
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
        let expected = [("45.0", "acme/scaler:1"), ("moved", ""), ("90.0", "acme/scaler:2")];
        let answers: Vec<(&str, &str)> = answers.iter().map(|(a, m)| (a.as_str(), m.as_str())).collect();
        assert_eq!(answers, expected);
    });
}

#[test]
fn the_browser_pages_read_and_delete_through_the_shared_backend() {
    let cluster = Cluster::start();
    // The pages delete: the admin right.
    let token = cluster.token_with(&["--org", "acme", "--admin"]);
    let replica = cluster.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let writer = client(&replica, &token, &dir.path().join("cache"));
    for scale in [1.5, 2.5, 3.5] {
        register_model::<Scaler>("scaler").organization("acme").model(Scale(scale)).register(&writer).unwrap();
    }
    let second = writer.manifest(&runner_core::ModelId::new("acme", "scaler", 2).unwrap()).unwrap();
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("runner_session={token}");
    let page = |path: &str| {
        let response = http.get(format!("{}{path}", replica.url)).header("cookie", &cookie).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().unwrap()
    };
    let repositories = page("/orgs/acme");
    assert!(
        repositories.contains(r#"<a href="/orgs/acme/scaler">scaler</a></td><td class="num">3</td>"#),
        "{repositories}"
    );
    let models = page("/orgs/acme/scaler");
    assert!(models.contains("3 models"), "{models}");
    let shown = page("/orgs/acme/scaler/2");
    let file = &second.files[0];
    assert!(shown.contains(&file.sha256), "{shown}");
    assert!(shown.contains("Changes since"), "{shown}");
    let download = http
        .get(format!("{}/orgs/acme/scaler/2/files/{}", replica.url, file.path))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert!(download.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(sha256_hex(&download.bytes().unwrap()), file.sha256);
    let csrf = runner_core::serve::page::csrf_token(&token);
    let deleted = http
        .post(format!("{}/orgs/acme/scaler/2/delete", replica.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 303);
    assert_eq!(deleted.headers()["location"], "/orgs/acme/scaler?deleted=2");
    assert!(writer.status(&runner_core::ModelId::new("acme", "scaler", 2).unwrap()).unwrap().is_none());
    assert!(page("/orgs/acme/scaler").contains("2 models"));
}

#[test]
fn organizations_are_rows_and_their_migration_brings_existing_ones_along() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let writer = client(&replica, &token, &dir.path().join("cache"));
    register_model::<Scaler>("scaler").organization("acme").model(Scale(2.0)).register(&writer).unwrap();
    cluster.token("beta");
    assert_eq!(cluster.organizations(), ["acme", "beta"]);
    // A repository must belong to an organization that exists.
    let orphan = runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&cluster.postgres.url).await.unwrap();
        sqlx::query("INSERT INTO repositories (organization, name) VALUES ('nobody', 'r')").execute(&pool).await
    });
    assert!(orphan.unwrap_err().to_string().contains("foreign key"), "an organization's rows need the organization");
    // A database from before organizations were rows: the migration, run again by the
    // next replica to start, brings every organization along, and all still works.
    drop(replica);
    cluster.execute("DROP TABLE organizations CASCADE; DELETE FROM _sqlx_migrations WHERE version = 3;");
    let replica = cluster.replica(&[]);
    assert_eq!(cluster.organizations(), ["acme", "beta"]);
    let reader = client(&replica, &token, &dir.path().join("cache-2"));
    let loaded = Loaded::<Scaler>::load(&reader, &"acme/scaler:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(1.5).unwrap(), 3.0);
    register_model::<Scaler>("other").organization("acme").model(Scale(3.0)).register(&reader).unwrap();
}

#[test]
fn an_upload_its_client_cuts_off_is_aborted_at_once_not_left_for_gc() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let url = format!("{}/v1/orgs/acme/blobs/{}", replica.url, "ab".repeat(32));
    let rows = || cluster.count("SELECT count(*) FROM uploads");
    let wait_for = |want: i64, what: &str| {
        let started = std::time::Instant::now();
        while rows() != want {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "{what}: {} rows in uploads", rows());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // An HTTP/2 client sends three parts' worth of a large file, then gives up, resetting
    // its stream: the server's handler sees the body fail, or hyper drops it mid-upload
    // (whichever comes first); either way the multipart upload is aborted at once.
    let (chunks, received) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let body = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    });
    let http = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let request = http.put(&url).bearer_auth(&token).body(reqwest::Body::wrap_stream(body)).send();
    let request = rt.spawn(request);
    rt.block_on(async {
        for _ in 0..24 {
            chunks.send(Ok(bytes::Bytes::from(vec![7u8; 1 << 20]))).await.unwrap();
        }
    });
    wait_for(1, "the multipart upload never started");
    // The client's body fails: hyper resets the HTTP/2 stream (RST_STREAM).
    rt.block_on(chunks.send(Err(std::io::Error::other("the client gave up")))).unwrap();
    wait_for(0, "the cut-off upload was not aborted");
    assert!(rt.block_on(request).unwrap().is_err(), "the client saw its request fail");
    // Nothing of it is visible, and the replica still takes uploads.
    let content = vec![1u8; 1000];
    let put = reqwest::blocking::Client::new()
        .put(format!("{}/v1/orgs/acme/blobs/{}", replica.url, sha256_hex(&content)))
        .bearer_auth(&token)
        .body(content)
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(cluster.count("SELECT count(*) FROM blobs WHERE sha256 = repeat('ab', 32)"), 0);
}

/// A streamed `PUT` of a blob whose body the test sends chunk by chunk.
struct StreamedPut {
    chunks: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    answer: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl StreamedPut {
    fn start(rt: &tokio::runtime::Runtime, url: &str, token: &str) -> StreamedPut {
        let (chunks, received) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(2);
        let body = futures::stream::unfold(received, |mut received| async move {
            received.recv().await.map(|chunk| (chunk, received))
        });
        let request = reqwest::Client::new().put(url).bearer_auth(token).body(reqwest::Body::wrap_stream(body)).send();
        StreamedPut { chunks, answer: rt.spawn(request) }
    }

    fn send(&self, rt: &tokio::runtime::Runtime, bytes: &[u8]) {
        for chunk in bytes.chunks(1 << 20) {
            rt.block_on(self.chunks.send(Ok(bytes::Bytes::copy_from_slice(chunk)))).unwrap();
        }
    }

    /// Ends the body; the server's status and error message.
    fn finish(self, rt: &tokio::runtime::Runtime) -> (u16, String) {
        drop(self.chunks);
        let response = rt.block_on(self.answer).unwrap().unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = rt.block_on(response.json()).unwrap_or_default();
        (status, body["error"]["message"].as_str().unwrap_or_default().to_string())
    }
}

#[test]
fn uploads_in_flight_when_the_store_or_the_database_goes_down_get_a_clear_503_and_leave_nothing() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::blocking::Client::new();
    let visible = |sha256: &str| {
        let url = format!("{}/v1/orgs/acme/blobs/{sha256}", replica.url);
        http.head(url).bearer_auth(&token).send().unwrap().status().as_u16()
    };

    // The store goes down while a large upload's parts are going out.
    let large: Vec<u8> = (0..(40u32 << 20)).map(|i| (i % 253) as u8).collect();
    let sha256 = sha256_hex(&large);
    let put = StreamedPut::start(&rt, &format!("{}/v1/orgs/acme/blobs/{sha256}", replica.url), &token);
    put.send(&rt, &large[..16 << 20]);
    cluster.garage.stop();
    // The rest may or may not be read: the server answers as soon as a part fails.
    let rest = large[16 << 20..].to_vec();
    let sender = put.chunks.clone();
    rt.spawn(async move {
        for chunk in rest.chunks(1 << 20) {
            if sender.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await.is_err() {
                break;
            }
        }
    });
    let (status, message) = put.finish(&rt);
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("object store is unavailable"), "{message}");
    cluster.garage.start_again();
    assert_eq!(visible(&sha256), 404, "nothing of it is visible");
    assert_eq!(cluster.count("SELECT count(*) FROM blobs"), 0);

    // The database goes down while a small upload is being received.
    let small = vec![9u8; 3 << 20];
    let sha256 = sha256_hex(&small);
    let put = StreamedPut::start(&rt, &format!("{}/v1/orgs/acme/blobs/{sha256}", replica.url), &token);
    put.send(&rt, &small[..1 << 20]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    cluster.postgres.stop();
    put.send(&rt, &small[1 << 20..]);
    let (status, message) = put.finish(&rt);
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("database is unavailable"), "{message}");
    cluster.postgres.start_again();
    assert_eq!(visible(&sha256), 404, "nothing of it is visible");
    // Both go through once the services are back.
    for content in [&large, &small] {
        let url = format!("{}/v1/orgs/acme/blobs/{}", replica.url, sha256_hex(content));
        assert_eq!(http.put(url).bearer_auth(&token).body(content.to_vec()).send().unwrap().status().as_u16(), 201);
    }
}

#[test]
fn content_posted_unnamed_is_copied_to_its_key_and_an_upload_left_behind_is_collected() {
    let cluster = Cluster::start();
    let (acme, other) = (cluster.token("acme"), cluster.token("other"));
    let replica = cluster.replica(&[]);
    let bucket = cluster.bucket();
    let http = reqwest::blocking::Client::new();
    let post = |org: &str, token: &str, body: &[u8]| {
        http.post(format!("{}/v1/orgs/{org}/blobs", replica.url)).bearer_auth(token).body(body.to_vec()).send().unwrap()
    };
    let uploads = || {
        runtime().block_on(async {
            let listed = bucket.list(Some(&object_store::path::Path::from("uploads")));
            futures::StreamExt::collect::<Vec<_>>(listed)
                .await
                .into_iter()
                .map(|o| o.unwrap().location)
                .collect::<Vec<_>>()
        })
    };
    // At most 5 GiB unnamed (one S3 CopyObject), asked for before sending; a larger
    // declared length is refused before any of it is read.
    let asked = http.head(format!("{}/v1/orgs/acme/blobs", replica.url)).bearer_auth(&acme).send().unwrap();
    assert_eq!(asked.headers()["x-runner-max-unnamed-size"], (5u64 << 30).to_string().as_str());
    let address = replica.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    use std::io::{Read, Write};
    let too_large = 6u64 << 30;
    write!(stream, "POST /v1/orgs/acme/blobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {acme}\r\ncontent-length: {too_large}\r\n\r\n").unwrap();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("send it by sha256"), "{answer}");
    // 20 MiB: a multipart upload of 8 MiB parts under uploads/, copied once hashed.
    let large: Vec<u8> = (0..20u32 << 20).map(|i| (i % 253) as u8).collect();
    for content in [&large[..], b"small weights"] {
        let sha256 = sha256_hex(content);
        let created = post("acme", &acme, content);
        assert_eq!(created.status(), 201);
        assert_eq!(
            created.json::<serde_json::Value>().unwrap(),
            serde_json::json!({ "sha256": sha256, "size": content.len() })
        );
        let stored = runtime().block_on(async { bucket.get(&blob_key(&sha256)).await.unwrap().bytes().await.unwrap() });
        assert!(stored == content, "the object under the content's key is the content");
        let again = post("acme", &acme, content);
        assert_eq!(again.status(), 200, "acme had it: {}", again.text().unwrap());
        assert_eq!(post("other", &other, content).status(), 201, "new to other, stored once");
    }
    assert_eq!(uploads(), Vec::<object_store::path::Path>::new(), "nothing left under uploads/");

    // The sample of large content is told to the organizations that sent it only.
    let third = cluster.token("third");
    let known = |org: &str, token: &str, content: &[u8]| {
        let sample = runner_core::registry::sample::sample_bytes(content).unwrap();
        let asked = http
            .head(format!("{}/v1/orgs/{org}/blobs?sample={sample}", replica.url))
            .bearer_auth(token)
            .send()
            .unwrap();
        asked.headers()["x-runner-sample-known"].to_str().unwrap().to_string()
    };
    assert_eq!((known("acme", &acme, &large), known("other", &other, &large)), ("true".into(), "true".into()));
    assert_eq!(known("third", &third, &large), "false");

    // A registration through the replica of new content goes unnamed (sent once); a copy
    // of it in another file, its hash not remembered, is named by its known sample and
    // not sent.
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("weights.bin");
    std::fs::write(&artifact, &large[..12 << 20]).unwrap();
    assert_eq!(known("acme", &acme, &large[..12 << 20]), "false");
    let registry = client(&replica, &acme, &dir.path().join("cache"));
    let register = |registry: &HttpRegistry, path: &Path| {
        register_model::<Scaler>("cold")
            .organization("acme")
            .model(Scale(2.0))
            .artifact(path.to_str().unwrap(), "weights.bin")
            .register(registry)
            .unwrap()
    };
    register(&registry, &artifact);
    assert!(registry.bytes_sent() >= 12 << 20 && registry.bytes_sent() < (12 << 20) + 4096);
    let loaded = Loaded::<Scaler>::load(&registry, &"acme/cold:1".parse().unwrap()).unwrap();
    assert!(std::fs::read(loaded.volume().join("weights.bin")).unwrap() == large[..12 << 20]);
    assert_eq!(uploads(), Vec::<object_store::path::Path>::new());
    let copy = dir.path().join("copy.bin");
    std::fs::copy(&artifact, &copy).unwrap();
    let sent = registry.bytes_sent();
    let again = client(&replica, &acme, &dir.path().join("fresh cache"));
    register(&again, &copy);
    assert_eq!(again.bytes_sent(), 0, "the replica had it");
    assert_eq!(registry.bytes_sent(), sent);

    // What a replica killed between completing an unnamed upload and copying it leaves:
    // spared for the grace period, then collected.
    let leftover = object_store::path::Path::from("uploads/0123456789abcdef");
    runtime().block_on(async { bucket.put(&leftover, b"half a story".to_vec().into()).await.unwrap() });
    assert_eq!(cluster.gc(1.0)["collected"]["uploads"], 0);
    assert_eq!(uploads(), vec![leftover.clone()]);
    let collected = cluster.gc(0.0);
    assert_eq!(collected["collected"]["uploads"], 1, "{collected}");
    assert_eq!(uploads(), Vec::<object_store::path::Path>::new());
    assert_eq!(loaded.run(1.0).unwrap(), 2.0);
}

/// `export` then `import` into an empty PostgreSQL and Garage: the copy passes `verify
/// --deep`, and its listings, aliases (with history, a traffic split and the reasons given
/// included), tokens and downloads equal the original's. A second export writes nothing.
#[test]
fn a_shared_registry_exports_to_a_directory_that_imports_into_an_equal_one() {
    let original = Cluster::start();
    // It deletes a model: the admin right.
    let token = original.token_with(&["--org", "acme", "--admin"]);
    let replica = original.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let registry = client(&replica, &token, &dir.path().join("cache"));
    let artifact = dir.path().join("vocab.txt");
    std::fs::write(&artifact, "a b c").unwrap();
    for (repository, scale) in [("iris", 1.0), ("iris", 2.0), ("iris", 3.0), ("wine", 4.0)] {
        register_model::<Scaler>(repository)
            .organization("acme")
            .model(Scale(scale))
            .artifact(artifact.to_str().unwrap(), "vocab.txt")
            .register(&registry)
            .unwrap();
    }
    registry.delete_model(&runner_core::ModelId::new("acme", "iris", 2).unwrap()).unwrap();
    registry.create_model("acme", "iris").unwrap(); // still uploading: not exported
    let any = runner_core::registry::AliasOptions::default();
    registry.set_alias("acme", "iris", "prod", 1, &any).unwrap();
    registry.set_alias("acme", "iris", "prod", 3, &any).unwrap();
    registry.set_alias("acme", "iris", "canary", 3, &any).unwrap();
    let split = runner_core::registry::Canary { number: 1, percent: 25 };
    let rollout = runner_core::registry::AliasOptions {
        canary: Some(split),
        reason: Some("a quarter back on 1 while 3 is watched".into()),
        ..any.clone()
    };
    registry.set_alias("acme", "iris", "prod", 3, &rollout).unwrap();
    let backup = dir.path().join("backup");
    let export = || {
        let output = original.command(&["export", "--to"]).arg(&backup).output().unwrap();
        assert!(output.status.success(), "export: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let first = export();
    assert_eq!(
        (first["models"].as_u64(), first["aliases"].as_u64(), first["tokens"].as_u64()),
        (Some(3), Some(1), Some(1)),
        "{first}"
    );
    let again = export();
    assert_eq!(
        (again["models"].as_u64(), again["contents"].as_u64(), again["already"].as_u64()),
        (Some(0), Some(0), Some(3)),
        "{again}"
    );

    let copy = Cluster::start();
    let output = copy.command(&["import", "--from"]).arg(&backup).output().unwrap();
    assert!(output.status.success(), "import: {}", String::from_utf8_lossy(&output.stderr));
    let (passed, report) = copy.verify();
    assert!(passed && report["models"] == 3, "{report}");
    // The original's token reads the copy, which equals the original.
    let restored = copy.replica(&[]);
    let copied = client(&restored, &token, &dir.path().join("cache-copy"));
    for repository in ["iris", "wine"] {
        let manifests = |r: &HttpRegistry| -> Vec<_> {
            r.models("acme", repository).unwrap().into_iter().filter_map(|m| m.manifest).collect()
        };
        assert_eq!(manifests(&copied), manifests(&registry), "{repository}");
        assert_eq!(copied.aliases("acme", repository).unwrap(), registry.aliases("acme", repository).unwrap());
        assert_eq!(
            copied.alias_history("acme", repository, None).unwrap(),
            registry.alias_history("acme", repository, None).unwrap()
        );
    }
    // The split and the history's splits and reason came along (not only equal: there).
    let prod = copied.aliases("acme", "iris").unwrap().into_iter().find(|a| a.name == "prod").unwrap();
    assert_eq!((prod.number, prod.canary), (3, Some(split)));
    let history = copied.alias_history("acme", "iris", Some("prod")).unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.from, last.from_canary, last.to, last.to_canary), (Some(3), None, Some(3), Some(split)));
    assert_eq!(last.reason.as_deref(), Some("a quarter back on 1 while 3 is watched"));
    assert!(history[..history.len() - 1].iter().all(|m| m.reason.is_none() && m.to_canary.is_none()), "{history:?}");
    let model = Loaded::<Scaler>::load(&copied, &"acme/iris:prod".parse().unwrap()).unwrap();
    assert_eq!(model.run(1.0).unwrap(), 3.0);
}

/// `verify` on the shared backend: a deleted, a truncated and a corrupted object are each
/// named by model and file, and it exits 1; a clean registry passes.
#[test]
fn verify_names_each_missing_truncated_and_corrupt_object_of_a_shared_registry() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    let dir = tempfile::tempdir().unwrap();
    let registry = client(&replica, &token, &dir.path().join("cache"));
    let models: Vec<_> = (0..4)
        .map(|i| {
            register_model::<Scaler>("scrub").organization("acme").model(Scale(i as f64)).register(&registry).unwrap()
        })
        .collect();
    let (passed, report) = cluster.verify();
    assert!(passed && report["models"] == 4 && report["problems"] == serde_json::json!([]), "{report}");
    let bucket = cluster.bucket();
    let rt = runtime();
    rt.block_on(async {
        let key = |m: &runner_core::Registered| blob_key(&m.manifest.files[0].sha256);
        bucket.delete(&key(&models[0])).await.unwrap();
        let bytes = bucket.get(&key(&models[1])).await.unwrap().bytes().await.unwrap();
        bucket.put(&key(&models[1]), bytes.slice(..bytes.len() / 2).into()).await.unwrap();
        let mut bytes = bucket.get(&key(&models[2])).await.unwrap().bytes().await.unwrap().to_vec();
        bytes[0] ^= 1;
        bucket.put(&key(&models[2]), bytes.into()).await.unwrap();
    });
    let (passed, report) = cluster.verify();
    assert!(!passed, "{report}");
    assert_missing_truncated_corrupt(&report, &models);
}

/// `runner-registry ARGS` on the cluster's database and bucket: its stdout (it must succeed).
fn admin(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster.command(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_token_revoked_through_one_replica_is_refused_by_both_at_once_and_changes_are_audited() {
    let cluster = Cluster::start();
    let ci = cluster.token_with(&["--org", "acme", "--name", "ci", "--write"]);
    let ops = cluster.token_with(&["--org", "acme", "--name", "ops", "--admin"]);
    let iris_only = cluster.token_with(&["--org", "acme", "--name", "iris-ci", "--write", "--repos", "iris"]);
    let brief = cluster.token_with(&["--org", "acme", "--name", "brief", "--expires", "1s"]);
    let (a, b) = (cluster.replica(&[]), cluster.replica(&[]));
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::blocking::Client::new();
    let get = |url: &str, token: &str| {
        let response = http.get(format!("{url}/v1/orgs/acme/repos")).bearer_auth(token).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let register = |url: &common::Server, token: &str, repository: &str| {
        register_model::<Scaler>(repository)
            .organization("acme")
            .model(Scale(1.0))
            .register(&client(url, token, &dir.path().join("cache")))
            .map(|loaded| loaded.id().number)
            .map_err(|e| e.to_string())
    };
    assert_eq!(register(&a, &ci, "digits"), Ok(1));
    assert_eq!(get(&b.url, &ci).0, 200);

    // Rights and repositories hold on every replica.
    assert_eq!(register(&b, &iris_only, "iris"), Ok(1));
    assert!(register(&b, &iris_only, "digits").unwrap_err().contains("may only reach the repositories iris"));
    let delete = |url: &str, token: &str| {
        http.delete(format!("{url}/v1/orgs/acme/repos/digits/models/1")).bearer_auth(token).send().unwrap().status()
    };
    assert_eq!(delete(&b.url, &ci).as_u16(), 403);
    assert_eq!(delete(&b.url, &ops).as_u16(), 204);

    // Revoked by an admin through replica A (its tokens page): both replicas refuse it
    // from the next request on.
    let listed = admin(&cluster, &["token", "list", "--json"]);
    let tokens: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ci_row = tokens.iter().find(|t| t["name"] == "ci").unwrap();
    assert!(ci_row["last_used_at"].is_string(), "{ci_row}");
    assert!(!listed.contains(&ci) && !listed.contains("sha256"), "{listed}");
    let revoke = format!("{}/orgs/acme/-/tokens/{}/revoke", a.url, ci_row["id"].as_str().unwrap());
    let csrf = runner_core::serve::page::csrf_token(&ops);
    let answer = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(revoke)
        .header("cookie", format!("runner_session={ops}"))
        .form(&[("csrf", csrf)])
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    for replica in [&a, &b] {
        let (status, body) = get(&replica.url, &ci);
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("revoked"), "{body}");
    }
    assert_eq!(get(&a.url, &ops).0, 200, "other tokens are untouched");

    // Expired: refused by every replica once its time is up.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, body) = get(&b.url, &brief);
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");

    // The audit log, in PostgreSQL: every change, by token, with its address.
    let entries: Vec<serde_json::Value> =
        admin(&cluster, &["audit", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by =
        |action: &str, name: &str| entries.iter().filter(|e| e["action"] == action && e["token_name"] == name).count();
    assert_eq!(by("commit", "ci"), 1);
    assert_eq!(by("commit", "iris-ci"), 1);
    assert_eq!(by("delete_model", "ops"), 1);
    let operator =
        |action: &str| entries.iter().filter(|e| e["action"] == action && e["token_id"] == "operator").count();
    assert_eq!(operator("create_token"), 4);
    assert_eq!(by("revoke_token", "ops"), 1, "revoked through the page, by the admin's token");
    assert!(entries.iter().filter(|e| e["action"] == "commit").all(|e| e["address"] == "127.0.0.1"));
    let digits = admin(&cluster, &["audit", "--json", "--repo", "digits"]);
    assert!(digits.lines().all(|l| l.contains(r#""repository":"digits""#)) && digits.lines().count() >= 3, "{digits}");
}
