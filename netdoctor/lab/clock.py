"""tcpdump on a lab node whose clock is off (the `node-clock-skew` fault).

The lab's nodes share this machine's kernel, hence its clock; a real node whose time sync stopped
stamps the packets it captures with its own. On such a node the lab's runtime puts this shim first
in PATH as `tcpdump`: it runs the real one (NETDOCTOR_LAB_TCPDUMP) with the same arguments, passes
on the signals it gets, and moves every record of the pcap it writes to stdout by
NETDOCTOR_LAB_CLOCK seconds, record by record as they come (its `-U`); anything but a pcap on
stdout goes through as it is. Run as a file by the node's processes: stdlib only.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys

# magic as read little-endian -> (byte order, fractions per second)
_MAGICS = {0xA1B2C3D4: ("<", 1_000_000), 0xD4C3B2A1: (">", 1_000_000),
           0xA1B23C4D: ("<", 1_000_000_000), 0x4D3CB2A1: (">", 1_000_000_000)}
_HEADER = 24


def shift(source, sink, seconds: float) -> None:
    """Copy a pcap stream from `source` to `sink` with every record's time moved by `seconds`."""
    header = source.read(_HEADER)
    magic = struct.unpack("<I", header[:4])[0] if len(header) >= 4 else None
    if magic not in _MAGICS:
        _copy(source, sink, header)
        return
    order, per_second = _MAGICS[magic]
    record = struct.Struct(order + "IIII")
    delta = round(seconds * per_second)
    sink.write(header)
    sink.flush()
    while len(head := source.read(record.size)) == record.size:
        sec, fraction, included, original = record.unpack(head)
        moved = sec * per_second + fraction + delta
        sink.write(record.pack(moved // per_second, moved % per_second, included, original) + source.read(included))
        sink.flush()


def _copy(source, sink, first: bytes) -> None:
    sink.write(first)
    while chunk := source.read1(65536):
        sink.write(chunk)
    sink.flush()


def main() -> int:
    child = subprocess.Popen([os.environ["NETDOCTOR_LAB_TCPDUMP"], *sys.argv[1:]], stdout=subprocess.PIPE)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, lambda received, _frame: child.send_signal(received))
    shift(child.stdout, sys.stdout.buffer, float(os.environ["NETDOCTOR_LAB_CLOCK"]))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
