"""`kubectl netdoctor …<TAB>`: how long kubectl waits on kubectl_complete-netdoctor, a fresh
interpreter per run (as kubectl starts it), medians of N runs.

Static answers (commands, option choices) need no cluster; the namespaces, `svc/` and contexts
are read from the cluster of KUBECONFIG (a lab: `export KUBECONFIG=$(netdoctor lab kubeconfig)`),
each API call bounded at 2 s. Without KUBECONFIG only the static figures are printed.
Usage: python benchmarks/completion_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = [sys.executable, "-c", "from netdoctor.cli import kubectl_complete; raise SystemExit(kubectl_complete())"]
STATIC = {"kubectl netdoctor ch<TAB>": ["ch"], "kubectl netdoctor check --capture <TAB>": ["check", "--capture", ""]}
LIVE = {"kubectl netdoctor check -n <TAB>": ["check", "-n", ""],
        "kubectl netdoctor check --context <TAB>": ["check", "--context", ""],
        "kubectl netdoctor check -n shop svc/<TAB>": ["check", "-n", "shop", "svc/"]}


def once(words: list[str]) -> tuple[float, int]:
    began = time.perf_counter()
    done = subprocess.run(PROGRAM + words, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - began, len(done.stdout.splitlines()) - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cases = {**STATIC, **(LIVE if os.environ.get("KUBECONFIG") else {})}
    for name, words in cases.items():
        timed = [once(words) for _ in range(runs)]
        print(f"{name:45} {statistics.median(t for t, _ in timed):.3f} s  ({timed[0][1]} candidates)")
    if not os.environ.get("KUBECONFIG"):
        print("(set KUBECONFIG for the answers read from a cluster)")


if __name__ == "__main__":
    main()
