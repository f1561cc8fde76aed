"""A same-run A/B of two runner-registry binaries. Called by bench/registry-ab.sh.

Both binaries serve in turn (A, B, then B, A, ...) against the same PostgreSQL, Garage
and client binary: small registrations/s and warm downloads/s through one shared-registry
replica (as bench/shared.sh), and a 1 GiB upload through a directory server, the file
in the page cache (as bench/transfer.sh). Medians per side, and B over A.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, free_port, replace_block  # noqa: E402
from shared import DOWNLOADS, SMALL, Services, transfer  # noqa: E402
from transfer import fresh_artifact  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))


def upload_seconds(binary, artifact, work, env):
    """Seconds to register `artifact` through a fresh directory server of `binary`."""
    port = free_port()
    data = work / "data"
    server = subprocess.Popen([binary, "serve", "--no-auth", "--addr", f"127.0.0.1:{port}", "--data", data],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdout.readline()
    try:
        os.sync()
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        return transfer("register", f"http://127.0.0.1:{port}", artifact, env=dict(env, RUNNER_CACHE=str(cache)))["seconds"]
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


def shared_rates(binary, services, database):
    """Small registrations/s and warm downloads/s through one replica of `binary` on
    `database` (each side has its own: a binary refuses a schema newer than it knows)."""
    env = dict(services.env, RUNNER_REGISTRY_DATABASE=database)
    server, url = services.replica(binary, env=env)
    try:
        small = transfer("small", SMALL, 8, url, env=env)
        sha = subprocess.run(["psql", database, "-tAc",
                              "SELECT sha256 FROM model_files WHERE repository = 'small' LIMIT 1"],
                             check=True, capture_output=True, text=True).stdout.strip()
        downloads = transfer("download", DOWNLOADS, 8, f"/v1/orgs/default/blobs/{sha}", url, env=env)
        return small["per_second"], downloads["per_second"]
    finally:
        server.terminate()
        server.wait()


def main():
    a, b = (Path(p).resolve() for p in sys.argv[1:3])
    work = ROOT / "bench" / "out" / "ab"
    artifact = fresh_artifact(work)
    services = Services(work / "services")
    results = {"A": {"small": [], "downloads": [], "upload": []}, "B": {"small": [], "downloads": [], "upload": []}}
    databases = {}
    for side in ("A", "B"):
        name = f"ab_{side.lower()}"
        subprocess.run(["psql", services.database, "-qc", f"CREATE DATABASE {name}"], check=True)
        databases[side] = services.database.rsplit("/", 1)[0] + f"/{name}"
    try:
        for round_ in range(ROUNDS):
            for side in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                binary = a if side == "A" else b
                small, downloads = shared_rates(binary, services, databases[side])
                results[side]["small"].append(small)
                results[side]["downloads"].append(downloads)
                results[side]["upload"].append(upload_seconds(binary, artifact, work, services.env))
                print(side, round_, small, downloads, results[side]["upload"][-1], flush=True)
    finally:
        services.stop()
    shutil.rmtree(work, ignore_errors=True)

    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    rows = []
    for key, label, unit in (("small", "small registrations/s (shared, 1 replica)", "/s"),
                             ("downloads", "warm downloads/s (shared, 1 replica)", "/s"),
                             ("upload", "1 GiB upload through a directory server, in the page cache", " s")):
        ma, mb = median(results["A"][key]), median(results["B"][key])
        spread = lambda xs: f"{min(xs):.4g}-{max(xs):.4g}"  # noqa: E731
        rows.append(f"| {label} | {ma:.4g}{unit} ({spread(results['A'][key])}) | {mb:.4g}{unit} "
                    f"({spread(results['B'][key])}) | {mb / ma:.2f} |")
    lines = [
        f"## runner-registry A/B (`bench/registry-ab.sh`){os.environ.get('AB_TITLE', '')}",
        "",
        f"Two builds of `runner-registry` served in turn (A, B, then B, A, ...), {ROUNDS} rounds, against one "
        f"PostgreSQL 15 (fsync off; a database per side), one Garage 2.5.0 node and the same client, on this 2-core "
        f"machine. "
        f"A: `{os.environ.get('AB_A', a)}`; B: `{os.environ.get('AB_B', b)}`. Date: {time.strftime('%Y-%m-%d')}. "
        f"Medians (range); {SMALL} small registrations and {DOWNLOADS} downloads from 8 client threads per round.",
        "",
        "| measure | A | B | B / A |",
        "|---|---|---|---|",
        *rows,
    ]
    print("\n".join(lines))
    replace_block(os.environ.get("AB_BLOCK", "registry-ab"), "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
