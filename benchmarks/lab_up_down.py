"""Wall time of `netdoctor lab up` (2 nodes, shop) and `netdoctor lab down`, as a user runs them.

Needs root. Targets on a 2-core machine: up under 2 s, down under 1 s.
Usage: python benchmarks/lab_up_down.py [--runs N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    ups, downs = [], []
    for _ in range(runs):
        name = "b" + secrets.token_hex(3)
        ups.append(timed([sys.executable, "-m", "netdoctor", "lab", "up", "--name", name]))
        downs.append(timed([sys.executable, "-m", "netdoctor", "lab", "down", "--name", name]))
    for label, values, target in (("lab up  ", ups, 2.0), ("lab down", downs, 1.0)):
        print(f"{label}: median {statistics.median(values):.2f}s  min {min(values):.2f}s  max {max(values):.2f}s"
              f"  (target < {target:.0f}s, {runs} runs)")


if __name__ == "__main__":
    main()
