"""Probe command builders and parsers: every output shape, and the scripts run for real locally."""

import socket
import subprocess
import threading
import time

import dns.message
import dns.rcode
import dns.rrset
import pytest

from netdoctor.probe import commands as pc
from netdoctor.observations import (
    BindScope,
    DnsOutcome,
    ExecError,
    ExecErrorKind,
    ExecResult,
    ListenerStatus,
    PingOutcome,
    TcpOutcome,
)

MISSING_BASH = ExecResult(None, b"", b"", ExecError(ExecErrorKind.MISSING_BINARY, "exec: \"bash\": executable file not found", "bash"))


def ok(stdout: str | bytes, code: int = 0, stderr: bytes = b"") -> ExecResult:
    return ExecResult(code, stdout.encode() if isinstance(stdout, str) else stdout, stderr)


def run_locally(argv: list[str]) -> ExecResult:
    proc = subprocess.run(argv, capture_output=True, timeout=30)
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- TCP

@pytest.mark.parametrize(
    "rc, text, outcome",
    [
        (0, "", TcpOutcome.CONNECTED),
        (1, "bash: connect: Connection refused\nbash: line 1: /dev/tcp/10.0.0.1/80: Connection refused", TcpOutcome.REFUSED),
        (124, "", TcpOutcome.TIMEOUT),
        (143, "", TcpOutcome.TIMEOUT),
        (1, "bash: connect: No route to host\nbash: line 1: /dev/tcp/10.0.0.1/80: No route to host", TcpOutcome.UNREACHABLE),
        (1, "bash: connect: Network is unreachable", TcpOutcome.UNREACHABLE),
        (1, "bash: connect: Connection timed out", TcpOutcome.TIMEOUT),
        (127, "bash: timeout: command not found", TcpOutcome.ERROR),
    ],
)
def test_parse_tcp_shapes(rc, text, outcome):
    err = text.replace("\n", "\t")
    out = f"netdoctor-tcp attempt=1 rc={rc} t0=100.250000 t1=100.750000 err={err}\n"
    [result] = pc.parse_tcp("10.0.0.1", 80, ok(out))
    assert result.outcome is outcome
    assert result.elapsed == pytest.approx(0.5)
    if outcome is TcpOutcome.REFUSED:
        assert result.detail == "connect: Connection refused; /dev/tcp/10.0.0.1/80: Connection refused"


def test_parse_tcp_missing_binary_and_garbage():
    assert pc.parse_tcp("10.0.0.1", 80, MISSING_BASH)[0].outcome is TcpOutcome.ERROR
    assert "bash is not in the probe image" in pc.parse_tcp("10.0.0.1", 80, MISSING_BASH)[0].detail
    [garbage] = pc.parse_tcp("10.0.0.1", 80, ok("sh: bad\n", 2))
    assert garbage.outcome is TcpOutcome.ERROR and "unexpected probe output" in garbage.detail


def test_tcp_command_rejects_injection():
    with pytest.raises(ValueError):
        pc.tcp_command("10.0.0.1; rm -rf /", 80, 1)
    with pytest.raises(ValueError):
        pc.tcp_command("10.0.0.1", 70000, 1)


def test_tcp_command_for_real_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        assert pc.parse_tcp("127.0.0.1", port, run_locally(pc.tcp_command("127.0.0.1", port, 2)))[0].outcome is TcpOutcome.CONNECTED
    finally:
        server.close()
    [refused] = pc.parse_tcp("127.0.0.1", port, run_locally(pc.tcp_command("127.0.0.1", port, 2)))
    assert refused.outcome is TcpOutcome.REFUSED


def test_a_connect_that_hangs_is_a_timeout_after_the_timeout_and_leaves_no_process():
    """A listener whose accept queue is full drops the SYN (as a DROP rule would): the attempts
    end at the timeout, read as TIMEOUT, and the subshells stuck in connect() are killed."""
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = server.getsockname()[1]
    queued = [socket.socket() for _ in range(3)]
    for client in queued:
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
    time.sleep(0.2)
    began = time.monotonic()
    proc = subprocess.Popen(pc.tcp_command("127.0.0.1", port, 0.5, attempts=3), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - began
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    finally:
        server.close()
        for client in queued:
            client.close()
    results = pc.parse_tcp("127.0.0.1", port, ExecResult(proc.returncode, out, err))
    assert [r.outcome for r in results] == [TcpOutcome.TIMEOUT] * 3
    assert all(0.45 <= r.elapsed < 1.5 for r in results) and took < 2.5
    assert left == []  # no subshell outlives the exec


def test_tcp_attempts_come_back_one_result_each_in_order():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # nothing listens: every attempt is refused
    results = pc.parse_tcp("127.0.0.1", port, run_locally(pc.tcp_command("127.0.0.1", port, 1, attempts=4)))
    assert [r.outcome for r in results] == [TcpOutcome.REFUSED] * 4




def slow_acceptor(pause: float) -> tuple[socket.socket, list[float], threading.Thread]:
    """A listener with room for two waiting connections (backlog 1) whose process accepts one,
    then is busy for `pause`: a small-backlog server short of CPU. The kernel drops the SYNs that
    find its accept queue full; their connects succeed only after the SYN is resent, 1 s later."""
    server = socket.create_server(("127.0.0.1", 0), backlog=1)
    accepted: list[float] = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.close()
            time.sleep(pause)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server, accepted, thread


def test_a_burst_of_attempts_can_overflow_a_slow_backends_accept_queue():
    server, _, thread = slow_acceptor(0.2)
    try:
        results = pc.parse_tcp("127.0.0.1", server.getsockname()[1],
                               run_locally(pc.tcp_command("127.0.0.1", server.getsockname()[1], 3, attempts=6)))
    finally:
        server.close()
        thread.join(5)
    assert [r.outcome for r in results] == [TcpOutcome.CONNECTED] * 6
    assert max(r.elapsed for r in results) >= 0.95  # a SYN dropped, resent: a retransmission we caused


def test_attempts_started_apart_fit_a_slow_backends_accept_queue():
    server, accepted, thread = slow_acceptor(0.01)
    port = server.getsockname()[1]
    try:
        results = pc.parse_tcp("127.0.0.1", port, run_locally(pc.tcp_command("127.0.0.1", port, 3, attempts=5,
                                                                            spacing=0.05)))
    finally:
        server.close()
        thread.join(5)
    assert [r.outcome for r in results] == [TcpOutcome.CONNECTED] * 5
    assert max(r.elapsed for r in results) < 0.95  # no SYN had to be resent
    assert accepted[-1] - accepted[0] >= 4 * 0.05 * 0.8  # they did start apart
    with pytest.raises(ValueError):
        pc.tcp_command("127.0.0.1", port, 3, attempts=2, spacing=-1)
# ---------------------------------------------------------------- DNS

def reply_for(query, rcode=dns.rcode.NOERROR, answers=()):
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for text in answers:
        response.answer.append(dns.rrset.from_text(query.question[0].name, 30, "IN", "A", text))
    return response


def exchange_header(tag: str, attempts: int, timeout: float = 2) -> str:
    return f"netdoctor-{tag} attempts={attempts} timeout={timeout:g}\n"


def dns_line(attempt, rc, data: bytes, t0="1.0", t1="1.25"):
    return f"netdoctor-dns attempt={attempt} rc={rc} t0={t0} t1={t1} hex={data.hex()}\n"


def test_parse_dns_answer_nxdomain_servfail_refused_noanswer_timeout():
    q = pc.dns_query("web.demo.svc.cluster.local.", "A")
    out = (
        exchange_header("dns", 6)
        + dns_line(1, 0, reply_for(q, answers=["10.96.0.10"]).to_wire())
        + dns_line(2, 0, reply_for(q, dns.rcode.NXDOMAIN).to_wire())
        + dns_line(3, 0, reply_for(q, dns.rcode.SERVFAIL).to_wire())
        + dns_line(4, 0, reply_for(q, dns.rcode.REFUSED).to_wire())
        + dns_line(5, 0, reply_for(q).to_wire())
        + dns_line(6, 124, b"")
    )
    results = pc.parse_dns("10.96.0.10", q, ok(out))
    assert [r.outcome for r in results] == [
        DnsOutcome.ANSWER, DnsOutcome.NXDOMAIN, DnsOutcome.SERVFAIL, DnsOutcome.REFUSED, DnsOutcome.NOANSWER, DnsOutcome.TIMEOUT,
    ]
    assert results[0].addresses == ("10.96.0.10",) and results[0].rcode == "NOERROR"
    assert results[0].elapsed == pytest.approx(0.25) and [r.attempt for r in results] == [1, 2, 3, 4, 5, 6]


def test_parse_dns_errors():
    q = pc.dns_query("web.", "A")
    other = pc.dns_query("web.", "A")
    other.id = (q.id + 1) % 65536
    out = (
        exchange_header("dns", 4)
        + dns_line(1, 1, b"dd: error reading 'standard input': Connection refused\n")
        + dns_line(2, 0, b"")
        + dns_line(3, 0, b"\x01\x02garbage")
        + dns_line(4, 0, reply_for(other).to_wire())
    )
    results = pc.parse_dns("10.96.0.10", q, ok(out))
    assert all(r.outcome is DnsOutcome.ERROR for r in results)
    assert "Connection refused" in results[0].detail
    assert results[1].detail == "empty reply"
    assert "undecodable" in results[2].detail
    assert "does not answer our query" in results[3].detail
    assert pc.parse_dns("10.96.0.10", q, MISSING_BASH)[0].outcome is DnsOutcome.ERROR
    assert pc.parse_dns("10.96.0.10", q, ok("junk"))[0].outcome is DnsOutcome.ERROR


def test_dns_command_sends_the_exact_wire_bytes_including_nul():
    """The printf escape survives NUL and every other byte value: run the send half for real."""
    q = pc.dns_query("a.b.", "AAAA")
    script = pc.dns_command("127.0.0.1", q, 1, 1)[4]
    printf = script[script.index("printf '\\x"):].split(" >&3")[0]
    sent = subprocess.run(["bash", "-c", printf], capture_output=True, check=True).stdout
    assert sent == q.to_wire() and b"\x00" in sent
    every_byte = "".join(f"\\x{b:02x}" for b in range(256))
    assert subprocess.run(["bash", "-c", f"printf '{every_byte}'"], capture_output=True).stdout == bytes(range(256))


@pytest.fixture
def udp_dns_server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 53))
    except PermissionError:
        pytest.skip("binding port 53 needs root")
    except OSError as exc:
        pytest.skip(f"port 53 busy: {exc}")
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            sock.sendto(reply_for(query, answers=["10.1.2.3"]).to_wire(), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    stop.set()
    sock.close()
    thread.join(2)


def test_dns_command_for_real_on_loopback(udp_dns_server):
    q = pc.dns_query("web.demo.svc.cluster.local.", "A")
    results = pc.parse_dns("127.0.0.1", q, run_locally(pc.dns_command("127.0.0.1", q, 2, 2)))
    assert [(r.outcome, r.addresses) for r in results] == [(DnsOutcome.ANSWER, ("10.1.2.3",))] * 2


# ---------------------------------------------------------------- UDP

def udp_line(attempt, rc, data: bytes):
    return f"netdoctor-udp attempt={attempt} rc={rc} t0=1.0 t1=1.5 hex={data.hex()}\n"


def test_parse_udp_answer_refusal_silence_and_errors():
    out = (exchange_header("udp", 5) + udp_line(2, 0, b"statsd-1 10.244.1.9:40000\n") + udp_line(1, 124, b"")
           + udp_line(3, 1, b"dd: error reading 'standard input': Connection refused\n")
           + udp_line(4, 1, b"dd: error reading 'standard input': No route to host\n")
           + udp_line(5, 1, b"dd: something else\n"))
    results = pc.parse_udp("10.244.1.9", 8125, ok(out))
    assert [r.outcome for r in results] == [TcpOutcome.NO_REPLY, TcpOutcome.CONNECTED, TcpOutcome.REFUSED,
                                            TcpOutcome.UNREACHABLE, TcpOutcome.ERROR]
    assert results[0].detail == "no answer and no ICMP error: open|filtered" and results[1].elapsed == pytest.approx(0.5)
    assert pc.parse_udp("10.244.1.9", 8125, MISSING_BASH)[0].outcome is TcpOutcome.ERROR
    assert pc.parse_udp("10.244.1.9", 8125, ok("junk"))[0].outcome is TcpOutcome.ERROR


def test_a_dns_port_answers_with_any_dns_response_to_the_query():
    q = pc.dns_query("dns.zoo.svc.cluster.local.", "A")
    other = pc.dns_query("dns.zoo.svc.cluster.local.", "A")
    other.id = (q.id + 1) % 65536
    out = (exchange_header("udp", 3) + udp_line(1, 0, reply_for(q, dns.rcode.REFUSED).to_wire())
           + udp_line(2, 0, reply_for(other).to_wire())
           + udp_line(3, 0, b"hello"))
    results = pc.parse_udp("10.244.1.2", 53, ok(out), q)
    assert [r.outcome for r in results] == [TcpOutcome.CONNECTED] * 3
    assert [r.detail for r in results] == ["DNS REFUSED", "a DNS message that does not answer the query",
                                           "an answer that is not DNS"]
    assert {r.query_id for r in results} == {q.id}


@pytest.fixture
def udp_ports():
    """A UDP echo server, a silent one and a closed port on loopback."""
    echo, silent, closed = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for sock in (echo, silent, closed):
        sock.bind(("127.0.0.1", 0))
    ports = tuple(sock.getsockname()[1] for sock in (echo, silent, closed))
    closed.close()
    echo.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, addr = echo.recvfrom(4096)
            except TimeoutError:
                continue
            echo.sendto(b"pong " + data, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield ports
    stop.set()
    thread.join(2)
    echo.close()
    silent.close()


def test_udp_command_for_real_on_loopback(udp_ports):
    echo, silent, closed = udp_ports
    [answered] = pc.parse_udp("127.0.0.1", echo, run_locally(pc.udp_command("127.0.0.1", echo, 1, 1)))
    assert (answered.outcome, answered.detail) == (TcpOutcome.CONNECTED, f"{len(b'pong ' + pc.UDP_PAYLOAD)} bytes back")
    refused = pc.parse_udp("127.0.0.1", closed, run_locally(pc.udp_command("127.0.0.1", closed, 1, 2)))
    assert [r.outcome for r in refused] == [TcpOutcome.REFUSED] * 2
    [quiet] = pc.parse_udp("127.0.0.1", silent, run_locally(pc.udp_command("127.0.0.1", silent, 0.5, 1)))
    assert quiet.outcome is TcpOutcome.NO_REPLY


def _waiting_reads() -> list[str]:
    """This machine's processes still waiting for a datagram the way an attempt does."""
    found = subprocess.run(["pgrep", "-af", "dd bs=65535 count=1 status=none"], capture_output=True, text=True)
    return found.stdout.splitlines()


def test_unanswered_attempts_end_together_at_the_deadline_and_leave_no_process(udp_ports):
    """No reply: one `timeout` ends every attempt (its whole process group) a margin after the
    attempts' own timeout; each reads as silence, none lingers waiting for its reply."""
    _, silent, _ = udp_ports
    began = time.monotonic()
    result = run_locally(pc.udp_command("127.0.0.1", silent, 0.5, 3))
    took = time.monotonic() - began
    assert result.exit_code == 124 and 0.5 <= took < 0.5 + pc.GROUP_MARGIN + 1.0
    results = pc.parse_udp("127.0.0.1", silent, result)
    assert [r.outcome for r in results] == [TcpOutcome.NO_REPLY] * 3
    assert _waiting_reads() == []


def test_an_answer_later_than_the_timeout_is_no_answer():
    """An attempt that started late still gets its time, but not more: its reply counts only
    within `timeout` of its own start."""
    q = pc.dns_query("web.demo.svc.cluster.local.", "A")
    reply = reply_for(q, answers=["10.96.0.10"]).to_wire()
    out = (exchange_header("dns", 3, timeout=1) + dns_line(1, 0, reply, "5.0", "5.2")
           + dns_line(2, 0, reply, "5.0", "6.1"))
    results = pc.parse_dns("10.96.0.10", q, ok(out, code=124))
    assert [(r.attempt, r.outcome) for r in results] == [
        (1, DnsOutcome.ANSWER), (2, DnsOutcome.TIMEOUT), (3, DnsOutcome.TIMEOUT)]
    udp = "".join(line.replace("netdoctor-dns", "netdoctor-udp") for line in out.splitlines(keepends=True))
    assert [r.outcome for r in pc.parse_udp("10.1.2.3", 53, ok(udp, code=124), q)] == [
        TcpOutcome.CONNECTED, TcpOutcome.NO_REPLY, TcpOutcome.NO_REPLY]


def test_a_query_goes_out_in_one_write_unless_a_byte_is_0x0a():
    """bash's printf flushes at every 0x0a byte: a payload with one goes through dd, which writes
    it at once; any other in printf's single write (every query's id avoids 0x0a)."""
    plain = pc.dns_query("api.shop.svc.cluster.local.", "A")
    assert b"\n" not in plain.id.to_bytes(2, "big")
    assert "| dd " not in pc.dns_command("10.96.0.10", plain, 1, 1)[4]
    assert "| dd " in pc.dns_command("10.96.0.10", pc.dns_query("api.production.svc.", "A"), 1, 1)[4]
    assert "| dd " in pc.udp_command("10.1.2.3", 9, 1, 1)[4]  # UDP_PAYLOAD ends with a newline

def test_udp_listeners_for_real_on_this_machine():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    try:
        table = pc.parse_listeners(run_locally(pc.listeners_command("UDP")), None, "UDP")
        assert [x.scope for x in table.on_port(sock.getsockname()[1])] == [BindScope.ANY]
    finally:
        sock.close()


# ---------------------------------------------------------------- resolv.conf

def test_parse_resolv_conf_and_candidates():
    text = "search demo.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    conf = pc.parse_resolv_conf(ok(text))
    assert conf.nameservers == ("10.96.0.10",) and conf.ndots == 5
    assert pc.search_candidates("web", conf)[:2] == ("web.demo.svc.cluster.local.", "web.svc.cluster.local.")
    assert pc.search_candidates("web", conf)[-1] == "web."
    assert pc.search_candidates("a.b.c.d.e.f", conf)[0] == "a.b.c.d.e.f."
    assert pc.search_candidates("web.", conf) == ("web.",)
    assert pc.parse_resolv_conf(ok("nameserver 1.1.1.1\n")).ndots == 1


def test_parse_resolv_conf_failures():
    with pytest.raises(pc.ProbeOutputError, match="no nameserver"):
        pc.parse_resolv_conf(ok("search x\n"))
    with pytest.raises(pc.ProbeOutputError, match="cannot read"):
        pc.parse_resolv_conf(ok("", 1, b"cat: can't open"))


# ---------------------------------------------------------------- ping

PING_OK = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n64 bytes from 10.0.0.2: icmp_seq=1 ttl=63 time=0.412 ms\n\n--- 10.0.0.2 ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\n"
PING_LOSS = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n--- 10.0.0.2 ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss, time 0ms\n"


@pytest.mark.parametrize(
    "code, out, err, outcome, mtu",
    [
        (0, PING_OK, "", PingOutcome.REPLY, None),
        (1, PING_LOSS, "", PingOutcome.TIMEOUT, None),
        (1, "PING 10.0.0.2 (10.0.0.2) 1472(1500) bytes of data.\n", "ping: local error: message too long, mtu=1450\n", PingOutcome.FRAG_NEEDED, 1450),
        (1, "From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n" + PING_LOSS, "", PingOutcome.FRAG_NEEDED, 1400),
        (1, "From 10.0.0.1 icmp_seq=1 Destination Host Unreachable\n" + PING_LOSS, "", PingOutcome.UNREACHABLE, None),
        (2, "", "ping: connect: Network is unreachable\n", PingOutcome.UNREACHABLE, None),
        (2, "", "ping: socket: Operation not permitted\n", PingOutcome.ERROR, None),
        (1, "garbage", "", PingOutcome.ERROR, None),
    ],
)
def test_parse_ping_shapes(code, out, err, outcome, mtu):
    result = pc.parse_ping("10.0.0.2", 1472, ok(out, code, err.encode()))
    assert result.outcome is outcome and result.mtu == mtu
    if outcome is PingOutcome.REPLY:
        assert result.rtt_ms == pytest.approx(0.412)


def test_ping_missing_binary_and_command():
    missing = ExecResult(None, b"", b"", ExecError(ExecErrorKind.MISSING_BINARY, "not found", "ping"))
    assert pc.parse_ping("10.0.0.2", 56, missing).outcome is PingOutcome.ERROR
    assert pc.ping_command("10.0.0.2", 1472, True, 2) == ["ping", "-n", "-c1", "-i", "0.002", "-W", "2", "-M", "do", "-s",
                                                               "1472", "10.0.0.2"]
    assert pc.ping_command("10.0.0.2", 56, False, 2, pc.OLD_PING_INTERVAL)[3:5] == ["-i", "0.2"]


@pytest.mark.parametrize("code, err, refused", [
    (2, "ping: cannot flood; minimal interval allowed for user is 200ms\n", True),
    (1, "ping: local error: message too long, mtu=1450\n", False),
    (2, "ping: socket: Operation not permitted\n", False),
])
def test_an_old_iputils_refusing_the_short_interval_is_recognised(code, err, refused):
    assert pc.interval_refused(ok("", code, err.encode())) is refused


# ---------------------------------------------------------------- listeners

PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0A01F40A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0A01F40A:0050 0B01F40A:C000 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
"""


def test_parse_listeners():
    table = pc.parse_listeners(ok(PROC_TCP), "10.244.1.10")
    assert table.status is ListenerStatus.OK
    scopes = {(l.address, l.port): l.scope for l in table.listeners}
    assert scopes == {
        ("0.0.0.0", 8080): BindScope.ANY,
        ("127.0.0.1", 3306): BindScope.LOOPBACK,
        ("10.244.1.10", 80): BindScope.POD_IP,
        ("::", 8081): BindScope.ANY,
        ("::1", 8082): BindScope.LOOPBACK,
        ("::ffff:7f00:1", 8083): BindScope.LOOPBACK,
    }
    assert [l.accepts_from_network() for l in table.on_port(80)] == [True]


def test_parse_listeners_unavailable():
    missing = ExecResult(None, b"", b"", ExecError(ExecErrorKind.MISSING_BINARY, "exec: \"cat\": executable file not found", "cat"))
    distroless = pc.parse_listeners(missing, None, container="app")
    assert (distroless.status, distroless.container) == (ListenerStatus.NO_TOOL, "app")
    assert distroless.detail == "container app has no cat (a distroless image?)"
    refused = ExecResult(None, b"", b"", ExecError(ExecErrorKind.FAILURE, "container not running"))
    assert pc.parse_listeners(refused, None).status is ListenerStatus.UNAVAILABLE
    assert pc.parse_listeners(ok("hello"), None).status is ListenerStatus.UNAVAILABLE


PROC_UDP = """   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  101: 0A01F40A:1FBD 0B01F40A:0035 01 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 0
"""


def test_udp_listeners_are_the_unconnected_bound_sockets():
    table = pc.parse_listeners(ok(PROC_UDP), "10.244.1.10", "UDP")
    assert [(x.address, x.port, x.scope) for x in table.listeners] == [("0.0.0.0", 53, BindScope.ANY)]
    assert pc.listeners_command("UDP") == ["cat", "/proc/net/udp", "/proc/net/udp6"]


def test_listeners_for_real_on_this_machine():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        table = pc.parse_listeners(run_locally(pc.listeners_command()), None)
        assert [l.scope for l in table.on_port(server.getsockname()[1])] == [BindScope.LOOPBACK]
    finally:
        server.close()
