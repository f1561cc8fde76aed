"""NVIDIA's tritonclient against a server of runner-onnx's examples, called as

    python tritonclient_onnx.py HTTP_ADDR GRPC_ADDR MODELS_DIR   # addresses as host:port

with the server serving onnx-iris, onnx-cnn and onnx-minilm from MODELS_DIR's iris.onnx,
cnn.onnx and minilm.onnx (and MiniLM's tokenizer.json), as scripts/export_onnx.py writes
them. Python's onnxruntime on the same files is the reference.

For each model: its V2 metadata over HTTP and gRPC (platform onnxruntime_onnx; the input
and output names and datatypes onnxruntime reports; free dimensions as -1); inputs built
from that metadata alone (batch 3; MiniLM's sequence from three tokenized sentences,
padded); inference over HTTP with JSON tensors, HTTP with binary tensors and gRPC, each
output equal to onnxruntime's (floats to 1e-5, integers exactly). Iris's probabilities
also equal a freshly fitted scikit-learn pipeline's (scripts/export_onnx.py's fit_iris)
to 1e-6. Tensors of a wrong shape or datatype get HTTP 400 and gRPC INVALID_ARGUMENT, with
the input's name in the message. Exits non-zero with the failed check's message."""

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tokenizers import Tokenizer
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"onnx-iris": "iris.onnx", "onnx-cnn": "cnn.onnx", "onnx-minilm": "minilm.onnx"}
# onnxruntime's type strings as V2 datatypes.
DATATYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16", "tensor(bfloat16)": "BF16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}
BATCH = 3
SENTENCES = ["Hi!", "A cat sits on the mat.", "Rust serves ONNX models over HTTP and gRPC, with the V2 protocol."]
TOLERANCE = 1e-5


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def signature(args):
    """(name, V2 datatype, shape with -1 for symbolic or unknown dims) of onnxruntime NodeArgs."""
    return [(a.name, DATATYPES[a.type], [d if isinstance(d, int) else -1 for d in a.shape]) for a in args]


def check_metadata(model, session):
    """The model's metadata over HTTP and gRPC against onnxruntime's; returns (inputs, outputs)."""
    want = ("onnxruntime_onnx", signature(session.get_inputs()), signature(session.get_outputs()))
    http = hclient.get_model_metadata(model)
    check(http["name"] == model, f"{model}: HTTP metadata names the model {http['name']!r}")
    got = (http["platform"], [(t["name"], t["datatype"], list(t["shape"])) for t in http["inputs"]],
           [(t["name"], t["datatype"], list(t["shape"])) for t in http["outputs"]])
    check(got == want, f"{model}: HTTP metadata is {got}, onnxruntime says {want}")
    grpc = gclient.get_model_metadata(model)
    check(grpc.name == model, f"{model}: gRPC metadata names the model {grpc.name!r}")
    got = (grpc.platform, [(t.name, t.datatype, list(t.shape)) for t in grpc.inputs],
           [(t.name, t.datatype, list(t.shape)) for t in grpc.outputs])
    check(got == want, f"{model}: gRPC metadata is {got}, onnxruntime says {want}")
    print(f"{model}: metadata {want}")
    return want[1], want[2]


def minilm_tokens(models_dir):
    tokenizer = Tokenizer.from_file(str(models_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    rows = tokenizer.encode_batch(SENTENCES)
    longest = max(len(r.ids) for r in rows)
    pad = lambda values: values + [0] * (longest - len(values))
    return {"input_ids": np.array([pad(r.ids) for r in rows], dtype=np.int64),
            "attention_mask": np.array([pad(r.attention_mask) for r in rows], dtype=np.int64),
            "token_type_ids": np.array([pad(r.type_ids) for r in rows], dtype=np.int64)}


def build_inputs(model, inputs, rng, tokens):
    """Arrays of the metadata's shapes (first -1: the batch, any later -1: the sequence)
    and datatypes: MiniLM's tokens, random values for the others."""
    arrays = {}
    for name, datatype, shape in inputs:
        dims = [d if d != -1 else (BATCH if i == 0 else tokens["input_ids"].shape[1]) for i, d in enumerate(shape)]
        if model == "onnx-minilm":
            array = tokens[name]
        elif model == "onnx-iris":
            array = rng.uniform(0.1, 7.9, dims)  # about Iris's range, in cm
        else:
            array = rng.standard_normal(dims)
        array = np.asarray(array, dtype=triton_to_np_dtype(datatype))
        check(list(array.shape) == dims, f"{model}: input {name} is {list(array.shape)}, metadata wants {dims}")
        arrays[name] = array
    return arrays


def http_infer(model, inputs, outputs, arrays, binary):
    tensors = []
    for name, datatype, _ in inputs:
        tensor = httpclient.InferInput(name, list(arrays[name].shape), datatype)
        tensor.set_data_from_numpy(arrays[name], binary_data=binary)
        tensors.append(tensor)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name, _, _ in outputs]
    try:
        answer = hclient.infer(model, tensors, outputs=wanted)
    except InferenceServerException as e:
        raise Failed(f"{model} over HTTP {'binary' if binary else 'JSON'}: {e.status()} {e.message()}") from None
    returned = [o["name"] for o in answer.get_response()["outputs"]]
    return returned, {name: answer.as_numpy(name) for name, _, _ in outputs}


def grpc_infer(model, inputs, outputs, arrays):
    tensors = []
    for name, datatype, _ in inputs:
        tensor = grpcclient.InferInput(name, list(arrays[name].shape), datatype)
        tensor.set_data_from_numpy(arrays[name])
        tensors.append(tensor)
    try:
        answer = gclient.infer(model, tensors)  # no outputs named: the server returns all of them
    except InferenceServerException as e:
        raise Failed(f"{model} over gRPC: {e.status()} {e.message()}") from None
    returned = [o.name for o in answer.get_response().outputs]
    return returned, {name: answer.as_numpy(name) for name, _, _ in outputs}


def compare(model, way, outputs, returned, got, want):
    names = [name for name, _, _ in outputs]
    check(sorted(returned) == sorted(names), f"{model} over {way}: the response has outputs {returned}, expected {names}")
    for name, datatype, _ in outputs:
        g, w = got[name], want[name]
        check(g is not None, f"{model} over {way}: no output {name}")
        check(g.dtype == w.dtype == triton_to_np_dtype(datatype),
              f"{model} over {way}: output {name} is {g.dtype}, onnxruntime gives {w.dtype} ({datatype})")
        check(g.shape == w.shape, f"{model} over {way}: output {name} has shape {g.shape}, onnxruntime gives {w.shape}")
        if np.issubdtype(w.dtype, np.floating):
            worst = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
            check(worst <= TOLERANCE, f"{model} over {way}: output {name} differs from onnxruntime by {worst}")
        else:
            check(np.array_equal(g, w), f"{model} over {way}: output {name} is {g.tolist()}, onnxruntime gives {w.tolist()}")


def expect_rejected(model, bad, array, datatype, what):
    """A request whose only input `bad` (Iris has one) is `array` declared as `datatype`:
    HTTP 400 and gRPC INVALID_ARGUMENT, each naming the input."""
    for binary in (False, True):
        way = "HTTP binary" if binary else "HTTP JSON"
        tensor = httpclient.InferInput(bad, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        try:
            hclient.infer(model, [tensor])
        except InferenceServerException as e:
            check(e.status() == "400", f"{model} over {way}, {what}: status {e.status()} ({e.message()}), expected 400")
            check(bad in e.message(), f"{model} over {way}, {what}: the error {e.message()!r} does not name {bad}")
            print(f"{model} over {way}, {what}: 400 {e.message()!r}")
        else:
            raise Failed(f"{model} over {way}: {what} was accepted")
    tensor = grpcclient.InferInput(bad, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    try:
        gclient.infer(model, [tensor])
    except InferenceServerException as e:
        check(e.status() == "StatusCode.INVALID_ARGUMENT",
              f"{model} over gRPC, {what}: status {e.status()} ({e.message()}), expected StatusCode.INVALID_ARGUMENT")
        check(bad in e.message(), f"{model} over gRPC, {what}: the error {e.message()!r} does not name {bad}")
        print(f"{model} over gRPC, {what}: INVALID_ARGUMENT {e.message()!r}")
    else:
        raise Failed(f"{model} over gRPC: {what} was accepted")


def fit_iris():
    """scripts/export_onnx.py's fit, imported by path (the script is not a package)."""
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "scripts" / "export_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fit_iris()


def wait_until_ready(seconds=120):
    """The server answers as soon as it listens, and is ready once its models are loaded."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if hclient.is_server_ready() and gclient.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        check(time.monotonic() < deadline, f"the server was not ready within {seconds} s")
        time.sleep(0.1)


def main(models_dir):
    wait_until_ready()
    rng = np.random.default_rng(7)
    tokens = minilm_tokens(models_dir)
    for model, file in MODELS.items():
        # All graph optimisations, as runner-onnx's sessions: MiniLM without the fusions differs
        # by up to 1e-5 (the thread count makes no difference).
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(models_dir / file), options, providers=["CPUExecutionProvider"])
        inputs, outputs = check_metadata(model, session)
        arrays = build_inputs(model, inputs, rng, tokens)
        want = dict(zip([name for name, _, _ in outputs], session.run(None, arrays)))
        results = {
            "HTTP JSON": http_infer(model, inputs, outputs, arrays, binary=False),
            "HTTP binary": http_infer(model, inputs, outputs, arrays, binary=True),
            "gRPC": grpc_infer(model, inputs, outputs, arrays),
        }
        for way, (returned, got) in results.items():
            compare(model, way, outputs, returned, got, want)
        shapes = {name: list(array.shape) for name, array in arrays.items()}
        print(f"{model}: HTTP JSON, HTTP binary and gRPC equal onnxruntime on inputs {shapes}")

        if model == "onnx-iris":
            pipeline = fit_iris()
            probabilities = pipeline.predict_proba(arrays["features"])
            labels = pipeline.predict(arrays["features"])
            for way, (_, got) in results.items():
                worst = float(np.max(np.abs(got["probabilities"].astype(np.float64) - probabilities)))
                check(worst <= 1e-6, f"{model} over {way}: probabilities differ from scikit-learn's predict_proba by {worst}")
                check(np.array_equal(got["label"], labels),
                      f"{model} over {way}: labels {got['label'].tolist()} differ from scikit-learn's {labels.tolist()}")
            print(f"{model}: probabilities and labels equal scikit-learn's (max abs diff {worst:.1e})")
            expect_rejected(model, "features", np.ones([BATCH, 5], np.float32), "FP32", "shape [3, 5]")
            # Integers widen to floats (runner-onnx casts where no value changes meaning), so the
            # wrong datatype is one that cannot: booleans.
            expect_rejected(model, "features", np.ones([BATCH, 4], np.bool_), "BOOL", "datatype BOOL")
    print("tritonclient on onnx-iris, onnx-cnn and onnx-minilm: all checks passed")


if __name__ == "__main__":
    http_addr, grpc_addr, models = sys.argv[1:4]
    hclient = httpclient.InferenceServerClient(url=http_addr)
    gclient = grpcclient.InferenceServerClient(url=grpc_addr)
    try:
        main(Path(models))
    except Failed as failure:
        sys.exit(f"tritonclient_onnx: FAILED: {failure}")
    except InferenceServerException as e:
        sys.exit(f"tritonclient_onnx: FAILED: the server answered {e.status()}: {e.message()}")
