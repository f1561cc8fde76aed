"""Runs the torch benchmark and rewrites the torch blocks of bench/RESULTS.md. Called by
bench/torch.sh (which builds the binaries and sets up libtorch)."""

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the serving benchmark's helpers: pinning, wrk, RESULTS.md blocks)
from run import ROOT, post, replace_block, start, stop, wrk  # noqa: E402

DURATION = int(os.environ.get("DURATION", "5"))
WARMUP = int(os.environ.get("WARMUP", "2"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONCURRENCY = [1, 32]
RELEASE = ROOT / "target" / "release"
VENV = ROOT / ".venv" / "bin"

MLP_ROW = [float((i * 7) % 17) for i in range(64)]
MLP_BODY = json.dumps([MLP_ROW])
# The same row through KServe V2: tensors as JSON, and as binary data both ways (the
# binary tensor extension, what tritonclient sends by default).
MLP_V2_JSON = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": MLP_ROW}]})
SENTENCE_BODY = json.dumps({"sentences": ["A man is playing a guitar on the stage tonight."]})


def mlp_v2_binary(work):
    """The binary request written to a file, and its headers."""
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    path = work / "mlp-v2-binary.bin"
    path.write_bytes(header + struct.pack("<64f", *MLP_ROW))
    return str(path), f"Inference-Header-Content-Length: {len(header)}\nContent-Type: application/octet-stream"


def wrk_file(url, body_file, headers, connections, seconds, latency=True):
    """`run.wrk` for a body read from a file (binary allowed) with extra headers."""
    return wrk(url, None, connections, seconds, latency, script="post_file.lua",
               env={"BODY_FILE": body_file, "HEADERS": headers})


def grpc_load(addr, request_file, mode, connections, seconds, latency=True):
    """`grpc-load` (bench/src/grpc_load.rs), pinned like wrk: the same result keys."""
    command = ["taskset", "-c", run.LOAD_CPU, str(RELEASE / "grpc-load"), addr, request_file, str(seconds),
               str(connections), mode]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def mlp_grpc_request(work):
    """The MLP row as a V2 request naming its model, for grpc-load."""
    path = work / "mlp-grpc.json"
    path.write_text(json.dumps({"model_name": "mlp", **json.loads(MLP_V2_JSON)}))
    return str(path)


def limit_loop(argv):
    """A limit that is a loop rather than a server: run pinned to SERVER_CPU for DURATION
    s (after its own warm-up); its `rps`."""
    output = subprocess.run(["taskset", "-c", run.SERVER_CPU, *argv(DURATION)], capture_output=True, text=True,
                            check=True, env=dict(os.environ, RUNNER_TORCH_THREADS="1")).stdout
    return {"rps": json.loads(output.strip().splitlines()[-1])["rps"], "p99": float("nan"), "errors": 0}


def uvicorn(app, port):
    return [str(VENV / "uvicorn"), "--app-dir", str(ROOT / "bench"), app, "--port", str(port),
            "--workers", "1", "--log-level", "warning", "--no-access-log"]


def serve(registry, model, *flags):
    return lambda port: [str(RELEASE / "serve"), "--registry", registry, "--addr", f"127.0.0.1:{port}", model, *flags]


def measure(systems, order, body):
    """Interleaved rounds per concurrency; returns {(name, c): [results]} and RSS. A
    system is (command, path), or (command, path, its own JSON body), or (command, path,
    a JSON body to check it answers, (a file of the body to load it with, headers)), or
    the same with ("grpc", address, request file, raw|typed) to load it over gRPC; or
    ("loop", argv) for a limit that is a loop in one process (see limit_loop)."""
    results, memory = {}, {}
    for connections in CONCURRENCY:
        for _ in range(ROUNDS):
            for name in order:
                if systems[name][0] == "loop":
                    results.setdefault((name, connections), []).append(limit_loop(systems[name][1]))
                    continue
                command, path, own, payload = (*systems[name], None, None)[:4]
                process, url, _ = start(command, path, own or body)
                if payload and payload[0] == "grpc":
                    load = lambda seconds, **kw: grpc_load(*payload[1:], connections, seconds, **kw)
                elif payload:
                    load = lambda seconds, **kw: wrk_file(url + path, *payload, connections, seconds, **kw)
                else:
                    load = lambda seconds, **kw: wrk(url + path, own or body, connections, seconds, **kw)
                try:
                    load(WARMUP, latency=False)
                    results.setdefault((name, connections), []).append(load(DURATION))
                    memory[name] = run.rss_mib(process.pid)[0]
                finally:
                    stop(process)
    return results, memory


def median(rounds, key):
    return statistics.median(r[key] for r in rounds)


def table(results, order, reference, unit, per_request=1):
    lines = [f"| system | c | {unit}/s (median) | p99 ms | vs {reference} (same-round median) | errors |",
             "|---|---|---|---|---|---|"]
    for connections in CONCURRENCY:
        base = results[(reference, connections)]
        for name in order:
            rounds = results[(name, connections)]
            ratio = statistics.median(r["rps"] / b["rps"] for r, b in zip(rounds, base))
            p99 = median(rounds, 'p99')
            lines.append(f"| {name} | {connections} | {median(rounds, 'rps') * per_request:,.0f} | "
                         f"{'-' if p99 != p99 else f'{p99:.2f}'} | {ratio:.2f}x | "
                         f"{sum(r['errors'] + r.get('socket_errors', 0) for r in rounds)} |")
    return lines


def env_note():
    return (f"Server pinned to CPU {run.SERVER_CPU}, `wrk -t1` to CPU {run.LOAD_CPU}; per row {WARMUP} s warm-up then "
            f"{ROUNDS} interleaved rounds of {DURATION} s (a fresh server each); one intra-op thread everywhere "
            "(`RUNNER_TORCH_THREADS=1`, `torch.set_num_threads(1)`).")


def mlp(work):
    module = str(work / "mlp.pt")
    registry = str(work / "registry")
    subprocess.run([str(RELEASE / "torch-bare"), "export", module], check=True)
    subprocess.run([str(RELEASE / "torch-bare"), "register", registry, module], check=True, stdout=subprocess.DEVNULL)
    os.environ["MLP_TORCHSCRIPT"] = module
    grpc_addr = f"127.0.0.1:{run.free_port()}"
    grpc_request = mlp_grpc_request(work)
    grpc = serve(registry, "mlp:latest", "--grpc-addr", grpc_addr)
    systems = {
        "bare axum + tch (limit)": (lambda port: [str(RELEASE / "torch-bare"), "serve", f"127.0.0.1:{port}", module], "/predict"),
        "runner serve": (serve(registry, "mlp:latest"), "/predict"),
        "runner serve, V2 JSON tensors": (serve(registry, "mlp:latest"), "/v2/models/mlp/infer", MLP_V2_JSON),
        "runner serve, V2 binary tensors": (serve(registry, "mlp:latest"), "/v2/models/mlp/infer", MLP_V2_JSON,
                                            mlp_v2_binary(work)),
        "runner serve, gRPC raw contents": (grpc, "/predict", MLP_BODY, ("grpc", grpc_addr, grpc_request, "raw")),
        "runner serve, gRPC typed contents": (grpc, "/predict", MLP_BODY, ("grpc", grpc_addr, grpc_request, "typed")),
        "runner serve, always the blocking pool": (serve(registry, "mlp:latest", "--inline-threshold-us", "0"), "/predict"),
        "runner serve, batching 32": (serve(registry, "mlp:latest", "--max-batch-size", "32", "--max-delay-ms", "1"), "/predict"),
        "FastAPI + torch": (lambda port: uvicorn("fastapi_torch_mlp:app", port), "/predict"),
    }
    order = list(systems)
    results, memory = measure(systems, order, MLP_BODY)
    lines = ["### TorchScript MLP (64 -> 256 -> 256 -> 10), one row per request", "",
             "`POST [[64 floats]]` answers `[[10 logits]]`; the V2 rows send the same row as a V2 request, its "
             "tensor as JSON or as binary data (input and output); the gRPC rows send it as a V2 `ModelInfer` "
             "over gRPC (HTTP/2), in `raw_input_contents` or typed `fp32_contents`, from `grpc-load` "
             "(bench/src/grpc_load.rs: one thread, one connection per concurrent request, like `wrk -t1`). "
             "Triton itself is not run: it is not installable here (no PyPI package, no container registry). "
             + env_note(), ""]
    lines += table(results, order, "bare axum + tch (limit)", "req")
    lines += ["", "RSS after the run (MiB): " + ", ".join(f"{n} {m:.0f}" for n, m in memory.items())]
    replace_block("torch-mlp", "\n".join(lines))


def minilm(work):
    registry = str(work / "registry-minilm")
    subprocess.run([str(RELEASE / "register"), "--registry", registry, "minilm"], check=True, stdout=subprocess.DEVNULL)
    os.environ["TORCH_THREADS"] = "1"
    sentence = json.loads(SENTENCE_BODY)["sentences"][0]
    systems = {
        "bare tch loop (limit)": ("loop", lambda seconds: [str(RELEASE / "torch-bare"), "minilm", str(seconds), sentence]),
        "runner serve": (serve(registry, "minilm:latest"), "/predict"),
        "runner serve, batching 32": (serve(registry, "minilm:latest", "--max-batch-size", "32", "--max-delay-ms", "5"), "/predict"),
        "FastAPI + sentence-transformers": (lambda port: uvicorn("fastapi_minilm:app", port), "/predict"),
    }
    order = list(systems)
    # Same embeddings from both servers, for the sentences of the reference.
    reference = json.loads((ROOT / "examples" / "data" / "minilm" / "reference.json").read_text())
    body = json.dumps({"sentences": reference["sentences"]})
    answers = {}
    for name in ["runner serve", "FastAPI + sentence-transformers"]:
        process, url, _ = start(systems[name][0], "/predict", SENTENCE_BODY)
        try:
            answers[name] = json.loads(post(url + "/predict", body, timeout=60)[1])["embeddings"]
        finally:
            stop(process)
    difference = max(abs(a - b) for x, y in zip(*answers.values()) for a, b in zip(x, y))
    results, memory = measure(systems, order, SENTENCE_BODY)
    lines = ["### all-MiniLM-L6-v2 sentence embeddings, one sentence per request", "",
             "`POST {\"sentences\": [one 10-word sentence]}` answers its normalised embedding. The limit is no "
             "server: one thread tokenizing, running the module and pooling in a loop (`torch-bare minilm`), pinned "
             "to the server's CPU; its p99 is not measured. " + env_note(), "",
             f"Embeddings of the 13 reference sentences, ours vs sentence-transformers: max abs difference {difference:.1e}.", ""]
    lines += table(results, order, "bare tch loop (limit)", "sentences")
    lines += ["", "RSS after the run (MiB): " + ", ".join(f"{n} {m:.0f}" for n, m in memory.items())]
    replace_block("torch-minilm", "\n".join(lines))


def main():
    work = Path(tempfile.mkdtemp())
    which = sys.argv[1:] or ["mlp", "minilm"]
    if "mlp" in which:
        mlp(work)
    if "minilm" in which:
        minilm(work)


if __name__ == "__main__":
    sys.exit(main())
