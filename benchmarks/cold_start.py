"""Cold start: `netdoctor --help` and `netdoctor check --help` against a bare `python3 -c pass`,
each a fresh interpreter, interleaved so the machine's load hits all alike; medians of N runs, wall clock and CPU time (user + system: what a loaded
machine's queueing does not inflate).

Target (issue 13): `netdoctor --help` at most 0.15 s above bare Python. What a --help run may
import is asserted by tests/unit/test_cold_start.py; this script only prints the figures.
Usage: python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python3 -c pass": [sys.executable, "-c", "pass"],
    "netdoctor --help": [sys.executable, "-m", "netdoctor", "--help"],
    "netdoctor check --help": [sys.executable, "-m", "netdoctor", "check", "--help"],
}


def once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in COMMANDS}
    for _ in range(args.runs):
        for label, argv in COMMANDS.items():
            samples[label].append(once(argv))
    bare = [statistics.median(s[i] for s in samples["python3 -c pass"]) for i in (0, 1)]
    for label, times in samples.items():
        wall, cpu = (statistics.median(s[i] for s in times) for i in (0, 1))
        extra = "" if label.startswith("python3") else \
            f"  (+{wall - bare[0]:.3f} s wall, +{cpu - bare[1]:.3f} s CPU over bare Python; target +0.15 s)"
        print(f"{label:<24} {wall:.3f} s wall, {cpu:.3f} s CPU{extra}")
    print(f"(medians of {args.runs} runs each, interleaved)")


if __name__ == "__main__":
    main()
