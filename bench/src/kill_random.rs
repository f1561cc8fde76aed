//! Kill at random: SIGKILLs `runner-registry` and the registering client at random
//! moments while fresh multi-file models are being registered over HTTP, then checks
//! that every model the registry lists as ready downloads whole (each file's sha256
//! checked by the client, and its bytes compared with what was sent), and that a
//! registration afterwards succeeds.
//!
//! ```text
//! kill-random [--rounds 50] [--registry-bin target/release/runner-registry]
//! ```
//!
//! Each round starts the server (killed or not in the round before), starts a client
//! process (this program, `kill-random register ...`) that registers a model of 2 to 5
//! files of 256 KiB to 3 MiB of content no other round has, waits a random time up to
//! 1.5 times a clean registration, then kills the client, the server, or both, with
//! SIGKILL. Exits 1 when anything is wrong.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runner_core::{register_model, HttpRegistry, ModelId, ModelStatus, Registry};
use runner_examples::sum::{SumModel, SumRunner};

const ORG: &str = "acme";
const REPO: &str = "killed";

/// A small deterministic generator (xorshift), so the checker can rebuild each round's
/// files from the round number.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The files of round `round`: names and contents.
fn round_files(round: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(round + 1);
    let count = 2 + rng.below(4);
    (0..count)
        .map(|i| {
            let size = (256 << 10) + rng.below(11 << 18) as usize;
            let mut bytes = Vec::with_capacity(size + 8);
            while bytes.len() < size {
                bytes.extend_from_slice(&rng.next().to_le_bytes());
            }
            bytes.truncate(size);
            (format!("part-{i}.bin"), bytes)
        })
        .collect()
}

/// The client process: registers round `round`'s files and prints the model number.
fn register(url: &str, token: &str, round: u64, dir: &Path) -> Result<(), String> {
    let files = dir.join(format!("round-{round}"));
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    for (name, bytes) in round_files(round) {
        std::fs::write(files.join(&name), bytes).map_err(|e| e.to_string())?;
    }
    let registry = HttpRegistry::with_cache(url, Some(token.to_string()), &dir.join(format!("cache-{round}")))
        .map_err(|e| e.to_string())?;
    let registered = register_model::<SumRunner>(REPO)
        .organization(ORG)
        .model(SumModel { scale: round as f64 })
        .artifact(format!("{}/*", files.display()), "files/*")
        .register(&registry)
        .map_err(|e| e.to_string())?;
    println!("{}", registered.id().number);
    Ok(())
}

struct Server {
    child: Child,
}

impl Server {
    fn start(bin: &Path, data: &Path, addr: &str) -> Server {
        let started = Instant::now();
        loop {
            let mut child = Command::new(bin)
                .args(["serve", "--addr", addr, "--data"])
                .arg(data)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start runner-registry");
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line);
            if line.starts_with("listening on") {
                return Server { child };
            }
            // The port of a server killed a moment ago may not be free yet.
            let _ = child.kill();
            let _ = child.wait();
            assert!(started.elapsed() < Duration::from_secs(30), "runner-registry does not start on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("register") {
        let [_, _, url, token, round, dir] = args.as_slice() else {
            eprintln!("usage: kill-random register URL TOKEN ROUND DIR");
            std::process::exit(2);
        };
        if let Err(e) = register(url, token, round.parse().expect("a round number"), Path::new(dir)) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let option = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rounds: u64 = option("--rounds").map_or(50, |r| r.parse().expect("--rounds N"));
    let bin = PathBuf::from(option("--registry-bin").unwrap_or_else(|| "target/release/runner-registry".into()));
    let work = tempfile::tempdir().expect("a temporary folder");
    let data = work.path().join("data");
    let output = Command::new(&bin)
        .args(["token", "create", "--org", ORG, "--write", "--data"])
        .arg(&data)
        .output()
        .expect("runner-registry token create");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}");
    let me = std::env::current_exe().unwrap();
    let client = |round: u64| {
        Command::new(&me)
            .args(["register", &url, &token])
            .arg(round.to_string())
            .arg(work.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut server = Server::start(&bin, &data, &addr);
    // A clean registration first: how long one takes sets the range of kill moments.
    let started = Instant::now();
    let clean = client(0).wait_with_output().unwrap();
    assert!(clean.status.success(), "a clean registration fails: {}", String::from_utf8_lossy(&clean.stderr));
    let clean_ms = started.elapsed().as_millis().max(20) as u64;
    println!("a clean registration of 2-5 files (0.25-3 MiB each) takes {clean_ms} ms");

    let mut rng = Rng::new(std::process::id() as u64 ^ clean_ms);
    let (mut client_killed_midway, mut server_kills, mut completed) = (0, 0, 1);
    let mut sent: Vec<(u64, u64)> = vec![(String::from_utf8_lossy(&clean.stdout).trim().parse().unwrap(), 0)];
    for round in 1..=rounds {
        let mut registering = client(round);
        std::thread::sleep(Duration::from_millis(rng.below(clean_ms * 3 / 2)));
        let victim = rng.below(3); // 0: the client, 1: the server, 2: both
        if victim != 1 {
            let _ = registering.kill();
        }
        if victim != 0 {
            server.kill();
            server_kills += 1;
            server = Server::start(&bin, &data, &addr);
        }
        let output = registering.wait_with_output().unwrap();
        match String::from_utf8_lossy(&output.stdout).trim().parse::<u64>() {
            Ok(number) if output.status.success() => {
                completed += 1;
                sent.push((number, round));
            }
            _ if victim != 1 => client_killed_midway += 1,
            _ => {} // the server was killed under it: the client gave up, or its retries ran out
        }
    }

    // Every model listed as ready downloads whole and holds what its round sent.
    let registry = HttpRegistry::with_cache(&url, Some(token.clone()), &work.path().join("check-cache")).unwrap();
    let models = registry.models(ORG, REPO).unwrap();
    let mut failures = Vec::new();
    let ready: Vec<_> = models.iter().filter(|m| m.status == ModelStatus::Ready).collect();
    let rounds_by_key: std::collections::HashMap<Vec<u8>, u64> =
        (0..=rounds + 1).map(|round| (round_files(round)[0].1[..64].to_vec(), round)).collect();
    for model in &ready {
        let manifest = match registry.manifest(&model.id) {
            Ok(manifest) => manifest,
            Err(e) => {
                failures.push(format!("{}: listed ready, but its manifest fails: {e}", model.id));
                continue;
            }
        };
        let volume = match registry.fetch(&manifest) {
            Ok(volume) => volume,
            Err(e) => {
                failures.push(format!("{}: listed ready, but does not download: {e}", model.id));
                continue;
            }
        };
        // The round is known from what the client printed, or else (the client was killed
        // after the commit) from the first bytes of its first file.
        let told = sent.iter().find(|(number, _)| *number == model.id.number).map(|(_, round)| *round);
        let first = std::fs::read(volume.join("files/part-0.bin")).unwrap_or_default();
        let Some(round) = told.or_else(|| first.get(..64).and_then(|key| rounds_by_key.get(key).copied())) else {
            failures.push(format!("{}: its files are no round's", model.id));
            continue;
        };
        for (name, bytes) in round_files(round) {
            match std::fs::read(volume.join("files").join(&name)) {
                Ok(found) if found == bytes => {}
                Ok(found) => failures.push(format!(
                    "{}: files/{name} has {} bytes, not round {round}'s {}",
                    model.id,
                    found.len(),
                    bytes.len()
                )),
                Err(e) => failures.push(format!("{}: files/{name}: {e}", model.id)),
            }
        }
    }
    for (number, round) in &sent {
        if !ready.iter().any(|m| m.id.number == *number) {
            failures.push(format!("round {round} was told it registered number {number}, which is not ready"));
        }
    }
    let after = client(rounds + 1).wait_with_output().unwrap();
    if !after.status.success() {
        failures.push(format!("a registration afterwards fails: {}", String::from_utf8_lossy(&after.stderr)));
    }
    let number: Option<u64> = String::from_utf8_lossy(&after.stdout).trim().parse().ok();
    if let Some(number) = number {
        let id = ModelId::new(ORG, REPO, number).unwrap();
        if registry.status(&id).ok().flatten() != Some(ModelStatus::Ready) {
            failures.push(format!("the registration afterwards ({id}) is not ready"));
        }
    }
    server.kill();

    println!(
        "{rounds} rounds: the client killed midway {client_killed_midway} times, the server killed {server_kills} times; \
         {completed} registrations completed, {} models ready, {} left uploading (invisible to loads); failures: {}",
        ready.len(),
        models.len() - ready.len(),
        failures.len()
    );
    for failure in &failures {
        println!("  FAILURE {failure}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
