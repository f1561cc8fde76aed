"""The hot swap benchmark (bench/swap.sh): p99 latency and failed requests of `serve
iris:prod` under load while the alias moves, against the same load with the alias still."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the serving benchmark's helpers: start, stop, wrk, replace_block)

ROOT = run.ROOT
RELEASE = ROOT / "target" / "release"
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SWAPS = int(os.environ.get("SWAPS", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
FOLLOW_MS = 100


def alias(registry, number):
    subprocess.run([str(RELEASE / "runner-registry"), "alias", "set", "iris", "prod", str(number), "--registry", registry],
                   check=True, stdout=subprocess.DEVNULL)


def served(url):
    with urllib.request.urlopen(url + "/models/iris", timeout=2) as response:
        return json.load(response)["number"]


def wrk(url, seconds):
    """wrk -c CONNECTIONS for `seconds`: requests/s, p50 and p99 (ms), failures of any kind."""
    result = run.wrk(url + "/predict", run.W2_BODY, CONNECTIONS, seconds)
    return dict(result, failed=result["errors"] + result["socket_errors"])


def mover(registry, url, numbers, seconds, swapped_ms):
    """Moves the alias SWAPS times, evenly over `seconds`; records move -> served ms."""
    gap = seconds / (SWAPS + 1)
    for i in range(SWAPS):
        time.sleep(gap)
        target = numbers[(i + 1) % 2]
        moved = time.perf_counter()
        alias(registry, target)
        while served(url) != target:
            time.sleep(0.005)
        swapped_ms.append((time.perf_counter() - moved) * 1000)
    # Back where it started, so every window begins alike.
    if SWAPS % 2:
        alias(registry, numbers[0])
        while served(url) != numbers[0]:
            time.sleep(0.002)


def main():
    # This script (polling, `alias set`) runs beside wrk, off the server's core.
    os.sched_setaffinity(0, {int(run.LOAD_CPU)})
    registry = str(Path(tempfile.mkdtemp()) / "registry")
    for _ in range(2):
        subprocess.run([str(RELEASE / "register"), "--registry", registry], check=True, stdout=subprocess.DEVNULL)
    numbers = [1, 2]
    alias(registry, numbers[0])
    command = lambda port: [str(RELEASE / "serve"), "--registry", registry, "--addr", f"127.0.0.1:{port}",
                            "--follow-interval-ms", str(FOLLOW_MS), "iris:prod"]
    process, url, _ = run.start(command, "/predict", run.W2_BODY)
    rows = {"steady": [], "swapping": []}
    swapped_ms = []
    try:
        wrk(url, 3)
        for _ in range(ROUNDS):
            rows["steady"].append(wrk(url, DURATION))
            thread = threading.Thread(target=mover, args=(registry, url, numbers, DURATION, swapped_ms))
            thread.start()
            rows["swapping"].append(wrk(url, DURATION))
            thread.join()
        models = json.load(urllib.request.urlopen(url + "/models/iris"))
    finally:
        run.stop(process)
    write(rows, swapped_ms, models["follows"]["swaps"])


def write(rows, swapped_ms, swaps):
    load_ms = statistics.median(s["load_ms"] for s in swaps)
    median = lambda name, key: statistics.median(r[key] for r in rows[name])
    ratio = statistics.median(s["p99"] / q["p99"] for s, q in zip(rows["swapping"], rows["steady"]))
    lines = [
        "## Hot swap (`bench/swap.sh`)",
        "",
        f"`serve iris:prod` (the Iris classifier, `--follow-interval-ms {FOLLOW_MS}`) pinned to CPU 0, "
        f"`wrk -t1 -c{CONNECTIONS}` pinned to CPU 1. Each of {ROUNDS} rounds runs {DURATION} s of load with the alias "
        f"still, then {DURATION} s while `runner-registry alias set` moves it {SWAPS} times between two models "
        "(each move: the server notices, loads the other model in the background, swaps it in, drains and frees the "
        "old one). Medians of the rounds; the ratio is the median of same-round ratios. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| window | req/s | p50 ms | p99 ms | failed requests |",
        "|---|---|---|---|---|",
    ]
    for name in ["steady", "swapping"]:
        failed = sum(r["failed"] for r in rows[name])
        lines.append(f"| {name} | {median(name, 'rps'):,.0f} | {median(name, 'p50'):.3f} | {median(name, 'p99'):.3f} | {failed} |")
    lines += [
        "",
        f"p99 while swapping: {ratio:.2f}x steady (target < 2x). Swaps done: {len(swaps)}, loading each in a "
        f"median {load_ms:.0f} ms; from `alias set` returning to the new model answering: median "
        f"{statistics.median(swapped_ms):.0f} ms, max {max(swapped_ms):.0f} ms (the follow interval is {FOLLOW_MS} ms).",
    ]
    print("\n".join(lines))
    run.replace_block("swap", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
