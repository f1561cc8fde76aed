"""The many-models benchmark (bench/many_models.sh): 50 `sum` models (the smallest example
runner) registered as m00..m49, served by one `serve --repository-mode explicit
--max-loaded-models 10 --load-on-demand` pinned to CPU 0; this client (one connection,
one request at a time, pinned to CPU 1) measures each request's latency:

- steady state: requests spread over 10 models that are all loaded;
- on demand: requests that cycle through all 50 in order, so that each finds its model
  unloaded (10 are loaded at a time) and waits for it to load, after the least recently
  used one is unloaded;
- then a random mix (a hot set of 8 three times in four, any of the 50 otherwise).

It also reads the server's resident memory after each phase, and its count of loaded models."""

import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (free_port, start, stop, rss_mib, replace_block)

ROOT = run.ROOT
RELEASE = ROOT / "target" / "release"
REQUESTS = int(os.environ.get("REQUESTS", "500"))
MODELS = 50
LOADED = 10
BODY = json.dumps({"values": [1.0] * 64}).encode()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def phase(connection, names):
    """Latencies (ms) of one request to each of `names`, in order; every answer must be 200."""
    latencies = []
    for name in names:
        started = time.perf_counter()
        connection.request("POST", f"/models/{name}/predict", BODY, {"content-type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"{name}: HTTP {response.status}: {body[:200]!r}")
    return latencies


def loaded(connection):
    connection.request("GET", "/models")
    response = connection.getresponse()
    return len(json.loads(response.read())["models"])


def main():
    os.sched_setaffinity(0, {int(run.LOAD_CPU)})
    registry = str(Path(tempfile.mkdtemp()) / "registry")
    for i in range(MODELS):
        subprocess.run([str(RELEASE / "register"), "sum", "--repository", f"m{i:02}", "--registry", registry],
                       check=True, stdout=subprocess.DEVNULL)
    port = run.free_port()
    command = ["taskset", "-c", run.SERVER_CPU, str(RELEASE / "serve"), "--registry", registry,
               "--addr", f"127.0.0.1:{port}", "--repository-mode", "explicit",
               "--max-loaded-models", str(LOADED), "--load-on-demand"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", port)
            try:
                connection.request("GET", "/readyz")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("serve did not get ready")
            time.sleep(0.05)
        hot = [f"m{i:02}" for i in range(LOADED)]
        phase(connection, hot * 20)  # load the hot ten and warm up
        rss = {"start": run.rss_mib(process.pid)[0]}
        steady = phase(connection, [hot[i % LOADED] for i in range(REQUESTS)])
        rss["steady"] = run.rss_mib(process.pid)[0]
        cycle = [f"m{(LOADED + i) % MODELS:02}" for i in range(REQUESTS)]
        on_demand = phase(connection, cycle)
        rss["on demand"] = run.rss_mib(process.pid)[0]
        chooser = random.Random(7)
        mix_names = [f"m{chooser.randrange(8) if chooser.random() < 0.75 else chooser.randrange(MODELS):02}"
                     for _ in range(REQUESTS)]
        mix = phase(connection, mix_names)
        rss["mix"], rss["peak"] = run.rss_mib(process.pid)
        count = loaded(connection)
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
    finally:
        run.stop(process)
    evicted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("runner_model_swaps_total") and 'outcome="evicted"' in line)
    write({"steady state (model loaded)": steady, "load on demand (every request)": on_demand,
           "random mix (3/4 over a hot 8)": mix}, rss, count, evicted)


def write(rows, rss, count, evicted):
    lines = [
        "## Many models in one server (`bench/many_models.sh`)",
        "",
        f"{MODELS} `sum` models (64 floats in, their sum out) registered as m00..m{MODELS - 1}, served by "
        f"`serve --repository-mode explicit --max-loaded-models {LOADED} --load-on-demand` pinned to CPU {run.SERVER_CPU}; "
        f"one client connection on CPU {run.LOAD_CPU}, one request at a time, {REQUESTS} requests per phase, latency "
        "measured by the client. Steady state spreads the requests over 10 loaded models; load on demand cycles "
        "through all 50 in order, so every request finds its model unloaded, waits for the least recently used one "
        "to be unloaded and its own to load; the mix asks a hot set of 8 three times in four and any of the 50 "
        f"otherwise. Every request answered 200. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| phase | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
    ]
    for name, latencies in rows.items():
        lines.append(f"| {name} | {percentile(latencies, 50):.2f} | {percentile(latencies, 99):.2f} | {max(latencies):.2f} |")
    lines += [
        "",
        f"Resident memory of serve (MiB): after warm-up {rss['start']:.0f}, steady {rss['steady']:.0f}, after cycling "
        f"all {MODELS} {rss['on demand']:.0f}, after the mix {rss['mix']:.0f}, peak {rss['peak']:.0f}. Loaded at the end: "
        f"{count} (the limit {LOADED}); "
        f"models unloaded to stay within it: {evicted:.0f}.",
    ]
    print("\n".join(lines))
    run.replace_block("many-models", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
