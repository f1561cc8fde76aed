"""NVIDIA's tritonclient against `serve digits:latest minilm:latest --grpc-addr ...`: called
by tests/serve.rs with the HTTP address, the gRPC address and MiniLM's tokenizer.json.

For both models, four ways in: HTTP with JSON tensors, HTTP with binary tensors (both
ways), gRPC with raw contents (tritonclient's default) and gRPC with typed contents
(through the generated stub). All four must give the same outputs to 1e-6, and the same
as the model's own /predict (softmax of the digits' logits; MiniLM's pooled, normalised
token embeddings). Exits non-zero with the failed check's message."""

import json
import sys
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tokenizers import Tokenizer
from tritonclient.grpc import service_pb2, service_pb2_grpc

http_url, grpc_url, tokenizer_path = sys.argv[1:4]
hclient = httpclient.InferenceServerClient(url=http_url)
gclient = grpcclient.InferenceServerClient(url=grpc_url)
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_url))
TYPED = {"FP32": "fp32_contents", "INT64": "int64_contents"}
NUMPY = {"FP32": np.float32, "INT64": np.int64}


def predict(model, body):
    request = urllib.request.Request(f"http://{http_url}/models/{model}/predict", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def every_way(model, arrays):
    """The model's outputs, by name, from each of the four ways in."""
    metadata = hclient.get_model_metadata(model)
    assert gclient.get_model_metadata(model, as_json=True)["platform"] == metadata["platform"] == "pytorch_torchscript", metadata
    names = [o["name"] for o in metadata["outputs"]]
    results = {}
    for binary in (False, True):
        tensors = []
        for spec in metadata["inputs"]:
            tensor = httpclient.InferInput(spec["name"], list(arrays[spec["name"]].shape), spec["datatype"])
            tensor.set_data_from_numpy(arrays[spec["name"]], binary_data=binary)
            tensors.append(tensor)
        wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
        answer = hclient.infer(model, tensors, outputs=wanted)
        results["http binary" if binary else "http json"] = {n: answer.as_numpy(n) for n in names}
    tensors = []
    for spec in metadata["inputs"]:
        tensor = grpcclient.InferInput(spec["name"], list(arrays[spec["name"]].shape), spec["datatype"])
        tensor.set_data_from_numpy(arrays[spec["name"]])
        tensors.append(tensor)
    answer = gclient.infer(model, tensors)
    results["grpc raw"] = {n: answer.as_numpy(n) for n in names}
    request = service_pb2.ModelInferRequest(model_name=model)
    for spec in metadata["inputs"]:
        array = arrays[spec["name"]]
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=list(array.shape))
        getattr(tensor.contents, TYPED[spec["datatype"]]).extend(array.ravel().tolist())
    answer = stub.ModelInfer(request)
    typed = {}
    for i, output in enumerate(answer.outputs):
        typed[output.name] = np.frombuffer(answer.raw_output_contents[i], dtype=NUMPY[output.datatype]).reshape(list(output.shape))
    results["grpc typed"] = typed
    first = results["http json"]
    for way, outputs in results.items():
        for name in names:
            got, want = outputs[name], first[name]
            assert got.shape == want.shape and got.dtype == want.dtype, (model, way, name, got.shape, want.shape, got.dtype)
            worst = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
            assert worst <= 1e-6, (model, way, name, worst)
    return first


# Digits: five 8x8 images (the data set's first, a 0, and four of random pixels).
rng = np.random.default_rng(11)
zero = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5,
        8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
images = np.vstack([np.array(zero), rng.integers(0, 17, (4, 64))]).astype(np.float32)
logits = every_way("digits", {"pixels": images / 16})["logits"]
assert logits.shape == (5, 10) and int(np.argmax(logits[0])) == 0, logits
own = predict("digits", {"images": images.tolist()})
exp = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
softmax = exp / exp.sum(axis=1, keepdims=True)
assert np.max(np.abs(softmax - np.array(own["probabilities"]))) <= 1e-6, (softmax, own["probabilities"])
assert own["digits"] == np.argmax(logits, axis=1).tolist(), own["digits"]

# MiniLM: three sentences, tokenized as the runner does (no padding or cutting by the
# file's settings; padded with 0 to the longest).
sentences = ["A cat sits on the mat.", "Rust serves models over gRPC.", "A cat is sitting."]
tokenizer = Tokenizer.from_file(tokenizer_path)
tokenizer.no_padding()
tokenizer.no_truncation()
rows = [tokenizer.encode(s).ids for s in sentences]
longest = max(len(r) for r in rows)
ids = np.array([r + [0] * (longest - len(r)) for r in rows], dtype=np.int64)
mask = np.array([[1] * len(r) + [0] * (longest - len(r)) for r in rows], dtype=np.int64)
outputs = every_way("minilm", {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
tokens = outputs["token_embeddings"].astype(np.float64)
assert tokens.shape == (3, longest, 384), tokens.shape
assert np.array_equal(outputs["attention_mask"], mask)
weights = mask[:, :, None].astype(np.float64)
mean = (tokens * weights).sum(axis=1) / weights.sum(axis=1)
pooled = mean / np.linalg.norm(mean, axis=1, keepdims=True)
own = np.array(predict("minilm", {"sentences": sentences})["embeddings"])
worst = float(np.max(np.abs(pooled - own)))
assert worst <= 1e-6, worst
print(f"tritonclient on digits and MiniLM: all checks passed (MiniLM pooled vs /predict: {worst:.1e})")
