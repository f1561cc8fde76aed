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
    output = subprocess.run([str(RELEASE / "transfer"), *args], capture_output=True, text=True, check=True,
                            env=dict(os.environ, RUNNER_CACHE=CACHE)).stdout
    return json.loads(output)


# Each round's client starts with no remembered hashes (RUNNER_CACHE), like a first
# registration of a new file.
CACHE = ""


def fresh_artifact(work):
    """An empty `work` folder holding `checkpoint.bin`: SIZE_MIB of random bytes."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    artifact = work / "checkpoint.bin"
    with open(artifact, "wb") as f:
        for _ in range(SIZE_MIB):
            f.write(os.urandom(1 << 20))
    return artifact


def drop_from_page_cache(path):
    """Written back, then dropped from the page cache: what a checkpoint saved long ago
    looks like (the next read comes from the disk)."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cp_fsync_seconds(artifact, work, cold=False):
    """`cp` of `artifact` on the same disk, made durable like a registered file (the
    registries fsync), on an idle disk: everything is written back before and after.
    `cold`: the source is read from the disk, not the page cache."""
    os.sync()
    if cold:
        drop_from_page_cache(artifact)
    started = time.perf_counter()
    shutil.copyfile(artifact, work / "copy.bin")
    with open(work / "copy.bin", "rb") as f:
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    (work / "copy.bin").unlink()
    os.sync()
    return seconds


def main():
    work = ROOT / "bench" / "out" / "transfer"
    artifact = fresh_artifact(work)
    # Rounds alternate cp, the embedded registry and the server, each on an idle disk
    # (everything written back first), with the file in the page cache and then dropped
    # from it; medians of three.
    global CACHE
    rounds = []
    for r in range(3):
        cp = cp_fsync_seconds(artifact, work)
        # The embedded directory registry (no server): copied, hashed and fsynced in one pass.
        CACHE = str(work / f"cache-embedded-{r}")
        embedded = transfer("register", str(work / f"embedded-{r}"), str(artifact))
        shutil.rmtree(work / f"embedded-{r}", ignore_errors=True)
        os.sync()
        port = free_port()
        server = subprocess.Popen([str(RELEASE / "runner-registry"), "serve", "--no-auth", "--addr",
                                   f"127.0.0.1:{port}", "--data", str(work / f"data-{r}")],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        try:
            # In the page cache, new content: sampled, asked, sent unnamed and hashed on the way.
            CACHE = str(work / f"cache-{r}")
            first = transfer("register", url, str(artifact))
            if r == 2:
                again = transfer("register", url, str(artifact))
                # Another file with the same content, no remembered hash: its sample is
                # known, so it is hashed, named, and not sent.
                copy = work / "copy.bin"
                shutil.copyfile(artifact, copy)
                CACHE = str(work / "cache-copy")
                copied = transfer("register", url, str(copy))
                copy.unlink()
                cold_load = transfer("load", url, "transfer:1", str(work / "cache"))
                # A hash recorded within 2 s of a file's last write is not trusted: the
                # first warm load a while later hashes the volume once, later ones read
                # nothing of it.
                time.sleep(2.5)
                warm_first = transfer("load", url, "transfer:1", str(work / "cache"))
                warm_load = transfer("load", url, "transfer:1", str(work / "cache"))
            # Not in the page cache (and a fresh server directory, no remembered hash):
            # likewise sent unnamed, read from the disk once.
            cp_cold = cp_fsync_seconds(artifact, work, cold=True)
            drop_from_page_cache(artifact)
            CACHE = str(work / f"cache-cold-{r}")
            server_peak = peak_rss_mib(server.pid)
            server.terminate()
            server.wait()
            shutil.rmtree(work / f"data-{r}", ignore_errors=True)
            server = subprocess.Popen([str(RELEASE / "runner-registry"), "serve", "--no-auth", "--addr",
                                       f"127.0.0.1:{port}", "--data", str(work / f"data-{r}")],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            server.stdout.readline()
            os.sync()
            drop_from_page_cache(artifact)
            cold = transfer("register", url, str(artifact))
            server_peak = max(server_peak, peak_rss_mib(server.pid))
        finally:
            server.terminate()
            server.wait()
        shutil.rmtree(work / f"data-{r}", ignore_errors=True)
        rounds.append((cp, embedded, first, cp_cold, cold))
    median = lambda xs: sorted(xs, key=lambda x: x if isinstance(x, float) else x["seconds"])[1]  # noqa: E731
    cp_seconds, embedded, first, cp_cold, cold = (median([r[i] for r in rounds]) for i in range(5))
    shutil.rmtree(work, ignore_errors=True)

    gib = SIZE_MIB / 1024
    lines = [
        "## Registry transfer (`bench/transfer.sh`)",
        "",
        f"A model with one {gib:g} GiB artifact (random bytes) registered through `runner-registry` on 127.0.0.1, "
        f"against `cp` of the same file on the same disk followed by fsync (the server fsyncs what it stores); "
        f"medians of 3 alternating rounds, each step on an idle disk and with no remembered hashes. "
        f"New content is sampled (1 MiB read), the server says it does not know the sample, and the file is sent "
        f"unnamed, hashed on the way, so it is read once. \"In the page cache\": the file was just written. "
        f"\"Not in the page cache\": written back and dropped with `posix_fadvise(DONTNEED)`, like a checkpoint "
        f"saved long ago. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| step | seconds | file bytes on the wire | peak RSS |",
        "|---|---|---|---|",
        f"| `cp` + fsync, source in the page cache | {cp_seconds:.2f} | - | - |",
        f"| register into the embedded directory registry (no server) | {embedded['seconds']:.2f} ({embedded['seconds'] / cp_seconds:.2f}x cp) | - | client {embedded['peak_rss_mib']:.1f} MiB |",
        f"| register through the server, file in the page cache | {first['seconds']:.2f} ({first['seconds'] / cp_seconds:.2f}x cp) | {first['bytes']:,} | client {first['peak_rss_mib']:.1f} MiB |",
        f"| `cp` + fsync, source not in the page cache | {cp_cold:.2f} | - | - |",
        f"| register through the server, file not in the page cache | {cold['seconds']:.2f} ({cold['seconds'] / cp_cold:.2f}x that cp) | {cold['bytes']:,} | client {cold['peak_rss_mib']:.1f} MiB |",
        f"| register a copy (another file, same content, no remembered hash: its sample is known, so it is hashed and named) | {copied['seconds']:.2f} | {copied['bytes']:,} | client {copied['peak_rss_mib']:.1f} MiB |",
        f"| register again, unchanged | {again['seconds']:.3f} ({100 * again['seconds'] / first['seconds']:.2f}% of the first) | {again['bytes']:,} | client {again['peak_rss_mib']:.1f} MiB |",
        f"| download, cold cache (checked as it arrives) | {cold_load['seconds']:.2f} | {cold_load['bytes']:,} | client {cold_load['peak_rss_mib']:.1f} MiB |",
        f"| load again, warm cache (its first check of the volume since the download) | {warm_first['seconds']:.2f} | {warm_first['bytes']:,} | client {warm_first['peak_rss_mib']:.1f} MiB |",
        f"| load again, warm cache (volume's hash remembered) | {warm_load['seconds']:.3f} | {warm_load['bytes']:,} | client {warm_load['peak_rss_mib']:.1f} MiB |",
        "",
        f"Server peak RSS over the last round (either server): {server_peak:.1f} MiB.",
        "",
        "Rounds (cp / embedded / server / cp cold / server cold, seconds): "
        + "; ".join(f"{c:.2f} / {e['seconds']:.2f} / {f['seconds']:.2f} / {cc:.2f} / {k['seconds']:.2f}"
                    for c, e, f, cc, k in rounds) + ".",
    ]
    replace_block("transfer", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
