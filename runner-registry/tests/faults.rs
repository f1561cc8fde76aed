//! The shared registry under injected faults: garbage collection racing registrations
//! (slowed inside the database, with no grace and short ones), replicas and collectors
//! killed with SIGKILL, PostgreSQL restarted, Garage stopped, and Garage's disk full, on
//! a real PostgreSQL and Garage with two replicas. Each scenario counts what it attempted
//! and what was acknowledged; afterwards every acknowledged model must resolve and load
//! with its exact bytes through both replicas, and `verify --deep` must pass. Each prints
//! a row of the table `bench/faults.sh` writes into `bench/RESULTS.md`.

#![allow(missing_docs)]

mod cluster;
mod common;
mod services;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster::{client, runtime, Cluster};
use common::{Scale, Scaler, Server as Replica};
use runner_core::{register_model, HttpRegistry, Loaded};
use runner_registry::storage::Collector;
use services::free_port;

/// The race the old collector lost: content a registration sent (named by no model yet)
/// is named by a commit that is slow inside the database, and `gc` with no grace runs
/// while that commit is in flight. The collector's candidates are read before the commit
/// lands, so only its order of steps keeps the content: every round's model must load
/// with its exact bytes, and `verify --deep` must pass.
#[test]
fn gc_during_a_commit_slowed_in_the_database_loses_nothing_in_50_rounds() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replica = cluster.replica(&[]);
    cluster.slow_commits(0.3);
    let rt = runtime();
    let gc = cluster.store(&rt);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let mut collected = runner_core::registry::store::Collected::default();
    for round in 0..50u64 {
        let cache = dir.path().join(format!("c{round}"));
        let registered = std::thread::scope(|s| {
            let registration = s.spawn(|| {
                let registry = client(&replica, &token, &cache);
                register_model::<Scaler>("slow").organization("acme").model(Scale(round as f64)).register(&registry)
            });
            // Collect while the commit sleeps inside its transaction, every other round;
            // in the others, a little before or after it begins.
            match round % 2 {
                0 => cluster.wait_for_a_sleeping_transaction(),
                _ => std::thread::sleep(std::time::Duration::from_millis(round * 7 % 60)),
            }
            let run = rt.block_on(gc.collect_garbage(std::time::Duration::ZERO, false)).unwrap();
            collected.blobs += run.blobs;
            collected.abandoned.extend(run.abandoned);
            registration.join().unwrap()
        });
        let model = registered.unwrap_or_else(|e| panic!("round {round}: the registration failed: {e}"));
        let reader = client(&replica, &token, &dir.path().join(format!("read{round}")));
        let loaded = Loaded::<Scaler>::load(&reader, &format!("acme/slow:{}", model.id().number).parse().unwrap())
            .unwrap_or_else(|e| panic!("round {round}: {} is ready but cannot be loaded: {e}", model.id()));
        assert_eq!(loaded.run(1.0).unwrap(), round as f64, "round {round}");
    }
    let (passed, report) = cluster.verify();
    assert!(passed, "verify --deep: {report}");
    assert_eq!(report["models"], 50, "{report}");
    row(
        "gc (grace 0) during a commit slowed 0.3 s in the database, 50 rounds",
        &Tally {
            attempted: 50,
            acknowledged: 50,
            downloads: 50,
            fault: format!("50 runs: {} contents, {} numbers", collected.blobs, collected.abandoned.len()),
            took: started.elapsed(),
            ..Tally::default()
        },
    );
}

/// What one fault scenario counted.
#[derive(Debug, Default)]
struct Tally {
    attempted: usize,
    acknowledged: usize,
    /// Acknowledged models that do not load with their bytes through some replica.
    lost: usize,
    /// Loads of acknowledged models checked (each through every replica).
    downloads: usize,
    /// What the fault did (collector runs and what they collected, kills, restarts).
    fault: String,
    /// The shortest time a registration took.
    shortest: Duration,
    took: Duration,
}

/// Prints the scenario's row of the table in `bench/RESULTS.md`.
fn row(scenario: &str, t: &Tally) {
    println!(
        "| {scenario} | {} | {} | {} | {} | {} | {:.1} s |",
        t.attempted,
        t.acknowledged,
        t.lost,
        t.downloads,
        t.fault,
        t.took.as_secs_f64()
    );
}

/// Registrations to run at once, each a model with `files` artifact files of its own of
/// `size` bytes, through the replicas at `urls` in turn.
struct Workload<'a> {
    urls: &'a [String],
    token: &'a str,
    repository: &'a str,
    registrations: usize,
    files: usize,
    size: usize,
}

/// `size` bytes that no store compresses (Garage does): sha256 blocks of `seed` and a
/// counter.
fn incompressible(seed: &str, size: usize) -> Vec<u8> {
    use sha2::Digest;
    let mut bytes = Vec::with_capacity(size + 32);
    let mut block = 0u64;
    while bytes.len() < size {
        bytes.extend_from_slice(&sha2::Sha256::digest(format!("{seed}/{block}")));
        block += 1;
    }
    bytes.truncate(size);
    bytes
}

/// Runs `workload` while `fault` runs beside it (told, through its flag, when the
/// registrations are done; it returns what it did), then loads every acknowledged model
/// through every replica with a fresh cache, and runs `verify --deep`.
fn under_fault(cluster: &Cluster, workload: &Workload<'_>, fault: impl FnOnce(&AtomicBool) -> String + Send) -> Tally {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let done = AtomicBool::new(false);
    let mut tally = Tally { attempted: workload.registrations, ..Tally::default() };
    let results: Vec<(f64, Duration, runner_core::Result<runner_core::Registered>)> = std::thread::scope(|s| {
        let faulting = s.spawn(|| fault(&done));
        let handles: Vec<_> = (0..workload.registrations)
            .map(|i| {
                let work = dir.path().join(format!("r{i}"));
                let url = &workload.urls[i % workload.urls.len()];
                s.spawn(move || {
                    let artifacts = work.join("artifacts");
                    std::fs::create_dir_all(&artifacts).unwrap();
                    for f in 0..workload.files {
                        let seed = format!("{}/{i}/{f}", workload.repository);
                        std::fs::write(artifacts.join(format!("{f}.bin")), incompressible(&seed, workload.size))
                            .unwrap();
                    }
                    let registry =
                        HttpRegistry::with_cache(url, Some(workload.token.to_string()), &work.join("cache")).unwrap();
                    let scale = 1.0 + i as f64;
                    let began = Instant::now();
                    let registered = register_model::<Scaler>(workload.repository)
                        .organization("acme")
                        .model(Scale(scale))
                        .artifact(format!("{}/*", artifacts.display()), "artifacts/*")
                        .register(&registry);
                    (scale, began.elapsed(), registered)
                })
            })
            .collect();
        let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        tally.fault = faulting.join().unwrap();
        results
    });
    tally.shortest = results.iter().map(|(_, took, _)| *took).min().unwrap_or_default();
    for (i, (scale, _, result)) in results.iter().enumerate() {
        let registered = match result {
            Ok(registered) => registered,
            Err(e) => {
                eprintln!("registration {i} failed (allowed, not acknowledged): {e}");
                continue;
            }
        };
        tally.acknowledged += 1;
        for (r, url) in workload.urls.iter().enumerate() {
            let reader = HttpRegistry::with_cache(
                url,
                Some(workload.token.to_string()),
                &dir.path().join(format!("read{i}-{r}")),
            )
            .unwrap();
            let model = format!("acme/{}:{}", workload.repository, registered.id().number).parse().unwrap();
            match Loaded::<Scaler>::load(&reader, &model) {
                Ok(loaded) if loaded.run(1.0).unwrap() == *scale => tally.downloads += 1,
                Ok(_) => tally.lost += 1,
                Err(e) => {
                    eprintln!("acknowledged {model} cannot be loaded through {url}: {e}");
                    tally.lost += 1
                }
            }
        }
    }
    let (passed, report) = cluster.verify();
    assert!(passed, "verify --deep: {report}");
    tally.took = started.elapsed();
    tally
}

/// A collector looping in this process with `grace` until the workload is done.
fn collector(cluster: &Cluster, grace: Duration) -> impl FnOnce(&AtomicBool) -> String + Send + '_ {
    move |done| {
        let rt = runtime();
        let gc = cluster.store(&rt);
        let (mut runs, mut blobs, mut numbers) = (0, 0, 0);
        while !done.load(Ordering::SeqCst) {
            let run = rt.block_on(gc.collect_garbage(grace, false)).expect("gc fails only if a service does");
            runs += 1;
            blobs += run.blobs;
            numbers += run.abandoned.len();
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("{runs} gc runs: {blobs} contents, {numbers} numbers")
    }
}

/// Two replicas on ports of their own, started (again) on demand.
struct Replicas<'a> {
    cluster: &'a Cluster,
    ports: [u16; 2],
    running: [Mutex<Option<Replica>>; 2],
    extra: &'a [&'a str],
}

impl<'a> Replicas<'a> {
    fn start(cluster: &'a Cluster) -> Replicas<'a> {
        Replicas::start_with(cluster, &[])
    }

    fn start_with(cluster: &'a Cluster, extra: &'a [&'a str]) -> Replicas<'a> {
        let ports = [free_port(), free_port()];
        let running = ports.map(|port| Mutex::new(Some(cluster.replica_at(port, extra))));
        Replicas { cluster, ports, running, extra }
    }

    fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect()
    }

    /// Kills replica `i` with SIGKILL, and starts it again after `down`.
    fn kill_and_restart(&self, i: usize, down: Duration) {
        drop(self.running[i].lock().unwrap().take());
        std::thread::sleep(down);
        *self.running[i].lock().unwrap() = Some(self.cluster.replica_at(self.ports[i], self.extra));
    }
}

/// gc looping with no grace, and with a short one, against 16 concurrent registrations
/// whose commits sleep inside the database: nothing acknowledged is lost, and with a
/// grace every registration succeeds (recovering by itself when the collector takes its
/// number or contents).
#[test]
fn gc_looping_against_16_slow_registrations_loses_nothing_acknowledged() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = Replicas::start(&cluster);
    cluster.slow_commits(0.2);
    for (grace, repository) in [(Duration::ZERO, "nograce"), (Duration::from_millis(1500), "grace")] {
        let urls = replicas.urls();
        let workload = Workload { urls: &urls, token: &token, repository, registrations: 16, files: 3, size: 10_000 };
        let tally = under_fault(&cluster, &workload, collector(&cluster, grace));
        row(&format!("gc looping (grace {grace:?}), 16 registrations, commits slowed 0.2 s"), &tally);
        assert_eq!(tally.lost, 0, "{tally:?}");
        assert_eq!(tally.downloads, 2 * tally.acknowledged, "{tally:?}");
        if !grace.is_zero() {
            assert_eq!(tally.acknowledged, tally.attempted, "{tally:?}");
        }
    }
}

/// Registrations that take longer than the collector's 5-second grace (their uploads
/// and commits slowed inside the database) succeed end to end: each keeps its number
/// reserved while it works, and what it sent is spared meanwhile.
#[test]
fn registrations_longer_than_the_grace_succeed_against_a_looping_gc() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = Replicas::start(&cluster);
    // Each content's row sleeps 2 s before it is written: a model of 9 files (the model's
    // own and 8 artifacts, four at a time) uploads for about 6 s.
    cluster.slow("blobs", 2.0);
    cluster.slow_commits(1.0);
    let urls = replicas.urls();
    let workload =
        Workload { urls: &urls, token: &token, repository: "long", registrations: 4, files: 8, size: 10_000 };
    let tally = under_fault(&cluster, &workload, collector(&cluster, Duration::from_secs(5)));
    row(&format!("gc looping (grace 5 s), 4 registrations of {:.1} s or more", tally.shortest.as_secs_f64()), &tally);
    assert_eq!((tally.acknowledged, tally.lost), (tally.attempted, 0), "{tally:?}");
    assert!(tally.shortest > Duration::from_secs(5), "a registration was shorter than the grace: {tally:?}");
}

/// Each replica killed with SIGKILL three times while 16 registrations of 9 MiB files
/// (multipart uploads) with slowed commits go through them, and started again where its
/// clients reach it: a registration cut off fails clearly (or, its commit having landed,
/// is simply ready); nothing acknowledged is lost, nothing is half-visible, and `gc`
/// afterwards aborts what the killed replicas left.
#[test]
fn replicas_killed_mid_upload_and_mid_commit_lose_nothing_acknowledged() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = Replicas::start(&cluster);
    cluster.slow_commits(0.3);
    let urls = replicas.urls();
    let workload =
        Workload { urls: &urls, token: &token, repository: "killed", registrations: 16, files: 1, size: 9 << 20 };
    let tally = under_fault(&cluster, &workload, |done| {
        let mut kills = 0;
        for round in 0..6 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300 + 150 * round as u64));
            replicas.kill_and_restart(round % 2, Duration::from_millis(200));
            kills += 1;
        }
        format!("{kills} replica kills (SIGKILL), each started again 0.2 s later")
    });
    row("replicas killed mid-upload and mid-commit, 16 registrations of 9 MiB", &tally);
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert!(tally.acknowledged >= 1, "{tally:?}");
    let collected = cluster.gc(0.0);
    assert_eq!(
        cluster.count("SELECT count(*) FROM uploads"),
        0,
        "gc aborts the uploads killed replicas left: {collected}"
    );
}

/// `gc` killed with SIGKILL at random points of its sweep, ten times, over hundreds of
/// orphan contents (each mark slowed in the database) while registrations go on: what a
/// killed collector marked is never served or named, the next run finishes it, and
/// every committed model loads.
#[test]
fn gc_killed_mid_sweep_leaves_nothing_the_next_run_cannot_finish() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = Replicas::start(&cluster);
    let urls = replicas.urls();
    // Orphans: contents sent and never named.
    let http = reqwest::blocking::Client::new();
    for i in 0..300 {
        let content = format!("orphan {i}").repeat(100);
        let sha = common::sha256_hex(content.as_bytes());
        let sent =
            http.put(format!("{}/v1/orgs/acme/blobs/{sha}", urls[i % 2])).bearer_auth(&token).body(content).send();
        assert_eq!(sent.unwrap().status().as_u16(), 201);
    }
    cluster.slow_on("blobs", "UPDATE", 0.01);
    let workload =
        Workload { urls: &urls, token: &token, repository: "sweep", registrations: 8, files: 2, size: 10_000 };
    let tally = under_fault(&cluster, &workload, |done| {
        let (mut kills, mut marked) = (0, 0);
        for round in 0..10u64 {
            let mut gc = cluster
                .command(&["gc", "--grace-hours", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(150 + (round * 37) % 200));
            if gc.try_wait().unwrap().is_none() {
                gc.kill().unwrap();
                kills += 1;
            }
            gc.wait().unwrap();
            marked = marked.max(cluster.count("SELECT count(*) FROM blobs WHERE deleting"));
        }
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("{kills} gc kills (SIGKILL) mid-sweep, up to {marked} contents left marked")
    });
    let finished = cluster.gc(0.0);
    row("gc killed mid-sweep (10 times) over 300 orphans, 8 registrations", &tally);
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(cluster.count("SELECT count(*) FROM blobs WHERE deleting"), 0, "the last run finished: {finished}");
    assert_eq!(
        cluster.count(
            "SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM model_files f WHERE f.sha256 = b.sha256)"
        ),
        0,
        "every orphan collected: {finished}"
    );
    // Committed models survive the collector, whatever it was doing when it died.
    let (passed, report) = cluster.verify();
    assert!(passed && report["models"].as_u64() == Some(tally.acknowledged as u64), "{report}");
}

/// PostgreSQL restarted (`pg_ctl -m immediate`) and Garage stopped and started while
/// registrations and downloads run: clients get 503 and retry; what fails, fails clearly;
/// nothing acknowledged is lost and nothing is half-visible.
#[test]
fn the_database_and_the_store_restarting_under_load_lose_nothing_acknowledged() {
    let cluster = Cluster::start();
    let token = cluster.token("acme");
    let replicas = Replicas::start(&cluster);
    let urls = replicas.urls();
    // A model to download over and over meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let seed = HttpRegistry::with_cache(&urls[0], Some(token.clone()), &dir.path().join("seed")).unwrap();
    register_model::<Scaler>("steady").organization("acme").model(Scale(7.0)).register(&seed).unwrap();
    let (downloads, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let workload =
        Workload { urls: &urls, token: &token, repository: "restarts", registrations: 16, files: 2, size: 10_000 };
    let tally = under_fault(&cluster, &workload, |done| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    let cache = dir.path().join(format!("d{n}"));
                    let reader = HttpRegistry::with_cache(&urls[n % 2], Some(token.clone()), &cache).unwrap();
                    match Loaded::<Scaler>::load(&reader, &"acme/steady:1".parse().unwrap()) {
                        Ok(model) => {
                            assert_eq!(model.run(1.0).unwrap(), 7.0, "a download with other bytes");
                            downloads.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    n += 1;
                }
            });
            std::thread::sleep(Duration::from_millis(300));
            cluster.postgres.stop();
            std::thread::sleep(Duration::from_millis(500));
            cluster.postgres.start_again();
            std::thread::sleep(Duration::from_millis(500));
            cluster.garage.stop();
            std::thread::sleep(Duration::from_millis(500));
            cluster.garage.start_again();
        });
        format!(
            "PostgreSQL restarted (immediate), Garage down 0.5 s; {} downloads meanwhile, {} failed",
            downloads.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst)
        )
    });
    row("PostgreSQL and Garage restarted during 16 registrations and downloads", &tally);
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert!(downloads.load(Ordering::SeqCst) >= 1, "no download got through");
}

/// Garage's data on a small file system that fills up: registrations then fail clearly
/// (nothing acknowledged without its content, nothing half-visible), and once the space
/// is there again (the file system grown) they succeed, and every acknowledged model
/// loads.
#[test]
fn a_full_disk_under_garage_fails_registrations_clearly_and_recovers() {
    let disk = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(disk.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run mount (a tmpfs for Garage's data; run as root): {e}"));
    assert!(mounted.success(), "mounting a tmpfs needs root, as scripts/test.sh runs in CI");
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(disk.path());
    let cluster = Cluster::with_garage_data(disk.path());
    let token = cluster.token("acme");
    // Garage hangs requests while its disk is full: replicas fail them after 3 s, not 30.
    let replicas = Replicas::start_with(&cluster, &["--s3-timeout", "3"]);
    let urls = replicas.urls();
    // 12 registrations of 6 MiB each: more than 48 MiB holds.
    let workload =
        Workload { urls: &urls, token: &token, repository: "full", registrations: 12, files: 1, size: 6 << 20 };
    let full = under_fault(&cluster, &workload, |_| "Garage's data on a 48 MiB tmpfs".to_string());
    row("Garage's disk full (48 MiB tmpfs), 12 registrations of 6 MiB", &full);
    assert_eq!(full.lost, 0, "{full:?}");
    assert!(full.acknowledged < full.attempted, "the disk never filled: {full:?}");
    let grown = Command::new("mount").args(["-o", "remount,size=512m"]).arg(disk.path()).status().unwrap();
    assert!(grown.success());
    let workload = Workload { repository: "freed", ..workload };
    let freed = under_fault(&cluster, &workload, |_| "none".to_string());
    row("then space freed (the tmpfs grown), 12 registrations of 6 MiB", &freed);
    assert_eq!((freed.acknowledged, freed.lost), (freed.attempted, 0), "{freed:?}");
}
