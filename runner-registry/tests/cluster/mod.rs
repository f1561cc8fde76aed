//! A shared registry for tests: one real PostgreSQL and one real Garage (an S3 server),
//! the replicas of `runner-registry` serving them, and what tests do to them.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use object_store::ObjectStore;
use runner_core::HttpRegistry;
use runner_registry::SharedStore;

use crate::common::{Server as Replica, BIN};
use crate::services::{Garage, Postgres};

/// A database and a bucket, and the replicas serving them.
pub struct Cluster {
    pub postgres: Postgres,
    pub garage: Garage,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster { postgres: Postgres::start(), garage: Garage::start() }
    }

    /// [`Cluster::start`], with Garage's data in `data`.
    pub fn with_garage_data(data: &Path) -> Cluster {
        Cluster { postgres: Postgres::start(), garage: Garage::start_storing_in(Some(data)) }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        // The shared registry from the environment, as a deployment would configure it.
        command.args(args).env("RUNNER_REGISTRY_DATABASE", &self.postgres.url);
        command.env("RUNNER_REGISTRY_STORE", &self.garage.bucket);
        command.envs(self.garage.env()).env_remove("RUNNER_REGISTRY_DATA");
        command
    }

    pub fn replica(&self, extra: &[&str]) -> Replica {
        let mut command = self.command(&["serve", "--addr", "127.0.0.1:0"]);
        command
            .args(extra)
            .env("RUST_LOG", std::env::var("REPLICA_LOG").unwrap_or("warn".into()))
            .stderr(Stdio::inherit());
        Replica::spawn(command)
    }

    /// A replica on `port` (a fixed one, so that it can be killed and started again
    /// where its clients reach it).
    pub fn replica_at(&self, port: u16, extra: &[&str]) -> Replica {
        let mut command = self.command(&["serve", "--addr", &format!("127.0.0.1:{port}")]);
        command
            .args(extra)
            .env("RUST_LOG", std::env::var("REPLICA_LOG").unwrap_or("warn".into()))
            .stderr(Stdio::inherit());
        Replica::spawn(command)
    }

    /// A write token of `org`.
    pub fn token(&self, org: &str) -> String {
        self.token_with(&["--org", org, "--write"])
    }

    /// A token made by `token create` with `args`.
    pub fn token_with(&self, args: &[&str]) -> String {
        let output = self.command(&[&["token", "create"], args].concat()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub fn gc(&self, grace_hours: f64) -> serde_json::Value {
        let output = self.command(&["gc", "--grace-hours", &grace_hours.to_string()]).output().unwrap();
        assert!(output.status.success(), "gc failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The bucket, as the registry sees it.
    pub fn bucket(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.s3())
    }

    pub fn s3(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("models")
            .with_endpoint(&self.garage.endpoint)
            .with_allow_http(true)
            .with_region("garage")
            .with_access_key_id(&self.garage.key_id)
            .with_secret_access_key(&self.garage.secret)
            .build()
            .unwrap()
    }

    /// The shared store in this process, as `runner-registry gc` opens it.
    pub fn store(&self, rt: &tokio::runtime::Runtime) -> SharedStore {
        rt.block_on(SharedStore::connect(&self.postgres.url, Arc::new(self.s3()), "the test's store".into())).unwrap()
    }

    /// Makes every commit sleep `seconds` inside its transaction, once its files' rows
    /// are written (as a busy database, a lock wait or a long round trip would).
    pub fn slow_commits(&self, seconds: f64) {
        self.slow("model_files", seconds);
    }

    /// Makes every insert into `table` sleep `seconds` inside its transaction.
    pub fn slow(&self, table: &str, seconds: f64) {
        self.slow_on(table, "INSERT", seconds);
    }

    /// Makes every statement of `event` (`INSERT`, `UPDATE`, `DELETE`) on `table` sleep
    /// `seconds` inside its transaction.
    pub fn slow_on(&self, table: &str, event: &str, seconds: f64) {
        let name = format!("slow_{table}_{}", event.to_lowercase());
        let sql = format!(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;
             CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION {name}();"
        );
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&self.postgres.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        })
    }

    /// Waits (at most 20 s) until a transaction sleeps in one of the triggers of
    /// [`Cluster::slow`].
    pub fn wait_for_a_sleeping_transaction(&self) {
        let start = std::time::Instant::now();
        while self.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "no transaction ever slept");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `runner-registry verify --deep --json`: its report, and whether it passed.
    pub fn verify(&self) -> (bool, serde_json::Value) {
        let output = self.command(&["verify", "--deep", "--json"]).output().unwrap();
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("verify printed no report ({e}): {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.success(), report)
    }

    /// Runs SQL statements on the database.
    pub fn execute(&self, sql: &'static str) {
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&self.postgres.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        })
    }

    /// The organizations' names, from their table.
    pub fn organizations(&self) -> Vec<String> {
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&self.postgres.url).await.unwrap();
            let names =
                sqlx::query_scalar("SELECT name FROM organizations ORDER BY name").fetch_all(&pool).await.unwrap();
            pool.close().await;
            names
        })
    }

    /// One number from the database.
    pub fn count(&self, query: &'static str) -> i64 {
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&self.postgres.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(query).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        })
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn client(replica: &Replica, token: &str, cache: &Path) -> HttpRegistry {
    HttpRegistry::with_cache(&replica.url, Some(token.to_string()), cache).unwrap()
}

pub fn blob_key(sha256: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("blobs/sha256/{}/{sha256}", &sha256[..2]))
}
