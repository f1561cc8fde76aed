"""Runs the ONNX benchmark and rewrites the onnx block of bench/RESULTS.md. Called by
bench/onnx.sh (which builds the binaries, sets up ONNX Runtime and the Python peers).

Three graphs of examples/models/onnx (scripts/export_onnx.py) served by our `serve`
(registered by `register` as onnx-iris, onnx-minilm and onnx-cnn), against the limits
of bench/src/onnx_bare.rs (a bare axum + ort handler, and an ort loop with no server) and
FastAPI + Python onnxruntime (bench/fastapi_onnx.py), and BentoML when it is installed
(bench/bentoml_onnx.py in bench/out/bentoml-venv). Pinned and interleaved as the torch
benchmark (bench/torch_run.py): server on CPU 0, load on CPU 1, a fresh server per round.
`python bench/onnx_run.py [iris] [minilm] [cnn]` runs some of the three (default all)."""

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the serving benchmark's helpers: pinning, wrk, RESULTS.md blocks)
from run import ROOT, free_port, replace_block, stop, wrk  # noqa: E402

DURATION = int(os.environ.get("DURATION", "5"))
WARMUP = int(os.environ.get("WARMUP", "2"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
RELEASE = ROOT / "target" / "release"
VENV = ROOT / "bench" / ".venv" / "bin"
BENTOML = ROOT / "bench" / "out" / "bentoml-venv" / "bin" / "bentoml"
MODELS = ROOT / "examples" / "models" / "onnx"
# One intra-op thread everywhere (serve, onnx-bare); FastAPI sets its own in the app.
os.environ["RUNNER_ONNX_THREADS"] = "1"
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

IRIS_BODY = json.dumps({"features": [[5.1, 3.5, 1.4, 0.2]]})
SENTENCE = "A man is playing a guitar on the stage tonight."
SENTENCE_BODY = json.dumps({"sentences": [SENTENCE]})
IMAGE_SHAPE = [1, 3, 224, 224]
IMAGE = [((i * 7) % 255) / 255.0 for i in range(3 * 224 * 224)]
IMAGE_BYTES = struct.pack(f"<{len(IMAGE)}f", *IMAGE)
JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


def request(url, data, headers, timeout=10.0):
    """POST `data` (bytes); the status and the body."""
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as response:
        return response.status, response.read()


class Load:
    """What a system is loaded with: a body (bytes) and its headers, POSTed by `wrk -t1`
    from a file (post_file.lua: bodies of any size, binary ones too); or, with `grpc`
    (address, request file), V2 ModelInfer over gRPC by grpc-load, raw contents. The
    HTTP request also tells when a server is up (the first 200)."""

    def __init__(self, work, name, body, headers, grpc=None):
        self.body, self.headers, self.grpc = body, headers, grpc
        self.file = work / f"{name}.body"
        self.file.write_bytes(body)

    def run(self, url, connections, seconds, latency=True):
        if self.grpc:
            command = ["taskset", "-c", run.LOAD_CPU, str(RELEASE / "grpc-load"), self.grpc[0], self.grpc[1],
                       str(seconds), str(connections), "raw"]
            return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return wrk(url, None, connections, seconds, latency, script="post_file.lua",
                   env={"BODY_FILE": str(self.file), "HEADERS": headers})


def start(command, url_path, load):
    """Starts a server pinned to SERVER_CPU; returns (process, url) at its first 200."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(["taskset", "-c", run.SERVER_CPU] + command(port), env=dict(os.environ, RUST_LOG="warn"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}{url_path}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{command(port)} exited with {process.returncode}")
        try:
            if request(url, load.body, load.headers, timeout=2)[0] == 200:
                return process, url
        except OSError:
            pass
        if time.perf_counter() - started > 120:
            stop(process)
            raise SystemExit(f"{command(port)} never answered {url}")
        time.sleep(0.01)


def tree_rss_mib(pid):
    """RSS and peak RSS (VmHWM) in MiB of a process and its descendants (BentoML serves
    from child processes; the others are one process)."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    rss = peak = 0.0
    for p in pids:
        try:
            now, high = run.rss_mib(p)
        except OSError:
            continue
        rss, peak = rss + now, peak + high
    return rss, peak


def stop_tree(process):
    """Stops a server and anything it started (its own session)."""
    try:
        os.killpg(process.pid, 15)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def limit_loop(model, seconds):
    """The ort loop of onnx-bare (no server), pinned to SERVER_CPU; its `rps`."""
    command = ["taskset", "-c", run.SERVER_CPU, str(RELEASE / "onnx-bare"), "loop", model, str(seconds), str(MODELS)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {"rps": json.loads(output.strip().splitlines()[-1])["rps"], "p99": float("nan"), "errors": 0}


def measure(systems, concurrency):
    """Interleaved rounds per concurrency, a fresh server each; returns {(name, c): [results]},
    each result with the server's RSS and peak RSS after its run. A system is
    (command, url path, Load), or ("loop", model)."""
    results = {}
    for connections in concurrency:
        for _ in range(ROUNDS):
            for name, system in systems.items():
                if system[0] == "loop":
                    results.setdefault((name, connections), []).append(limit_loop(system[1], DURATION))
                    continue
                command, path, load = system
                process, url = start(command, path, load)
                try:
                    load.run(url, connections, WARMUP, latency=False)
                    result = load.run(url, connections, DURATION)
                    result["rss"], result["peak"] = tree_rss_mib(process.pid)
                    results.setdefault((name, connections), []).append(result)
                finally:
                    stop_tree(process)
                print(f"{name} c={connections}: {result['rps']:.0f}/s p99 {result.get('p99', float('nan')):.2f} ms",
                      flush=True)
    return results


def ratio(results, name, reference, connections):
    """The median of same-round ratios of `name` to `reference`."""
    return statistics.median(r["rps"] / b["rps"] for r, b in
                             zip(results[(name, connections)], results[(reference, connections)]))


def table(results, systems, concurrency, reference):
    lines = [f"| system | c | req/s (median) | p99 ms | vs {reference} | errors | RSS after, MiB | peak RSS, MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for connections in concurrency:
        for name in systems:
            rounds = results[(name, connections)]
            p99 = statistics.median(r["p99"] for r in rounds)
            memory = [statistics.median(r[k] for r in rounds) if "rss" in rounds[0] else None for k in ("rss", "peak")]
            lines.append(f"| {name} | {connections} | {statistics.median(r['rps'] for r in rounds):,.0f} | "
                         f"{'-' if p99 != p99 else f'{p99:.2f}'} | {ratio(results, name, reference, connections):.2f}x | "
                         f"{sum(r['errors'] + r.get('socket_errors', 0) for r in rounds)} | "
                         + " | ".join('-' if m is None else f"{m:.0f}" for m in memory) + " |")
    return lines


def env_note(concurrency):
    return (f"Server pinned to CPU {run.SERVER_CPU}, the load (`wrk -t1`, or `grpc-load`: one thread, one HTTP/2 "
            f"connection per concurrent request) to CPU {run.LOAD_CPU}; c = {' and '.join(map(str, concurrency))} "
            f"connections; per row and round {WARMUP} s warm-up then {DURATION} s measured, {ROUNDS} interleaved "
            "round(s), a fresh server each; medians of the rounds, ratios the medians of same-round ratios; the ort "
            "loop runs in every round too (it has no connections: its rows at each c repeat the same measurement, "
            "with no p99). One "
            "intra-op thread everywhere (`RUNNER_ONNX_THREADS=1`, `intra_op_num_threads = 1`); `serve` and onnx-bare "
            "hold one session (`RUNNER_ONNX_SESSIONS` defaults to the cores the process may use: 1 when pinned).")


def serve(registry, model, *flags):
    return lambda port: [str(RELEASE / "serve"), "--registry", registry, "--addr", f"127.0.0.1:{port}", model, *flags]


def bare(model):
    return lambda port: [str(RELEASE / "onnx-bare"), "serve", model, f"127.0.0.1:{port}", str(MODELS)]


def fastapi(model):
    return lambda port: ["env", f"ONNX_MODEL={model}", str(VENV / "uvicorn"), "--app-dir", str(ROOT / "bench"),
                         "fastapi_onnx:app", "--port", str(port), "--workers", "1", "--log-level", "warning",
                         "--no-access-log"]


def bentoml(service):
    return lambda port: [str(BENTOML), "serve", f"bentoml_onnx:{service}", "--working-dir", str(ROOT / "bench"),
                         "--port", str(port), "--host", "127.0.0.1"]


def bentoml_note():
    if BENTOML.exists():
        return ("BentoML 1.4 (bench/bentoml_onnx.py: `bentoml serve`, one worker, onnxruntime with one intra-op "
                "thread) is the second peer; its RSS is that of its supervisor and worker processes together.")
    return ("BentoML is not run: `pip install bentoml` into bench/out/bentoml-venv did not succeed here "
            "(bench/onnx.sh tries it for at most 2 minutes).")


def iris(work, registry):
    load = Load(work, "iris", IRIS_BODY.encode(), JSON)
    systems = {
        "ort loop, no server (reference)": ("loop", "iris"),
        "bare axum + ort (limit)": (bare("iris"), "/predict", load),
        "runner serve": (serve(registry, "onnx-iris:latest"), "/predict", load),
        "runner serve, batching 32": (serve(registry, "onnx-iris:latest", "--max-batch-size", "32", "--max-delay-ms", "1"),
                                      "/predict", load),
        "FastAPI + onnxruntime": (fastapi("iris"), "/predict", load),
    }
    if BENTOML.exists():
        systems["BentoML + onnxruntime"] = (bentoml("Iris"), "/predict", load)
    answers = {}
    for name in [n for n in systems if systems[n][0] != "loop" and "batching" not in n]:
        process, url = start(*systems[name])
        try:
            answers[name] = json.loads(request(url, load.body, load.headers)[1])
        finally:
            stop_tree(process)
    difference = max(abs(a - b) for x in answers.values() for y in answers.values()
                     for a, b in zip(x["probabilities"][0], y["probabilities"][0]))
    labels = sorted({a["label"][0] for a in answers.values()})
    results = measure(systems, [1, 32])
    lines = ["### Iris (skl2onnx: scaler + logistic regression), one row per request, JSON", "",
             f"`POST {IRIS_BODY}` answers `{{\"label\": [0], \"probabilities\": [[3 floats]]}}` (runner-onnx's "
             "generic JSON for `onnx-iris`; the same JSON from the bare handler and the peers). The limit is the bare "
             "axum + ort handler (`onnx-bare serve iris`); the ort loop (`onnx-bare loop iris`: the tensor made, the "
             "session run, both outputs read) shows what one core does with no HTTP at all. " + bentoml_note() + " "
             + env_note([1, 32]), "",
             f"Answers of {'; '.join(answers)}: label {' / '.join(map(str, labels))}, probabilities within "
             f"{difference:.1e}.", ""]
    lines += table(results, systems, [1, 32], "bare axum + ort (limit)")
    lines += ["", "Batching 32 against unbatched serve at c=32 (same-round median): "
              f"{ratio(results, 'runner serve, batching 32', 'runner serve', 32):.2f}x."]
    return lines


def minilm(work, registry):
    load = Load(work, "minilm", SENTENCE_BODY.encode(), JSON)
    systems = {
        "ort loop, no server (reference)": ("loop", "minilm"),
        "bare axum + ort (limit)": (bare("minilm"), "/predict", load),
        "runner serve": (serve(registry, "onnx-minilm:latest"), "/predict", load),
        "runner serve, batching 32": (serve(registry, "onnx-minilm:latest", "--max-batch-size", "32",
                                            "--max-delay-ms", "5"), "/predict", load),
        "FastAPI + onnxruntime": (fastapi("minilm"), "/predict", load),
    }
    if BENTOML.exists():
        systems["BentoML + onnxruntime"] = (bentoml("MiniLm"), "/predict", load)
    # The same embeddings from every server, for the sentences of the torch reference.
    reference = json.loads((ROOT / "examples" / "data" / "minilm" / "reference.json").read_text())
    body = json.dumps({"sentences": reference["sentences"]}).encode()
    answers = {}
    for name in [n for n in systems if systems[n][0] != "loop" and "batching" not in n]:
        process, url = start(*systems[name])
        try:
            answers[name] = json.loads(request(url, body, JSON, timeout=60)[1])["embeddings"]
        finally:
            stop_tree(process)
    ours = answers["runner serve"]
    difference = {name: max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y))
                  for name, theirs in answers.items() if name != "runner serve"}
    results = measure(systems, [1, 32])
    lines = ["### all-MiniLM-L6-v2 (ONNX) sentence embeddings, one sentence per request", "",
             f"`POST {SENTENCE_BODY}` answers `{{\"embeddings\": [[384 floats]]}}`: tokenized (the `tokenizers` "
             "crate in serve's `onnx-minilm` runner and in the bare handler, the `tokenizers` package in Python), "
             "the graph run, the token embeddings mean-pooled and normalised. The limit is the bare axum + ort "
             "handler (`onnx-bare serve minilm`); the ort loop (`onnx-bare loop minilm`) tokenizes, runs and pools "
             "with no HTTP. " + bentoml_note() + " " + env_note([1, 32]), "",
             f"Embeddings of the {len(ours)} reference sentences (examples/data/minilm/reference.json), serve vs "
             + "; ".join(f"{name}: max abs difference {d:.1e}" for name, d in difference.items()) + ".", ""]
    lines += table(results, systems, [1, 32], "bare axum + ort (limit)")
    lines += ["", "Batching 32 against unbatched serve at c=32 (same-round median): "
              f"{ratio(results, 'runner serve, batching 32', 'runner serve', 32):.2f}x."]
    return lines


def cnn(work, registry):
    v2_json = {"inputs": [{"name": "image", "shape": IMAGE_SHAPE, "datatype": "FP32", "data": IMAGE}]}
    header = json.dumps({"inputs": [{"name": "image", "shape": IMAGE_SHAPE, "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(IMAGE_BYTES)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    grpc_addr = f"127.0.0.1:{free_port()}"
    grpc_request = work / "cnn-grpc.json"
    grpc_request.write_text(json.dumps({"model_name": "onnx-cnn", **v2_json}))
    raw = Load(work, "cnn-raw", IMAGE_BYTES, OCTETS)
    as_json = Load(work, "cnn-v2-json", json.dumps(v2_json).encode(), JSON)
    binary = Load(work, "cnn-v2-binary", header + IMAGE_BYTES,
                  {"Inference-Header-Content-Length": str(len(header)), **OCTETS})
    grpc = Load(work, "cnn-grpc", json.dumps(v2_json).encode(), JSON, grpc=(grpc_addr, str(grpc_request)))
    infer = "/v2/models/onnx-cnn/infer"
    systems = {
        "ort loop, no server (reference)": ("loop", "cnn"),
        "bare axum + ort, raw bytes (limit)": (bare("cnn"), "/predict", raw),
        "runner serve, V2 JSON tensors": (serve(registry, "onnx-cnn:latest"), infer, as_json),
        "runner serve, V2 binary tensors": (serve(registry, "onnx-cnn:latest"), infer, binary),
        "runner serve, gRPC raw contents": (serve(registry, "onnx-cnn:latest", "--grpc-addr", grpc_addr), infer, grpc),
        "FastAPI + onnxruntime, raw bytes": (fastapi("cnn"), "/predict", raw),
    }
    if BENTOML.exists():
        systems["BentoML + onnxruntime, raw bytes"] = (bentoml("Cnn"), "/predict", raw)
    # The logits of serve (V2 JSON), the bare handler and FastAPI (raw) agree.
    logits = {}
    for name in [n for n in systems if "V2 JSON" in n or "raw bytes" in n]:
        process, url = start(*systems[name])
        try:
            body = request(url, systems[name][2].body, systems[name][2].headers)[1]
        finally:
            stop_tree(process)
        logits[name] = json.loads(body)["outputs"][0]["data"] if name.startswith("runner") else \
            list(struct.unpack("<10f", body))
    difference = max(abs(a - b) for x in logits.values() for y in logits.values() for a, b in zip(x, y))
    results = measure(systems, [1, 8])
    lines = ["### Small CNN (2 conv layers, 10 classes) on one 3x224x224 image per request", "",
             f"One `[1, 3, 224, 224]` FP32 image ({len(IMAGE_BYTES):,} bytes raw) per request. serve (`onnx-cnn`, "
             "runner-onnx's generic runner) takes it as a KServe V2 request: its tensor as JSON "
             f"({len(as_json.body):,} bytes), as binary data (input and output), or as gRPC `ModelInfer` with "
             "`raw_input_contents` (from `grpc-load`, bench/src/grpc_load.rs); the limit, the bare axum + ort "
             "handler (`onnx-bare serve cnn`), and the Python peers take the raw f32 bytes "
             "(`application/octet-stream`) and answer the 10 logits' raw bytes. " + bentoml_note() + " "
             + env_note([1, 8]), "",
             f"Logits of {'; '.join(logits)} agree within {difference:.1e}.", ""]
    lines += table(results, systems, [1, 8], "bare axum + ort, raw bytes (limit)")
    lines += [""] + [f"At c={c}: V2 binary / V2 JSON {ratio(results, 'runner serve, V2 binary tensors', 'runner serve, V2 JSON tensors', c):.2f}x, "
                     f"gRPC raw / V2 JSON {ratio(results, 'runner serve, gRPC raw contents', 'runner serve, V2 JSON tensors', c):.2f}x."
                     for c in [1, 8]]
    return lines


def main():
    work = Path(tempfile.mkdtemp())
    registry = str(work / "registry")
    subprocess.run([str(RELEASE / "register"), "--registry", registry, "onnx-iris", "onnx-minilm", "onnx-cnn"],
                   check=True, stdout=subprocess.DEVNULL)
    which = sys.argv[1:] or ["iris", "minilm", "cnn"]
    sections = {"iris": iris, "minilm": minilm, "cnn": cnn}
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    lines = ["## ONNX (`bench/onnx.sh`)", "",
             f"ONNX Runtime 1.31.1 (the PyPI wheel's library, loaded by `ort` 2.0.0-rc.15 in serve and onnx-bare; "
             f"its Python API in the peers). Machine: {cpu}, {os.cpu_count()} CPUs. Date: {time.strftime('%Y-%m-%d')}."]
    for name in which:
        lines += [""] + sections[name](work, registry)
    replace_block("onnx", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
