"""Wall time of `netdoctor lab up` (2 nodes, shop) and `netdoctor lab down`, as a user runs them, per
CNI dialect (`lab up --cni … --overlay …`, the proxy the CNI defaults to).

Needs root. Targets on a 2-core machine: up under 2 s, down under 1 s.
Usage: python benchmarks/lab_up_down.py [--runs N] [--dialects flannel-vxlan,cilium-vxlan,…]
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


DIALECTS = ("flannel-vxlan", "flannel-routed", "calico-vxlan", "calico-routed", "cilium-vxlan", "cilium-routed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dialects", default=",".join(DIALECTS), help="CNI-overlay pairs, comma-separated")
    args = parser.parse_args()
    for dialect in args.dialects.split(","):
        cni, overlay = dialect.split("-")
        ups, downs = [], []
        for _ in range(args.runs):
            name = "b" + secrets.token_hex(3)
            ups.append(timed([sys.executable, "-m", "netdoctor", "lab", "up", "--name", name, "--cni", cni,
                              "--overlay", overlay]))
            downs.append(timed([sys.executable, "-m", "netdoctor", "lab", "down", "--name", name]))
        for label, values, target in (("lab up  ", ups, 2.0), ("lab down", downs, 1.0)):
            print(f"{dialect:<15} {label}: median {statistics.median(values):.2f}s  min {min(values):.2f}s  "
                  f"max {max(values):.2f}s  (target < {target:.0f}s, {args.runs} runs)")


if __name__ == "__main__":
    main()
