"""NVIDIA's tritonclient against `serve alpha:1 --repository-mode explicit --grpc-addr ...`
(tests/repository.rs): the repository extension over HTTP and over gRPC, each way in
turn: the index, load_model (with and without a version), is_model_ready, unload_model.
Called with the HTTP and gRPC addresses (host:port). Prints `all checks passed`, or exits
non-zero with the failed check."""

import sys

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def states(index):
    """{name: (state, version)} from an index, whichever client read it."""
    return {m["name"]: (m.get("state", ""), m.get("version", "")) for m in index}


def check(client, way, as_list):
    index = as_list(client.get_model_repository_index())
    assert states(index) == {"alpha": ("READY", "1"), "beta": ("UNAVAILABLE", ""), "gamma": ("UNAVAILABLE", "")}, (way, index)
    assert not client.is_model_ready("beta"), way
    client.load_model("beta")
    assert client.is_model_ready("beta"), way
    assert states(as_list(client.get_model_repository_index()))["beta"] == ("READY", "1"), way
    client.unload_model("beta")
    assert not client.is_model_ready("beta"), way
    assert states(as_list(client.get_model_repository_index()))["beta"] == ("UNAVAILABLE", ""), way
    try:
        client.load_model("missing")
    except InferenceServerException as e:
        assert "missing" in e.message(), (way, e.message())
    else:
        raise AssertionError(f"{way}: loading a model that is not in the registry succeeded")
    print(f"{way}: index, load_model, is_model_ready and unload_model work")


http_url, grpc_url = sys.argv[1:3]
check(httpclient.InferenceServerClient(url=http_url), "HTTP", lambda index: index)
check(grpcclient.InferenceServerClient(url=grpc_url), "gRPC",
      lambda index: [{"name": m.name, "state": m.state, "version": m.version} for m in index.models])
print("tritonclient repository extension: all checks passed")
