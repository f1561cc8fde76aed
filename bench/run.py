"""Runs the serving benchmark and rewrites bench/RESULTS.md. Called by bench/run.sh."""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATION = int(os.environ.get("DURATION", "10"))
WARMUP = int(os.environ.get("WARMUP", "3"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
CONCURRENCY = [1, 32]
COLD_STARTS = 5
# A/B mode: OLD_SERVE=/path/to/an/earlier/serve compares it with this checkout's serve,
# side by side in the same rounds (FastAPI left out), into the `serving-ab` block.
OLD_SERVE = os.environ.get("OLD_SERVE")

W1_BODY = json.dumps({"values": [float(i) * 0.5 for i in range(64)]})
W2_BODY = json.dumps({"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2})
WORKLOADS = {"W1": W1_BODY, "W2": W2_BODY}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=1.0):
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def systems(registry):
    release = ROOT / "target" / "release"
    venv = ROOT / "bench" / ".venv" / "bin"
    return {
        "bare axum (limit)": (
            lambda port: [str(release / "bare-axum"), f"127.0.0.1:{port}", registry],
            {"W1": "/w1", "W2": "/w2"},
        ),
        "runner serve": (
            lambda port: [str(release / "serve"), "--registry", registry, "--addr", f"127.0.0.1:{port}", "sum:latest", "iris:latest"],
            {"W1": "/models/sum/predict", "W2": "/models/iris/predict"},
        ),
        "runner serve (before)": (
            lambda port: [OLD_SERVE or "", "--registry", registry, "--addr", f"127.0.0.1:{port}", "sum:latest", "iris:latest"],
            {"W1": "/models/sum/predict", "W2": "/models/iris/predict"},
        ),
        "FastAPI + uvicorn": (
            lambda port: [str(venv / "uvicorn"), "--app-dir", str(ROOT / "bench"), "fastapi_app:app", "--port", str(port),
                          "--workers", "1", "--log-level", "warning", "--no-access-log"],
            {"W1": "/w1", "W2": "/w2"},
        ),
    }


def start(command, path, body):
    """Starts a server pinned to SERVER_CPU; returns (process, url, ms to the first 200)."""
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    started = time.perf_counter()
    process = subprocess.Popen(["taskset", "-c", SERVER_CPU] + command(port), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{command(port)} exited with {process.returncode}")
        try:
            if post(url + path, body, timeout=0.5)[0] == 200:
                return process, url, (time.perf_counter() - started) * 1000
        except OSError:
            pass
        if time.perf_counter() - started > 60:
            raise SystemExit(f"{command(port)} never answered")
        time.sleep(0.001)


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    values = {k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def to_ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, body, connections, seconds, latency=True, script="post.lua", env=None):
    """wrk POSTing `body` (or, with script="post_file.lua" and env BODY_FILE and HEADERS, a
    file): requests/s, non-2xx `errors`, `socket_errors`, and p50/p99 in ms."""
    command = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               "-s", str(ROOT / "bench" / script), url]
    if latency:
        command.insert(-1, "--latency")
    env = dict(os.environ, **(env or {"BODY": body}))
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result = {"rps": rps, "errors": int(errors.group(1)) if errors else 0,
              "socket_errors": sum(map(int, sockets.groups())) if sockets else 0}
    if latency:
        result["p50"] = to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
        result["p99"] = to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    return result


ROUNDS = int(os.environ.get("ROUNDS", "3"))
ORDER = ["bare axum (limit)", "runner serve (before)", "runner serve"] if OLD_SERVE else \
    ["bare axum (limit)", "runner serve", "FastAPI + uvicorn"]


def main():
    registry = str(Path(tempfile.mkdtemp()) / "registry")
    subprocess.run([str(ROOT / "target" / "release" / "register"), "--registry", registry], check=True, stdout=subprocess.DEVNULL)
    os.environ["RUNNER_REGISTRY"] = registry
    servers = {name: system for name, system in systems(registry).items() if name in ORDER}
    cold = {}
    for name, (command, paths) in servers.items():
        starts = []
        for _ in range(COLD_STARTS):
            process, _, ms = start(command, paths["W1"], W1_BODY)
            starts.append(ms)
            stop(process)
        cold[name] = statistics.median(starts)
        print(f"cold start {name}: {cold[name]:.1f} ms", flush=True)
    # All three run at once, pinned to the same core; only the one under load works.
    # Rounds interleave the systems so that drifts of the machine hit them alike.
    running = {name: start(command, paths["W1"], W1_BODY)[:2] for name, (command, paths) in servers.items()}
    results = []
    try:
        for workload, body in WORKLOADS.items():
            for connections in CONCURRENCY:
                for name in ORDER:
                    wrk(running[name][1] + servers[name][1][workload], body, connections, WARMUP, latency=False)
                rounds = {name: [] for name in ORDER}
                for _ in range(ROUNDS):
                    for name in ORDER:
                        rounds[name].append(wrk(running[name][1] + servers[name][1][workload], body, connections, DURATION))
                limit = rounds[ORDER[0]]
                for name in ORDER:
                    runs = rounds[name]
                    result = {
                        "system": name, "workload": workload, "connections": connections,
                        "rps": statistics.median(r["rps"] for r in runs),
                        "p50": statistics.median(r["p50"] for r in runs),
                        "p99": statistics.median(r["p99"] for r in runs),
                        "errors": sum(r["errors"] for r in runs),
                        "rps_ratio": statistics.median(r["rps"] / l["rps"] for r, l in zip(runs, limit)),
                        "p99_ratio": statistics.median(r["p99"] / l["p99"] for r, l in zip(runs, limit)),
                    }
                    if OLD_SERVE:
                        before = rounds["runner serve (before)"]
                        result["vs_before"] = statistics.median(r["rps"] / b["rps"] for r, b in zip(runs, before))
                        result["rounds"] = [round(r["rps"]) for r in runs]
                    results.append(result)
                    print(f"{workload} c={connections:<3} {name:<20} {result['rps']:>9.0f} req/s ({result['rps_ratio']:.2f}x)  "
                          f"p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms ({result['p99_ratio']:.2f}x)  "
                          f"errors {result['errors']}", flush=True)
        for name, (process, _) in running.items():
            rss, peak = rss_mib(process.pid)
            for r in results:
                if r["system"] == name:
                    r["rss"], r["peak_rss"] = rss, peak
    finally:
        for process, _ in running.values():
            stop(process)
    write_ab(results, cold) if OLD_SERVE else write(results, cold)


def cold_table(by, cold):
    lines = ["", "| system | cold start to first 200 (median of 5) | RSS after the runs | peak RSS |", "|---|---|---|---|"]
    for system in ORDER:
        r = by[("W1", 1, system)]
        lines.append(f"| {system} | {cold[system]:.1f} ms | {r['rss']:.1f} MiB | {r['peak_rss']:.1f} MiB |")
    return lines


def write_ab(results, cold):
    by = {(r["workload"], r["connections"], r["system"]): r for r in results}
    lines = [
        "## Serving A/B (`OLD_SERVE=path bench/run.sh`)",
        "",
        f"`{OLD_SERVE}` (before) against this checkout's `serve` (after), with bare axum as the limit: all three "
        f"running, pinned to CPU {SERVER_CPU}, `wrk -t1` on CPU {LOAD_CPU}; {ROUNDS} interleaved rounds of {DURATION} s "
        f"per row after {WARMUP} s of warm-up. Medians of the rounds; \"after / before\" is the median of same-round "
        f"ratios. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| workload | conc. | before req/s (rounds) | after req/s (rounds) | after / before | before vs limit | after vs limit | p99 before / after ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        for connections in CONCURRENCY:
            b, a = by[(workload, connections, "runner serve (before)")], by[(workload, connections, "runner serve")]
            lines.append(
                f"| {workload} | {connections} | {b['rps']:,.0f} ({', '.join(map(str, b['rounds']))}) | "
                f"{a['rps']:,.0f} ({', '.join(map(str, a['rounds']))}) | {a['vs_before']:.3f} | {b['rps_ratio']:.2f}x | "
                f"{a['rps_ratio']:.2f}x | {b['p99']:.3f} / {a['p99']:.3f} |")
    lines += cold_table(by, cold)
    replace_block("serving-ab", "\n".join(lines))


def write(results, cold):
    by = {(r["workload"], r["connections"], r["system"]): r for r in results}
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmark results",
        "",
        "## Serving (`bench/run.sh`)",
        "",
        "Server pinned to CPU "
        f"{SERVER_CPU}, `wrk -t1` pinned to CPU {LOAD_CPU}; per row {WARMUP} s warm-up, then {ROUNDS} rounds of "
        f"{DURATION} s interleaving the three servers (all running, only the loaded one busy). Figures are medians "
        "of the rounds; ratios are medians of same-round ratios to the limit (bare axum). One run, one machine.",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "W1: `{\"values\": [64 floats]} -> {\"sum\": f}` through the `sum` runner (only `predict`). "
        "W2: the Iris classifier (`iris` runner: preprocess, linfa logistic regression, postprocess).",
        "",
        "| workload | conc. | system | req/s | vs limit | p50 ms | p99 ms | p99 vs limit | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        for connections in CONCURRENCY:
            for system in ORDER:
                r = by[(workload, connections, system)]
                lines.append(
                    f"| {workload} | {connections} | {system} | {r['rps']:,.0f} | {r['rps_ratio']:.2f}x | "
                    f"{r['p50']:.3f} | {r['p99']:.3f} | {r['p99_ratio']:.2f}x | {r['errors']} |")
    lines += cold_table(by, cold)
    ours, fastapi, limit = (by[("W1", 32, s)] for s in ["runner serve", "FastAPI + uvicorn", "bare axum (limit)"])
    lines += [
        "",
        f"W1 at concurrency 32: runner serve is {ours['rps_ratio']:.2f}x the limit and "
        f"{ours['rps'] / fastapi['rps']:.1f}x FastAPI; p99 {ours['p99_ratio']:.2f}x the limit's.",
        "",
    ]
    replace_block("serving", "\n".join(lines[2:]))


def replace_block(name, text):
    """Rewrites the `name` block of bench/RESULTS.md, keeping the rest of the file."""
    out = ROOT / "bench" / "RESULTS.md"
    previous = out.read_text() if out.exists() else "# Benchmark results\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in previous and end in previous:
        before, rest = previous.split(start, 1)
        updated = before + block + rest.split(end, 1)[1]
    else:
        updated = previous.rstrip() + "\n\n" + block + "\n"
    out.write_text(updated)
    print(f"wrote the {name} block of {out}")


if __name__ == "__main__":
    sys.exit(main())
