//! Real services for the shared backend's tests, started on 127.0.0.1 and free ports in
//! temporary folders, and stopped by PID when dropped: a throwaway PostgreSQL 15 cluster
//! (Debian's `postgresql-15`) and a single Garage node (installed by
//! `scripts/tools.sh`). A missing program is a test failure that says how to install it,
//! never a skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} did not come up within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL cluster of its own.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `postgres://...` of its `postgres` database.
    pub url: String,
}

impl Postgres {
    /// `initdb` (as the `postgres` user when run as root, which initdb refuses), then
    /// `pg_ctl start` with fsync off, on a free port.
    pub fn start() -> Postgres {
        let bin = PathBuf::from(std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()));
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL 15 is not installed at {} (install Debian's postgresql-15, or run scripts/test.sh, which does)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("runner-pg-").tempdir().unwrap();
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(dir.path()));
        }
        let port = free_port();
        let pg = Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, bin, port };
        run(pg
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(pg.data()));
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match is_root() {
            true => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            false => Command::new(program),
        }
    }

    /// Starts the cluster (again, after [`Postgres::stop`]) on the same port.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, "-w", "start"]));
    }

    /// Stops the cluster at once (its postmaster's PID, from `postmaster.pid`).
    pub fn stop(&self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Garage binary: `GARAGE_BIN`, or where `scripts/tools.sh` installs it.
pub fn garage_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("GARAGE_BIN") {
        return PathBuf::from(bin);
    }
    let tools = std::env::var("RUNNER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/runner-tools"));
    tools.join("garage-2.5.0/bin/garage")
}

/// A single Garage node with one bucket and one key.
pub struct Garage {
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<Child>>,
    bin: PathBuf,
    /// Its S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket, as `s3://models`.
    pub bucket: String,
    /// Access key id.
    pub key_id: String,
    /// Secret key.
    pub secret: String,
}

impl Garage {
    /// Starts a node with a single-node layout, bucket `models` and a key that may use it.
    pub fn start() -> Garage {
        Garage::start_storing_in(None)
    }

    /// [`Garage::start`], keeping its data (not its metadata) in `data` when given: a
    /// small file system of the test's, to fill.
    pub fn start_storing_in(data: Option<&Path>) -> Garage {
        let bin = garage_bin();
        assert!(
            bin.exists(),
            "Garage is not installed at {} (run `. scripts/tools.sh && need_garage`, or scripts/test.sh, which does)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("runner-garage-").tempdir().unwrap();
        let (s3, rpc) = (free_port(), free_port());
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
            meta = dir.path().join("meta").display(),
            data = data.map_or(dir.path().join("data"), Path::to_path_buf).display(),
            secret = "1799bccfd7411eddcf9ebd316bc1f5287ad12a68094e1c6ac6abde7e6feae1ec",
        );
        std::fs::write(dir.path().join("garage.toml"), config).unwrap();
        let garage = Garage {
            dir,
            child: std::sync::Mutex::new(None),
            bin,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "s3://models".into(),
            key_id: "GK0123456789abcdef01234567".into(),
            secret: "ab".repeat(32),
        };
        garage.start_again();
        garage
    }

    /// Starts the node (again, after [`Garage::stop`]) with the same data.
    pub fn start_again(&self) {
        let log = std::fs::File::options().create(true).append(true).open(self.dir.path().join("log")).unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret)
            .env("GARAGE_DEFAULT_BUCKET", "models")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let address = self.endpoint.trim_start_matches("http://").to_string();
        wait_for("Garage", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
    }

    /// Kills the node by PID.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The environment a registry server needs to reach the bucket.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", "garage".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}
