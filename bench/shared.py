"""Runs the shared registry benchmark. Called by bench/shared.sh."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, free_port, replace_block  # noqa: E402
from transfer import cp_fsync_seconds, drop_from_page_cache, fresh_artifact, peak_rss_mib  # noqa: E402

SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
SMALL = int(os.environ.get("SMALL", "400"))
DOWNLOADS = int(os.environ.get("DOWNLOADS", "4000"))
RELEASE = ROOT / "target" / "release"
KEY_ID, SECRET = "GK0123456789abcdef01234567", "ab" * 32


def run(*args, **kwargs):
    return subprocess.run([str(a) for a in args], check=True, **kwargs)


def transfer(*args, env):
    out = subprocess.run([str(RELEASE / "transfer"), *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"transfer {args[0]} failed: {out.stderr}")
    return json.loads(out.stdout)


class Services:
    """A PostgreSQL cluster and a Garage node in `work`, stopped by PID."""

    def __init__(self, work):
        self.work = work
        pg_bin = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
        data = work / "pg"
        work.mkdir(parents=True, exist_ok=True)
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(work, "postgres", "postgres")
        run(*as_postgres, pg_bin / "initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", data,
            stdout=subprocess.DEVNULL)
        self.pg_port = free_port()
        options = (f"-p {self.pg_port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=300")
        run(*as_postgres, pg_bin / "pg_ctl", "-D", data, "-l", work / "pg.log", "-o", options, "-w", "start",
            stdout=subprocess.DEVNULL)
        self.pg_pid = int((data / "postmaster.pid").read_text().split()[0])
        self.database = f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres"
        s3, rpc = free_port(), free_port()
        (work / "garage.toml").write_text(f"""metadata_dir = "{work}/meta"
data_dir = "{work}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{'1799bccfd7411eddcf9ebd316bc1f5287ad12a68094e1c6ac6abde7e6feae1ec'}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
""")
        env = dict(os.environ, GARAGE_DEFAULT_ACCESS_KEY=KEY_ID, GARAGE_DEFAULT_SECRET_KEY=SECRET,
                   GARAGE_DEFAULT_BUCKET="models", RUST_LOG="warn")
        self.garage = subprocess.Popen([os.environ["GARAGE_BIN"], "-c", work / "garage.toml", "server",
                                        "--single-node", "--default-bucket"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="garage",
                        AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3}", BENCH_BUCKET="models",
                        # The registry does not sign payloads (it checks sha256 itself): nor does the limit.
                        AWS_UNSIGNED_PAYLOAD="true",
                        RUNNER_REGISTRY_DATABASE=self.database, RUNNER_REGISTRY_STORE="s3://models",
                        RUST_LOG="warn")
        time.sleep(1)

    def replica(self, binary=None, auth=False, env=None):
        """A replica of `binary` (this checkout's release build by default), without auth
        unless `auth`, with `env` (the services' by default)."""
        port = free_port()
        server = subprocess.Popen([binary or RELEASE / "runner-registry", "serve", *([] if auth else ["--no-auth"]),
                                   "--addr", f"127.0.0.1:{port}"],
                                  env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        server.stdout.readline()
        return server, f"http://127.0.0.1:{port}"

    def stop(self):
        self.garage.kill()
        self.garage.wait()
        os.kill(self.pg_pid, 9)


def main():
    work = ROOT / "bench" / "out" / "shared"
    artifact = fresh_artifact(work)  # SIZE_MIB from the environment, as here
    services = Services(work / "services")
    try:
        env = services.env
        cp_seconds = cp_fsync_seconds(artifact, work)
        # Side by side, alternating, three rounds each: the bare upload and the registry.
        bare, registered, unnamed = [], [], []
        server, url = services.replica()

        def forget():
            # The next registration uploads anew: a fresh repository of the same bytes would be deduped.
            subprocess.run(["psql", services.database, "-qc",
                            "DELETE FROM models; DELETE FROM repositories; DELETE FROM grants; DELETE FROM blobs;"],
                           check=True, stdout=subprocess.DEVNULL)

        for round_ in range(3):
            t = time.perf_counter()
            transfer("s3-put", artifact, env=env)
            bare.append(time.perf_counter() - t)
            # In the page cache, new content: sampled, asked, sent unnamed and hashed on the
            # way, then copied inside the store to its content's key.
            registered.append(transfer("register", url, artifact, env=dict(env, RUNNER_CACHE=str(work / f"c{round_}"))))
            forget()
            # Not in the page cache: likewise (read from the disk once).
            drop_from_page_cache(artifact)
            unnamed.append(transfer("register", url, artifact, env=dict(env, RUNNER_CACHE=str(work / f"u{round_}"))))
            if round_ < 2:
                forget()
        cold = transfer("load", url, "transfer:1", work / "cache", env=env)
        server_peak = peak_rss_mib(server.pid)
        server.terminate()
        server.wait()

        # Small registrations and warm downloads, one replica then two.
        rows = []
        for replicas in (1, 2):
            servers = [services.replica() for _ in range(replicas)]
            urls = [u for _, u in servers]
            small = transfer("small", SMALL, 8, *urls, env=env)
            sha = subprocess.run(["psql", services.database, "-tAc",
                                  "SELECT sha256 FROM model_files WHERE repository = 'small' LIMIT 1"],
                                 check=True, capture_output=True, text=True).stdout.strip()
            downloads = transfer("download", DOWNLOADS, 8, f"/v1/orgs/default/blobs/{sha}", *urls, env=env)
            rows.append((replicas, small, downloads))
            for server, _ in servers:
                server.terminate()
                server.wait()
        # The same warm downloads through a replica with auth on: a valid token against a
        # revoked one (answered 401), alternating, three rounds each.
        def token(*args):
            out = subprocess.run([RELEASE / "runner-registry", "token", "create", "--org", "default", *args],
                                 env=services.env, check=True, capture_output=True, text=True)
            return out.stdout.strip()
        valid, revoked = token("--name", "bench-valid"), token("--name", "bench-revoked")
        listed = subprocess.run([RELEASE / "runner-registry", "token", "list", "--json"], env=services.env, check=True,
                                capture_output=True, text=True).stdout
        revoked_id = next(json.loads(line)["id"] for line in listed.splitlines() if "bench-revoked" in line)
        subprocess.run([RELEASE / "runner-registry", "token", "revoke", revoked_id], env=services.env, check=True,
                       stdout=subprocess.DEVNULL)
        server, url = services.replica(auth=True)
        by_token = {"valid": [], "revoked": []}
        for _ in range(3):
            for kind, secret, status in (("valid", valid, None), ("revoked", revoked, "401")):
                env = dict(services.env, RUNNER_REGISTRY_TOKEN=secret)
                if status:
                    env["BENCH_EXPECT_STATUS"] = status
                by_token[kind].append(transfer("download", DOWNLOADS, 8, f"/v1/orgs/default/blobs/{sha}", url, env=env))
        server.terminate()
        server.wait()
    finally:
        services.stop()
    shutil.rmtree(work, ignore_errors=True)

    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    bare_s = median(bare)
    reg_s = median([r["seconds"] for r in registered])
    unnamed_s = median([r["seconds"] for r in unnamed])
    client_peak = max(r["peak_rss_mib"] for r in registered)
    gib = SIZE_MIB / 1024
    registry_rounds = ", ".join(f"{r['seconds']:.2f}" for r in registered)
    unnamed_rounds = ", ".join(f"{r['seconds']:.2f}" for r in unnamed)
    bare_rounds = ", ".join(f"{x:.2f}" for x in bare)
    lines = [
        "## Shared registry: PostgreSQL + Garage (`bench/shared.sh`)",
        "",
        f"Replicas of `runner-registry` on one PostgreSQL 15 (fsync off) and one Garage 2.5.0 node, all on this "
        f"2-core machine with the clients. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        f"A {gib:g} GiB artifact (random bytes); medians of 3 alternating rounds (bare, registry, bare, ...). "
        "Both send unsigned payloads (the registry checks every content's sha256 itself).",
        "",
        "| step | seconds | vs bare upload | peak RSS |",
        "|---|---|---|---|",
        f"| `cp` + fsync | {cp_seconds:.2f} | - | - |",
        f"| bare object_store multipart upload (limit) | {bare_s:.2f} | 1.00x | - |",
        f"| register through a replica, file in the page cache (new content: sent unnamed, copied in the store) | {reg_s:.2f} | {reg_s / bare_s:.2f}x | client {client_peak:.1f} MiB, "
        f"replica {server_peak:.1f} MiB |",
        f"| register through a replica, file not in the page cache (likewise) | "
        f"{unnamed_s:.2f} | {unnamed_s / bare_s:.2f}x | client {max(r['peak_rss_mib'] for r in unnamed):.1f} MiB |",
        f"| download, cold cache | {cold['seconds']:.2f} | - | client {cold['peak_rss_mib']:.1f} MiB |",
        "",
        f"Rounds: bare {bare_rounds}; registry, file in the page cache {registry_rounds}; not in the page cache "
        f"{unnamed_rounds}.",
        "",
        f"Small models (the `sum` runner, one small file each): {SMALL} registrations and {DOWNLOADS} downloads of one "
        "warm file, from 8 client threads spread over the replicas.",
        "",
        "| replicas | registrations/s | p50 ms | p99 ms | downloads/s | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for replicas, small, downloads in rows:
        lines.append(f"| {replicas} | {small['per_second']:.1f} | {small['p50_ms']:.1f} | {small['p99_ms']:.1f} | "
                     f"{downloads['per_second']:.0f} | {downloads['p99_ms']:.1f} |")
    valid = sorted(by_token["valid"], key=lambda r: r["per_second"])[1]
    revoked = sorted(by_token["revoked"], key=lambda r: r["per_second"])[1]
    lines += [
        "",
        f"The same {DOWNLOADS} warm downloads through one replica with auth on, alternating a valid token and a revoked "
        "one (answered 401: every request reads the token's row, so a revocation holds from the next request on every "
        "replica); medians of 3.",
        "",
        "| token | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| valid (download answered) | {valid['per_second']:.0f} | {valid['p50_ms']:.2f} | {valid['p99_ms']:.1f} |",
        f"| revoked (401) | {revoked['per_second']:.0f} | {revoked['p50_ms']:.2f} | {revoked['p99_ms']:.1f} |",
    ]
    replace_block("shared", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
