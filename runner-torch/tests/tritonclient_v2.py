"""NVIDIA's tritonclient (HTTP and gRPC) against `serve`: called by tests/torch.rs with the
server's HTTP and gRPC addresses. Over HTTP: JSON and binary tensors (its default) both
ways; over gRPC: raw contents (its default) and typed contents; all against the expected
outputs and each other, bit for bit. Also metadata, readiness, errors, and a JSON runner
through one BYTES element, over both. Exits non-zero with the failed check's message."""

import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

url, grpc_url, inputs, outputs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = httpclient.InferenceServerClient(url=url)

assert client.is_server_live() and client.is_server_ready()
assert client.is_model_ready("linear")
metadata = client.get_model_metadata("linear")
assert metadata["inputs"][0]["datatype"] == "FP32", metadata
assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

# y = x W + b with W[i][j] = i - j, b[j] = j
rng = np.random.default_rng(7)
x = rng.standard_normal((3, inputs)).astype(np.float32)
w = np.array([[i - j for j in range(outputs)] for i in range(inputs)], dtype=np.float32)
expected = x @ w + np.arange(outputs, dtype=np.float32)
name_in, name_out = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]


def infer(binary_in, binary_out):
    tensor = httpclient.InferInput(name_in, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    wanted = httpclient.InferRequestedOutput(name_out, binary_data=binary_out)
    return client.infer("linear", [tensor], outputs=[wanted]).as_numpy(name_out)


results = {}
for binary_in in (False, True):
    for binary_out in (False, True):
        y = infer(binary_in, binary_out)
        assert y.shape == expected.shape and y.dtype == np.float32, (y.shape, y.dtype)
        assert np.allclose(y, expected, rtol=1e-6, atol=1e-5), (binary_in, binary_out, y, expected)
        results[(binary_in, binary_out)] = y
# The same bytes whichever way they travel.
for y in results.values():
    assert np.array_equal(y, results[(False, False)])

# The client's defaults: binary in, and every output binary when none is named.
tensor = httpclient.InferInput(name_in, list(x.shape), "FP32")
tensor.set_data_from_numpy(x)
assert np.array_equal(client.infer("linear", [tensor]).as_numpy(name_out), results[(True, True)])


def refused(call, *needles):
    try:
        call()
    except InferenceServerException as e:
        text = str(e)
        assert all(n in text for n in needles), (text, needles)
        return text
    raise AssertionError(f"no error, expected one naming {needles}")


# Numbers of another width are converted (FP64 in, the FP32 model's answer out)...
wider = httpclient.InferInput(name_in, list(x.shape), "FP64")
wider.set_data_from_numpy(x.astype(np.float64))
assert np.allclose(client.infer("linear", [wider]).as_numpy(name_out), expected, rtol=1e-6, atol=1e-5)
# ...but not booleans, nor another shape; both errors name the input and what it needs.
for binary in (False, True):
    wrong_type = httpclient.InferInput(name_in, list(x.shape), "BOOL")
    wrong_type.set_data_from_numpy(x > 0, binary_data=binary)
    refused(lambda: client.infer("linear", [wrong_type]), f"input `{name_in}` is bool")
    wrong_shape = httpclient.InferInput(name_in, [3, inputs + 1], "FP32")
    wrong_shape.set_data_from_numpy(rng.standard_normal((3, inputs + 1)).astype(np.float32), binary_data=binary)
    refused(lambda: client.infer("linear", [wrong_shape]), f"input `{name_in}` has shape [3, {inputs + 1}]", f"[-1, {inputs}]")
# A binary size that does not add up is refused by the server, and it keeps serving.
raw = httpclient.InferInput(name_in, [3, inputs], "FP32")
raw.set_data_from_numpy(x)
raw._raw_data = raw._raw_data[:-4]
raw._parameters["binary_data_size"] = len(raw._raw_data)
refused(lambda: client.infer("linear", [raw]), "needs 48 bytes of binary data, but has 44")
refused(lambda: client.infer("nope", [tensor]), "nope")
assert np.array_equal(client.infer("linear", [tensor]).as_numpy(name_out), results[(True, True)])

# A runner that takes JSON: one BYTES element holding the request body, answered likewise.
metadata = client.get_model_metadata("echo")
assert metadata["platform"] == "runner_json" and metadata["inputs"][0]["datatype"] == "BYTES", metadata
for binary in (False, True):
    body = httpclient.InferInput("body", [1], "BYTES")
    body.set_data_from_numpy(np.array([json.dumps({"text": "héllo", "times": 3}).encode()], dtype=np.object_),
                             binary_data=binary)
    answer = client.infer("echo", [body], outputs=[httpclient.InferRequestedOutput("body", binary_data=binary)])
    document = answer.as_numpy("body")[0]
    document = document.decode() if isinstance(document, bytes) else document
    assert json.loads(document) == {"text": "héllohéllohéllo"}, document

# gRPC: the same model, metadata and answers.
gclient = grpcclient.InferenceServerClient(url=grpc_url)
assert gclient.is_server_live() and gclient.is_server_ready()
assert gclient.is_model_ready("linear") and gclient.is_model_ready("linear", "1")
gmetadata = gclient.get_model_metadata("linear", as_json=True)
assert gmetadata["inputs"][0] == {"name": name_in, "datatype": "FP32", "shape": ["-1", str(inputs)]}, gmetadata
assert gmetadata["versions"] == ["1"], gmetadata
# Raw contents, tritonclient's default.
gtensor = grpcclient.InferInput(name_in, list(x.shape), "FP32")
gtensor.set_data_from_numpy(x)
gresult = gclient.infer("linear", [gtensor], outputs=[grpcclient.InferRequestedOutput(name_out)])
y = gresult.as_numpy(name_out)
assert y.dtype == np.float32 and np.array_equal(y, results[(True, True)]), (y, results[(True, True)])
assert gresult.get_response().model_version == "1"
# Typed contents (fp32_contents), through the generated stub.
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_url))
typed = service_pb2.ModelInferRequest(model_name="linear", id="typed-1")
typed_input = typed.inputs.add(name=name_in, datatype="FP32", shape=list(x.shape))
typed_input.contents.fp32_contents.extend(x.ravel().tolist())
answer = stub.ModelInfer(typed)
assert answer.id == "typed-1" and answer.outputs[0].name == name_out, answer
y = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32).reshape(list(answer.outputs[0].shape))
assert np.array_equal(y, results[(True, True)]), (y, results[(True, True)])


def grpc_refused(call, code, *needles):
    try:
        call()
    except InferenceServerException as e:
        assert e.status() == str(code), (e.status(), code, str(e))
        assert all(n in str(e) for n in needles), (str(e), needles)
        return
    raise AssertionError(f"no error, expected {code} naming {needles}")


wrong_type = grpcclient.InferInput(name_in, list(x.shape), "BOOL")
wrong_type.set_data_from_numpy(x > 0)
grpc_refused(lambda: gclient.infer("linear", [wrong_type]), grpc.StatusCode.INVALID_ARGUMENT, f"input `{name_in}` is bool")
wrong_shape = grpcclient.InferInput(name_in, [3, inputs + 1], "FP32")
wrong_shape.set_data_from_numpy(rng.standard_normal((3, inputs + 1)).astype(np.float32))
grpc_refused(lambda: gclient.infer("linear", [wrong_shape]), grpc.StatusCode.INVALID_ARGUMENT, f"[3, {inputs + 1}]", f"[-1, {inputs}]")
typed_input.contents.fp32_contents.append(1.0)
try:
    stub.ModelInfer(typed)
    raise AssertionError("a contents count that does not fit the shape was answered")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 48 bytes" in e.details(), (e.code(), e.details())
grpc_refused(lambda: gclient.infer("nope", [gtensor]), grpc.StatusCode.NOT_FOUND, "nope")
grpc_refused(lambda: gclient.get_model_metadata("linear", "7"), grpc.StatusCode.NOT_FOUND, "not 7")
# The JSON runner, over gRPC too.
gbody = grpcclient.InferInput("body", [1], "BYTES")
gbody.set_data_from_numpy(np.array([json.dumps({"text": "ab", "times": 2}).encode()], dtype=np.object_))
assert json.loads(gclient.infer("echo", [gbody]).as_numpy("body")[0]) == {"text": "abab"}
assert gclient.get_model_metadata("echo", as_json=True)["platform"] == "runner_json"
print("tritonclient: all checks passed")
