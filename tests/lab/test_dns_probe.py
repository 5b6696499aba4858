"""The check's DNS probe command (netdoctor.probe.commands.dns_command) run in a lab pod: every query
must leave as one UDP datagram, whatever its bytes.

bash's builtin printf writes to a line-buffered stdout, so a query containing byte 0x0a went out
as two datagrams (split after the 0x0a) that no DNS server answers: a query id with a 0x0a byte
(2 in 256 queries; every attempt of one exec shares the id, so the whole step was "lost"), and
every name with a 10-character label (`production`, `monitoring`: the label's length byte is
0x0a) always. That was the lab's "transient DNS loss" in the full suite.
"""

from __future__ import annotations

import pytest

from netdoctor.probe import commands
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.observations import DnsOutcome, ExecResult

from labkit import run_in, start, unique_name

pytestmark = pytest.mark.lab

DNS_IP = "10.96.0.10"


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def ask(lab, name: str, query_id: int, attempts: int = 2):
    query = commands.dns_query(name, "A")
    query.id = query_id
    netns = lab.netns(lab.pods("shop", "app=frontend")[0])
    proc = run_in(netns, *commands.dns_command(DNS_IP, query, 1.0, attempts), timeout=15)
    return commands.parse_dns(DNS_IP, query, ExecResult(proc.returncode, proc.stdout.encode(), proc.stderr.encode()))


@pytest.mark.parametrize("name, query_id, outcome", [
    ("api.shop.svc.cluster.local.", 0x1234, DnsOutcome.ANSWER),
    ("nope.shop.svc.cluster.local.", 0x1234, DnsOutcome.NXDOMAIN),
    pytest.param("api.shop.svc.cluster.local.", 0x6B0A, DnsOutcome.ANSWER, id="id-ends-in-0x0a"),
    pytest.param("api.shop.svc.cluster.local.", 0x0A3E, DnsOutcome.ANSWER, id="id-starts-with-0x0a"),
    pytest.param("api.production.svc.cluster.local.", 0x1234, DnsOutcome.NXDOMAIN, id="10-char-label"),
])
def test_every_query_is_answered_whatever_its_bytes(lab, name, query_id, outcome):
    results = ask(lab, name, query_id)
    assert [r.outcome for r in results] == [outcome, outcome], results


def test_the_dns_pod_logs_what_it_cannot_answer(lab):
    """A datagram that is not a DNS query gets no answer (as from CoreDNS), and a line in the DNS
    pod's log that names the sender: how a client splitting its queries shows itself."""
    source = lab.pods("shop", "app=frontend")[0]
    proc = run_in(lab.netns(source), "bash", "-c", f"exec 3<>/dev/udp/{DNS_IP}/53 && printf '\\x6b\\x0a' >&3 && "
                  "timeout 1 dd bs=512 count=1 status=none <&3")
    assert proc.returncode == 124 and proc.stdout == ""  # no answer: timed out
    v1, _ = lab.api()
    coredns = lab.pods("kube-system", "k8s-app=kube-dns")[0].metadata.name
    line = f"no answer to 2 bytes from {source.status.pod_ip}:"
    assert lab.wait(lambda: line in v1.read_namespaced_pod_log(coredns, "kube-system"), timeout=5, what="the log line",
                    show=lambda: v1.read_namespaced_pod_log(coredns, "kube-system")[-500:])
