"""The decoder process: a real worker (`python -m netdoctor.probe.decoding`) fed captures built with
scapy, in chunks as they stream in; what it answers is what `pcap.decode` gives in this process,
and a capture it cannot read or a worker that died is a ValueError (the capture point goes blind),
never a hang. Nothing is left running."""

import os
import signal

import pytest
from scapy.layers.inet import IP, TCP, UDP

from netdoctor.probe import decoding, pcap
from netdoctor.probe.decoding import DecoderProcess

from test_pcap import NAMES, capture, sll2


def streamed(decoder, data: bytes, chunk: int = 100) -> None:
    for i in range(0, len(data), chunk):
        decoder.feed(data[i:i + chunk])


def test_the_worker_decodes_each_stream_as_this_process_would():
    first = capture(*(sll2(ifindex=2) / IP(src="10.244.1.5", dst="10.96.0.10") / TCP(sport=40000 + i, dport=80)
                      for i in range(50)))
    second = capture(sll2(ifindex=3, outgoing=True) / IP(src="10.244.2.7", dst="10.96.0.10") / UDP(sport=5353, dport=53))
    with DecoderProcess() as decoding:
        one, two = decoding.decoder(), decoding.decoder()
        streamed(one, first)
        streamed(two, second)
        assert two.packets(NAMES) == pcap.decode(second, NAMES)
        assert one.packets(NAMES) == pcap.decode(first, NAMES)
        assert one.data == first  # kept as captured, for --pcap
        assert decoding.decoder().packets(NAMES) == ()  # a stream that saw nothing


def test_a_capture_the_worker_cannot_read_says_why():
    with DecoderProcess() as decoding:
        decoder = decoding.decoder()
        decoder.feed(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng, not what tcpdump -w writes
        with pytest.raises(ValueError) as failed:
            decoder.packets(NAMES)
        with pytest.raises(ValueError) as in_process:
            pcap.decode(b"\x0a\x0d\x0d\x0a" + bytes(40), NAMES)
        assert str(failed.value) == str(in_process.value)
        good = decoding.decoder()
        streamed(good, capture(sll2() / IP() / TCP()))
        assert len(good.packets(NAMES)) == 1  # one bad stream spoils no other


def test_a_worker_that_died_fails_its_streams_at_once():
    with DecoderProcess() as decoding:
        decoder = decoding.decoder()
        decoder.feed(capture(sll2() / IP() / TCP()))
        os.kill(decoding._proc.pid, signal.SIGKILL)
        with pytest.raises(ValueError, match="the decoding process ended"):
            decoder.packets(NAMES)
        with pytest.raises(ValueError, match="the decoding process ended"):
            decoding.decoder().packets(NAMES)


def test_a_worker_that_stops_answering_is_a_capture_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(decoding, "ANSWER_TIMEOUT", 0.3)
    with DecoderProcess() as process:
        decoder = process.decoder()
        decoder.feed(capture(sll2() / IP() / TCP()))
        os.kill(process._proc.pid, signal.SIGSTOP)  # as a worker starved of CPU, or hung
        with pytest.raises(ValueError, match="did not answer within 0.3s"):
            decoder.packets(NAMES)


def test_ctrl_c_at_the_terminal_leaves_the_worker_to_the_check_and_leaving_ends_it():
    with DecoderProcess() as decoding:
        assert decoding.decoder().packets(NAMES) == ()  # it answers: its own handler is set
        decoder = decoding.decoder()
        decoder.feed(capture(sll2() / IP() / TCP()))
        os.kill(decoding._proc.pid, signal.SIGINT)  # the terminal signals the whole process group
        assert len(decoder.packets(NAMES)) == 1
        worker = decoding._proc
    assert worker.poll() is not None
