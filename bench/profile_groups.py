"""CPU time per request of each group of code, from two perf recordings of servers that
saturate one core (so time per request = share of samples / requests per second).
Called by bench/profile.sh: profile_groups.py BARE.data BARE_RPS SERVE.data SERVE_RPS."""

import collections
import re
import subprocess
import sys


def groups(data, rps):
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
                            capture_output=True, text=True, check=True).stdout
    micros = collections.Counter()
    for line in report.splitlines():
        match = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not match:
            continue
        share, dso, symbol = float(match.group(1)), match.group(2), match.group(3)
        if dso.startswith("[kernel"):
            key = "kernel (TCP, epoll, wakeups)"
        elif "vdso" in dso:
            key = "vDSO (clock readings)"
        elif "libc" in dso:
            key = "libc (malloc, free, memcpy)"
        else:
            key = re.split(r"::|<| as ", symbol.lstrip("<"))[0] or symbol
        micros[key] += share / 100 * 1e6 / rps
    return micros


def main():
    bare, serve = groups(sys.argv[1], float(sys.argv[2])), groups(sys.argv[3], float(sys.argv[4]))
    rows = sorted(((serve[k] - bare[k], k) for k in set(bare) | set(serve)), reverse=True)
    print(f"requests/s: bare {float(sys.argv[2]):,.0f}, serve {float(sys.argv[4]):,.0f}")
    print("| code | bare axum, µs/request | serve, µs/request | difference |")
    print("|---|---|---|---|")
    for diff, key in rows[:16]:
        print(f"| {key} | {bare[key]:.3f} | {serve[key]:.3f} | {diff:+.3f} |")
    print(f"| all | {sum(bare.values()):.3f} | {sum(serve.values()):.3f} | {sum(serve.values()) - sum(bare.values()):+.3f} |")


if __name__ == "__main__":
    main()
