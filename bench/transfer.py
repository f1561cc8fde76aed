"""Runs the registry transfer benchmark. Called by bench/transfer.sh."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, free_port, replace_block  # noqa: E402

SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
RELEASE = ROOT / "target" / "release"


def peak_rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1)) / 1024


def transfer(*args):
    output = subprocess.run([str(RELEASE / "transfer"), *args], capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def main():
    work = ROOT / "bench" / "out" / "transfer"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    artifact = work / "checkpoint.bin"
    with open(artifact, "wb") as f:
        for _ in range(SIZE_MIB):
            f.write(os.urandom(1 << 20))
    # cp on the same disk, made durable like a registered file (the server fsyncs).
    started = time.perf_counter()
    shutil.copyfile(artifact, work / "copy.bin")
    with open(work / "copy.bin", "rb") as f:
        os.fsync(f.fileno())
    cp_seconds = time.perf_counter() - started
    (work / "copy.bin").unlink()

    port = free_port()
    server = subprocess.Popen([str(RELEASE / "runner-registry"), "serve", "--no-auth", "--addr", f"127.0.0.1:{port}",
                               "--data", str(work / "data")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    try:
        first = transfer("register", url, str(artifact))
        again = transfer("register", url, str(artifact))
        cold = transfer("load", url, "transfer:1", str(work / "cache"))
        warm = transfer("load", url, "transfer:1", str(work / "cache"))
        server_peak = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(work, ignore_errors=True)

    gib = SIZE_MIB / 1024
    lines = [
        "## Registry transfer (`bench/transfer.sh`)",
        "",
        f"A model with one {gib:g} GiB artifact (random bytes) registered through `runner-registry` on 127.0.0.1, "
        f"against `cp` of the same file on the same disk followed by fsync (the server fsyncs what it stores). "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| step | seconds | file bytes on the wire | peak RSS |",
        "|---|---|---|---|",
        f"| `cp` + fsync | {cp_seconds:.2f} | - | - |",
        f"| register (new) | {first['seconds']:.2f} ({first['seconds'] / cp_seconds:.2f}x cp) | {first['bytes']:,} | client {first['peak_rss_mib']:.1f} MiB |",
        f"| register again, unchanged | {again['seconds']:.3f} ({100 * again['seconds'] / first['seconds']:.2f}% of the first) | {again['bytes']:,} | client {again['peak_rss_mib']:.1f} MiB |",
        f"| download, cold cache | {cold['seconds']:.2f} | {cold['bytes']:,} | client {cold['peak_rss_mib']:.1f} MiB |",
        f"| download, warm cache | {warm['seconds']:.2f} | {warm['bytes']:,} | client {warm['peak_rss_mib']:.1f} MiB |",
        "",
        f"Server peak RSS over the whole run: {server_peak:.1f} MiB.",
    ]
    replace_block("transfer", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
