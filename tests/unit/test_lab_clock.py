"""The lab's tcpdump on a node whose clock is off (netdoctor.lab.clock, the node-clock-skew fault):
every pcap record moved by the node's offset, the rest as it was; the runtime puts it in the PATH
of that node's pods only."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from netdoctor.lab import clock
from netdoctor.lab.runtime import PodRuntime


def pcap(magic: int, order: str, records: list[tuple[int, int, bytes]]) -> bytes:
    head = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 512, 276)
    return head + b"".join(struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
                           for sec, frac, data in records)


@pytest.mark.parametrize("magic,order,per_second", [(0xA1B2C3D4, "<", 10**6), (0xA1B2C3D4, ">", 10**6),
                                                     (0xA1B23C4D, "<", 10**9)], ids=["us", "us-big-endian", "ns"])
def test_every_record_is_moved_by_the_offset(magic, order, per_second):
    records = [(1_700_000_000, per_second // 4, b"first"), (1_700_000_001, 0, b"second packet")]
    out = io.BytesIO()
    clock.shift(io.BufferedReader(io.BytesIO(pcap(magic, order, records))), out, -2.5)
    moved = [(1_699_999_997, per_second * 3 // 4, b"first"), (1_699_999_998, per_second // 2, b"second packet")]
    assert out.getvalue() == pcap(magic, order, moved)


def test_anything_but_a_pcap_goes_through_as_it_is():
    text = b"tcpdump: data link type LINUX_SLL2\n" * 3
    out = io.BytesIO()
    clock.shift(io.BufferedReader(io.BytesIO(text)), out, -2.0)
    assert out.getvalue() == text


def test_only_the_pods_of_a_node_whose_clock_is_off_get_it(tmp_path: Path):
    runtime = PodRuntime(tmp_path)
    runtime.clocks["node-2"] = -2.0
    on = {"metadata": {"name": "p"}, "spec": {"nodeName": "node-2"}}
    off = {"metadata": {"name": "q"}, "spec": {"nodeName": "node-1"}}
    skewed, plain = runtime._environment(on, {}, tmp_path), runtime._environment(off, {}, tmp_path)
    shim = Path(skewed["PATH"].split(":")[0]) / "tcpdump"
    assert os.access(shim, os.X_OK) and skewed["NETDOCTOR_LAB_CLOCK"] == "-2.0"
    assert Path(skewed["NETDOCTOR_LAB_TCPDUMP"]).name == "tcpdump" and skewed["NETDOCTOR_LAB_TCPDUMP"] != str(shim)
    assert "NETDOCTOR_LAB_CLOCK" not in plain and not plain["PATH"].startswith(str(shim.parent))
