"""Cold start: `netdoctor --help` and `netdoctor check --help` against a bare `python3 -c pass`,
each a fresh interpreter, interleaved so the machine's load hits all alike; medians of N runs.

Target (issue 13): `netdoctor --help` at most 0.15 s above bare Python. What a --help run may
import is asserted by tests/unit/test_cold_start.py; this script only prints the figures.
Usage: python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
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


def once(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(args.runs):
        for label, argv in COMMANDS.items():
            samples[label].append(once(argv))
    bare = statistics.median(samples["python3 -c pass"])
    for label, times in samples.items():
        median = statistics.median(times)
        extra = "" if label.startswith("python3") else f"  (+{median - bare:.3f} s over bare Python; target +0.15 s)"
        print(f"{label:<24} {median:.3f} s{extra}")
    print(f"(medians of {args.runs} runs each, interleaved)")


if __name__ == "__main__":
    main()
