"""Commands run inside probe pods, and parsers that turn their output into observations.

Used by `netdoctor.probe.fleet.Probe` (which only execs) and by the lab tests. Pure functions: each
builder returns an argv for exec, each parser takes the ExecResult and returns a typed result from
`netdoctor.observations`. The scripts need bash (netshoot has it); DNS queries are built and
decoded with dnspython, and travel as raw bytes through bash's /dev/udp, dd and od. dnspython is
imported where it is used (~0.07 s of CPU): a check starts its probes without waiting for it
(check.command imports it meanwhile).
"""

from __future__ import annotations

import io
import ipaddress
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from netdoctor.errors import ProbeError
from netdoctor.observations import (
    DnsOutcome,
    DnsResult,
    ExecErrorKind,
    ExecResult,
    Listener,
    ListenerStatus,
    ListenerTable,
    PingOutcome,
    PingResult,
    ResolvConf,
    TcpOutcome,
    TcpResult,
    bind_scope,
)

if TYPE_CHECKING:
    import dns.message

EXEC_MARGIN = 10.0  # seconds allowed for exec setup on top of the command's own timeout
TIMEOUT_EXIT_CODES = frozenset({124, 137, 143})  # coreutils timeout; busybox's kill by TERM/KILL
GROUP_MARGIN = 0.25  # seconds a group of UDP attempts waits beyond its timeout for those that started late
ONE_WRITE = 1024  # bytes bash's printf writes at once (without a 0x0a byte: its stdout flushes at newlines)
DEFAULT_NDOTS = 1
MAX_NDOTS = 15


class ProbeOutputError(ProbeError):
    """A probe command failed or printed something we cannot read."""


def exec_deadline(timeout: float, attempts: int = 1, stagger: float = 0.0) -> float:
    """How long to wait for an exec whose command bounds itself to `timeout` per attempt, plus
    `stagger` seconds spent starting concurrent attempts apart."""
    return timeout * attempts + stagger + EXEC_MARGIN


def _concurrently(attempts: int, spacing: float) -> str:
    """The loop starting `attempt 1..N` in the background, `spacing` seconds apart (0: at once),
    then waiting for them all."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if spacing < 0:
        raise ValueError(f"spacing must not be negative, got {spacing}")
    pause = f"((i < {int(attempts)})) && sleep {spacing:g}; " if spacing else ""
    return f"for ((i = 1; i <= {int(attempts)}; i++)); do attempt \"$i\" & {pause}done\nwait\n"


def _seconds(timeout: float) -> str:
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    return f"{timeout:g}"


def _ip(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def _port(port: int) -> int:
    if not 0 < int(port) < 65536:
        raise ValueError(f"port out of range: {port}")
    return int(port)


def _bash(script: str) -> list[str]:
    return ["bash", "-c", script]


def _missing_tool(result: ExecResult) -> str | None:
    """The tool's error text when exec itself failed, else None."""
    if result.error is None:
        return None
    if result.error.kind is ExecErrorKind.MISSING_BINARY:
        return f"{result.error.binary or 'a tool'} is not in the probe image ({result.error.message})"
    return result.error.message


def _elapsed(t0: str, t1: str) -> float | None:
    try:
        return max(0.0, float(t1) - float(t0))
    except ValueError:  # bash < 5 has no EPOCHREALTIME
        return None


# ---------------------------------------------------------------- TCP

_TCP_LINE = re.compile(
    r"^netdoctor-tcp attempt=(?P<n>\d+) rc=(?P<rc>\d+) t0=(?P<t0>\S*) t1=(?P<t1>\S*) err=(?P<err>.*)$", re.M)


def tcp_command(ip: str, port: int, timeout: float, attempts: int = 1, spacing: float = 0.0) -> list[str]:
    """One exec connecting `attempts` times concurrently, one line per attempt (errors tab-joined),
    so a blackholed port costs one timeout however many attempts. `spacing`: seconds between the
    attempts' starts (0: all at once; a burst can fill a backend's accept queue, whose kernel then
    drops the SYNs that do not fit).

    Each attempt connects in a subshell (bash's /dev/tcp on a `:`, which closes the socket at once)
    whose errors and exit code it reads back with `read -t`: a timeout kills the subshell and reads
    as exit code 124, as coreutils' `timeout` would; the subshell is reaped either way (bash ≥ 5.1
    waits for a process substitution; an older one leaves it to the container's init). Two forks
    an attempt, no exec: `timeout bash -c` was a fork more and two execs (a bash start-up among
    them) on the node."""
    target = f"/dev/tcp/{_ip(ip)}/{_port(port)}"
    return _bash(
        "attempt() {\n"
        "  t0=$EPOCHREALTIME\n"
        f"  exec {{c}}< <(exec 2>&1; : 3<>{target}; echo \"netdoctor-rc=$?\")\n"
        "  pid=$! err= rc=\n"
        f"  while IFS= read -r -t {_seconds(timeout)} line <&$c || {{ (($? > 128)) && rc=124; false; }}; do\n"
        "    [[ $line == netdoctor-rc=* ]] && { rc=${line#netdoctor-rc=}; break; }\n"
        "    err+=$line$'\\n'\n"
        "  done\n"
        "  t1=$EPOCHREALTIME\n"
        "  [[ $rc == 124 ]] && kill \"$pid\" 2>/dev/null\n"
        "  wait \"$pid\" 2>/dev/null\n"
        "  exec {c}<&-\n"
        "  err=${err%$'\\n'}\n"
        "  printf 'netdoctor-tcp attempt=%s rc=%s t0=%s t1=%s err=%s\\n' "
        "\"$1\" \"${rc:-125}\" \"$t0\" \"$t1\" \"${err//$'\\n'/$'\\t'}\"\n"
        "}\n" + _concurrently(attempts, spacing)
    )


def parse_tcp(ip: str, port: int, result: ExecResult) -> list[TcpResult]:
    """One TcpResult per attempt, in attempt order; a single ERROR when the exec itself failed."""
    failure = _missing_tool(result)
    if failure:
        return [TcpResult(ip, port, TcpOutcome.ERROR, None, failure)]
    lines = sorted(_TCP_LINE.finditer(result.stdout.decode("utf-8", "replace")), key=lambda m: int(m["n"]))
    if not lines:
        return [TcpResult(ip, port, TcpOutcome.ERROR, None, _unexpected(result))]
    return [_tcp_attempt(ip, port, line) for line in lines]


def _tcp_attempt(ip: str, port: int, line: re.Match) -> TcpResult:
    rc, elapsed = int(line["rc"]), _elapsed(line["t0"], line["t1"])
    detail = _tool_message(line["err"].replace("\t", "\n"))
    return TcpResult(ip, port, _tcp_outcome(rc, detail), elapsed, detail)


def _tcp_outcome(rc: int, detail: str) -> TcpOutcome:
    if rc == 0:
        return TcpOutcome.CONNECTED
    if rc in TIMEOUT_EXIT_CODES or "timed out" in detail:
        return TcpOutcome.TIMEOUT
    if "Connection refused" in detail:
        return TcpOutcome.REFUSED
    if any(s in detail for s in ("No route to host", "Network is unreachable", "Host is unreachable")):
        return TcpOutcome.UNREACHABLE
    return TcpOutcome.ERROR


def _tool_message(text: str) -> str:
    """bash's error lines without the `bash: line 1: ` prefixes, de-duplicated, one line."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        line = re.sub(r"^(bash: )?(line \d+: )?", "", line.strip())
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines)


def _unexpected(result: ExecResult) -> str:
    sample = (result.stdout + result.stderr)[:200].decode("utf-8", "replace").strip()
    return f"unexpected probe output (exit code {result.exit_code}): {sample!r}"


# ---------------------------------------------------------------- DNS

def _framed(tag: str) -> re.Pattern:
    """The line `_exchange_script` prints per attempt."""
    return re.compile(rf"^netdoctor-{tag} attempt=(?P<n>\d+) rc=(?P<rc>\d+) t0=(?P<t0>\S*) t1=(?P<t1>\S*) "
                      r"hex=(?P<hex>[0-9a-f]*)$", re.M)


def dns_query(name: str, rdtype: str) -> dns.message.Message:
    """A recursive query with a random id, for `dns_command` and `parse_dns`; an id without a 0x0a
    byte, so that the query goes out in printf's single write (see `_exchange_script`)."""
    import dns.message
    import dns.rdatatype
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    while b"\n" in query.id.to_bytes(2, "big"):
        query.id = (query.id + 1) % 65536
    return query


def dns_command(server: str, query: dns.message.Message, timeout: float, attempts: int) -> list[str]:
    """One exec sending `query` to port 53 `attempts` times at once, one framed line per attempt
    (see `_exchange_script`): exit 0 means the hex is the DNS response."""
    return _exchange_script("dns", server, 53, query.to_wire(), timeout, attempts)


def _exchange_script(tag: str, ip: str, port: int, payload: bytes, timeout: float, attempts: int,
                     spacing: float = 0.0) -> list[str]:
    """A bash script, under one `timeout`, sending `payload` as one datagram to ip:port `attempts`
    times at once (or `spacing` seconds apart; a connected socket each): first a line
    `netdoctor-<tag> attempts= timeout=`, then one line `netdoctor-<tag> attempt= rc= t0= t1= hex=`
    per attempt that ended before the deadline.

    The attempts run concurrently so that the whole exec lasts one timeout, lost or not. Each line
    carries the exit code and the reply (or dd's error text) as hex: exit 0 means the hex is the
    reply, anything else is an error text (a connected UDP socket reads an ICMP port unreachable as
    "Connection refused"). Every attempt waits for its reply with one `dd` read; `timeout` ends them
    all (its whole process group) GROUP_MARGIN after the last one's `timeout` is up, so an attempt
    that started late under load still gets its time; the parser reads a missing line, or a reply
    later than `timeout` after its send, as no reply. An attempt costs 4 forks and 2 execs (dd, od)
    instead of 7 and 4 with a `timeout` each: half the CPU (10 queries: 61 vs 105 ms).
    """
    if not payload:
        raise ValueError("an empty payload sends no datagram")
    wire = "".join(f"\\x{b:02x}" for b in payload)
    # One write, one datagram: bash's printf flushes at every 0x0a byte (in a query id, or the
    # length of a 10-letter label such as "production"), which would split the payload in two;
    # such a payload goes through dd, which writes what it read at once.
    write = f"printf '{wire}' >&3" if b"\n" not in payload and len(payload) <= ONE_WRITE else \
        f"printf '{wire}' | dd bs=65535 count=1 iflag=fullblock status=none >&3"
    send = f"exec 3<>/dev/udp/{_ip(ip)}/{_port(port)} && {write} && exec dd bs=65535 count=1 status=none <&3"
    script = (
        "set -o pipefail\n"
        f"echo 'netdoctor-{tag} attempts={int(attempts)} timeout={_seconds(timeout)}'\n"
        "attempt() {\n"
        "  t0=$EPOCHREALTIME\n"
        f"  out=$( ( {send} ) 2>&1 | od -An -v -tx1 )\n"
        "  rc=$?\n"
        "  t1=$EPOCHREALTIME\n"
        f"  printf 'netdoctor-{tag} attempt=%s rc=%s t0=%s t1=%s hex=%s\\n' "
        "\"$1\" \"$rc\" \"$t0\" \"$t1\" \"${out//[[:space:]]/}\"\n"
        "}\n" + _concurrently(attempts, spacing)
    )
    deadline = timeout + spacing * max(0, int(attempts) - 1) + GROUP_MARGIN
    return ["timeout", _seconds(deadline), *_bash(script)]


def _exchanged(tag: str, result: ExecResult) -> tuple[list[re.Match], int, float] | None:
    """The attempt lines of an `_exchange_script` output (in attempt order), how many attempts
    there were and each one's timeout; None when the output has no header."""
    text = result.stdout.decode("ascii", "replace")
    header = re.search(rf"^netdoctor-{tag} attempts=(\d+) timeout=([0-9.]+)$", text, re.M)
    if header is None:
        return None
    lines = sorted(_framed(tag).finditer(text), key=lambda m: int(m["n"]))
    return lines, int(header[1]), float(header[2])


def _unanswered(lines: list[re.Match], attempts: int, result: ExecResult) -> list[int]:
    """The attempts `timeout` ended before they printed their line."""
    if result.exit_code not in TIMEOUT_EXIT_CODES:
        return []
    printed = {int(m["n"]) for m in lines}
    return [n for n in range(1, attempts + 1) if n not in printed]


def _late(line: re.Match, timeout: float) -> bool:
    """An answer that came later than the attempt's timeout after its send: as good as none."""
    elapsed = _elapsed(line["t0"], line["t1"])
    return elapsed is not None and elapsed > timeout


def parse_dns(server: str, query: dns.message.Message, result: ExecResult) -> list[DnsResult]:
    """One DnsResult per attempt; a single ERROR result when the exec itself failed."""
    import dns.rdatatype
    question = query.question[0]
    name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
    failure = _missing_tool(result)
    exchanged = None if failure else _exchanged("dns", result)
    if not exchanged or not (exchanged[0] or _unanswered(exchanged[0], exchanged[1], result)):
        detail = failure or _unexpected(result)
        return [DnsResult(name, rdtype, server, DnsOutcome.ERROR, 1, detail=detail, query_id=query.id)]
    lines, attempts, timeout = exchanged
    results = [_dns_attempt(name, rdtype, server, query, line, timeout) for line in lines]
    results += [DnsResult(name, rdtype, server, DnsOutcome.TIMEOUT, n, query_id=query.id)
                for n in _unanswered(lines, attempts, result)]
    return sorted(results, key=lambda r: r.attempt)


def _dns_attempt(name: str, rdtype: str, server: str, query: dns.message.Message, line: re.Match,
                 timeout: float) -> DnsResult:
    import dns.exception
    import dns.message
    attempt, rc, data = int(line["n"]), int(line["rc"]), bytes.fromhex(line["hex"])
    base = DnsResult(name, rdtype, server, DnsOutcome.ERROR, attempt, elapsed=_elapsed(line["t0"], line["t1"]),
                     query_id=query.id)
    if rc in TIMEOUT_EXIT_CODES or (rc == 0 and _late(line, timeout)):
        return replace(base, outcome=DnsOutcome.TIMEOUT)
    if rc != 0:
        return replace(base, detail=_tool_message(data.decode("utf-8", "replace")) or f"exit code {rc}")
    if not data:
        return replace(base, detail="empty reply")
    try:
        response = dns.message.from_wire(data)
    except dns.exception.DNSException as exc:
        return replace(base, detail=f"undecodable reply ({exc})")
    if not query.is_response(response):
        return replace(base, detail="the reply does not answer our query (id or question differ)")
    return _dns_response(base, query, response)


def _dns_response(base: DnsResult, query: dns.message.Message, response: dns.message.Message) -> DnsResult:
    import dns.flags
    import dns.rcode
    rcode = response.rcode()
    outcome = {
        dns.rcode.NXDOMAIN: DnsOutcome.NXDOMAIN,
        dns.rcode.SERVFAIL: DnsOutcome.SERVFAIL,
        dns.rcode.REFUSED: DnsOutcome.REFUSED,
    }.get(rcode, DnsOutcome.ERROR)
    qtype = query.question[0].rdtype
    records = tuple(rd.to_text() for rrset in response.answer if rrset.rdtype == qtype for rd in rrset)
    if rcode == dns.rcode.NOERROR:
        outcome = DnsOutcome.ANSWER if records else DnsOutcome.NOANSWER
    detail = "truncated reply" if response.flags & dns.flags.TC else ""
    return replace(base, outcome=outcome, addresses=records, rcode=dns.rcode.to_text(rcode), detail=detail)


# ---------------------------------------------------------------- UDP

UDP_PAYLOAD = b"netdoctor\n"  # the datagram for a UDP port that does not serve DNS
NO_REPLY_DETAIL = "no answer and no ICMP error: open|filtered"


def udp_command(ip: str, port: int, timeout: float, attempts: int,
                query: dns.message.Message | None = None, spacing: float = 0.0) -> list[str]:
    """One exec sending `attempts` datagrams to ip:port at once (or `spacing` seconds apart): the
    DNS `query` where the port serves DNS, else UDP_PAYLOAD."""
    payload = query.to_wire() if query is not None else UDP_PAYLOAD
    return _exchange_script("udp", ip, port, payload, timeout, attempts, spacing)


def parse_udp(ip: str, port: int, result: ExecResult, query: dns.message.Message | None = None) -> list[TcpResult]:
    """One result per attempt, judged as a connect: any answer CONNECTED (to a DNS query, its rcode
    in the detail), an ICMP port unreachable REFUSED, silence NO_REPLY (open|filtered); a single
    ERROR when the exec itself failed."""
    query_id = query.id if query is not None else None
    failure = _missing_tool(result)
    exchanged = None if failure else _exchanged("udp", result)
    if not exchanged or not (exchanged[0] or _unanswered(exchanged[0], exchanged[1], result)):
        return [TcpResult(ip, port, TcpOutcome.ERROR, None, failure or _unexpected(result), query_id)]
    lines, attempts, timeout = exchanged
    results = [(int(line["n"]), _udp_attempt(ip, port, line, query, timeout)) for line in lines]
    results += [(n, TcpResult(ip, port, TcpOutcome.NO_REPLY, None, NO_REPLY_DETAIL, query_id))
                for n in _unanswered(lines, attempts, result)]
    return [r for _, r in sorted(results, key=lambda pair: pair[0])]


def _udp_attempt(ip: str, port: int, line: re.Match, query: dns.message.Message | None, timeout: float) -> TcpResult:
    rc, data, elapsed = int(line["rc"]), bytes.fromhex(line["hex"]), _elapsed(line["t0"], line["t1"])
    query_id = query.id if query is not None else None
    if rc in TIMEOUT_EXIT_CODES or (rc == 0 and _late(line, timeout)):
        return TcpResult(ip, port, TcpOutcome.NO_REPLY, elapsed, NO_REPLY_DETAIL, query_id)
    if rc != 0:
        detail = _tool_message(data.decode("utf-8", "replace")) or f"exit code {rc}"
        outcome = _tcp_outcome(rc, detail)
        return TcpResult(ip, port, TcpOutcome.ERROR if outcome is TcpOutcome.TIMEOUT else outcome, elapsed, detail,
                         query_id)
    detail = f"{len(data)} bytes back" if query is None else _dns_reply(query, data)
    return TcpResult(ip, port, TcpOutcome.CONNECTED, elapsed, detail, query_id)


def _dns_reply(query: dns.message.Message, data: bytes) -> str:
    """What a DNS port answered: the response's rcode, or that it is no response to the query."""
    import dns.exception
    import dns.message
    import dns.rcode
    try:
        response = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return "an answer that is not DNS"
    if not query.is_response(response):
        return "a DNS message that does not answer the query"
    return f"DNS {dns.rcode.to_text(response.rcode())}"


# ---------------------------------------------------------------- resolv.conf


def resolv_conf_command() -> list[str]:
    return ["cat", "/etc/resolv.conf"]


def parse_resolv_conf(result: ExecResult) -> ResolvConf:
    import dns.resolver
    failure = _missing_tool(result)
    if failure or result.exit_code != 0:
        raise ProbeOutputError(f"cannot read /etc/resolv.conf in the probe: {failure or _unexpected(result)}")
    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(io.StringIO(result.stdout.decode("utf-8", "replace")))
    except dns.resolver.NoResolverConfiguration:
        raise ProbeOutputError("the probe's /etc/resolv.conf lists no nameserver") from None
    return ResolvConf(
        nameservers=tuple(str(ns) for ns in resolver.nameservers),
        search=tuple(d.to_text(omit_final_dot=True) for d in resolver.search),
        ndots=min(resolver.ndots if resolver.ndots is not None else DEFAULT_NDOTS, MAX_NDOTS),
    )


def search_candidates(name: str, conf: ResolvConf) -> tuple[str, ...]:
    """The absolute names a glibc/musl-style stub resolver tries for `name`, in order."""
    if name.endswith("."):
        return (name,)
    searched = tuple(f"{name}.{domain}." for domain in conf.search)
    if name.count(".") >= conf.ndots:
        return (f"{name}.",) + searched
    return searched + (f"{name}.",)


# ---------------------------------------------------------------- ping

_PING_REPLY = re.compile(r"bytes from .*time[=<](?P<rtt>[\d.]+) ms")
_PING_MTU = re.compile(r"mtu\s*=\s*(?P<mtu>\d+)", re.I)


PING_INTERVAL = 0.002  # iputils' shortest interval for a user since 20210202
OLD_PING_INTERVAL = 0.2  # before that


def ping_command(ip: str, size: int, dont_fragment: bool, timeout: float, interval: float = PING_INTERVAL) -> list[str]:
    """iputils ping (netshoot's): one echo, numeric, DF set or cleared explicitly. A short `-i`:
    a packet too big for the probe's own MTU fails at once ("local error: message too long"), and
    ping would then sit out its interval (1 s by default) before exiting. An older iputils refuses
    an interval under 0.2 s to a user (`interval_refused`): ask again with OLD_PING_INTERVAL."""
    if not 0 <= size <= 65507:
        raise ValueError(f"ping payload size out of range: {size}")
    pmtu = "do" if dont_fragment else "dont"
    return ["ping", "-n", "-c1", "-i", f"{interval:g}", "-W", _seconds(timeout), "-M", pmtu, "-s", str(int(size)), _ip(ip)]


def interval_refused(result: ExecResult) -> bool:
    """iputils before 20210202, as a user: "cannot flood; minimal interval allowed for user is 200ms"."""
    return result.exit_code not in (0, 1) and b"minimal interval" in result.stdout + result.stderr


def parse_ping(ip: str, size: int, result: ExecResult) -> PingResult:
    failure = _missing_tool(result)
    if failure:
        return PingResult(ip, size, PingOutcome.ERROR, detail=failure)
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    reply = _PING_REPLY.search(text)
    if result.exit_code == 0 and reply:
        return PingResult(ip, size, PingOutcome.REPLY, rtt_ms=float(reply["rtt"]))
    detail = _ping_detail(text)
    lowered = text.lower()
    if "message too long" in lowered or "frag needed" in lowered:
        mtu = _PING_MTU.search(text)
        return PingResult(ip, size, PingOutcome.FRAG_NEEDED, mtu=int(mtu["mtu"]) if mtu else None, detail=detail)
    if "unreachable" in lowered or "no route to host" in lowered:
        return PingResult(ip, size, PingOutcome.UNREACHABLE, detail=detail)
    if result.exit_code == 1 and " 0 received" in text:
        return PingResult(ip, size, PingOutcome.TIMEOUT, detail=detail)
    return PingResult(ip, size, PingOutcome.ERROR, detail=detail or _unexpected(result))


def _ping_detail(text: str) -> str:
    """The lines that explain a failure: errors and ICMP notices, not the banner or statistics."""
    keep = [
        line.strip()
        for line in text.splitlines()
        if line.startswith(("ping:", "From ")) or "packet loss" in line
    ]
    return "; ".join(keep)


# ---------------------------------------------------------------- listeners

LISTEN_STATES = {"TCP": "0A", "UDP": "07"}  # TCP LISTEN; an unconnected (bound) UDP socket


def listeners_command(protocol: str = "TCP") -> list[str]:
    """/proc/net/tcp{,6} (or udp) of the pod's network namespace: readable with `cat` in nearly any
    image, and the same in every container of the pod."""
    table = protocol.lower()
    return ["cat", f"/proc/net/{table}", f"/proc/net/{table}6"]


def parse_listeners(result: ExecResult, pod_ip: str | None, protocol: str = "TCP",
                    container: str | None = None) -> ListenerTable:
    """The sockets listening (TCP) or bound unconnected (UDP) in the pod; NO_TOOL when the container
    has no `cat` (a distroless image), UNAVAILABLE when it could not be read otherwise."""
    text = result.stdout.decode("ascii", "replace")
    if result.error is not None and result.error.kind is ExecErrorKind.MISSING_BINARY:
        return ListenerTable(ListenerStatus.NO_TOOL, detail=f"container {container or '?'} has no "
                             f"{result.error.binary or 'cat'} (a distroless image?)", container=container)
    if result.error is not None or "local_address" not in text:
        return ListenerTable(ListenerStatus.UNAVAILABLE, detail=_missing_tool(result) or _unexpected(result),
                             container=container)
    state = LISTEN_STATES[protocol]
    found: dict[tuple[str, int], Listener] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != state or ":" not in fields[1]:
            continue
        address, port = _proc_address(fields[1])
        if address is not None:
            found.setdefault((address, port), Listener(address, port, bind_scope(address, pod_ip)))
    listeners = tuple(sorted(found.values(), key=lambda item: (item.port, item.address)))
    return ListenerTable(ListenerStatus.OK, listeners, container=container)


def _proc_address(field: str) -> tuple[str | None, int]:
    """`0100007F:1F90` or the 32-hex-digit IPv6 form: little-endian 32-bit words, hex port."""
    hex_ip, hex_port = field.split(":", 1)
    try:
        raw = bytes.fromhex(hex_ip)
        port = int(hex_port, 16)
    except ValueError:
        return None, 0
    if len(raw) not in (4, 16):
        return None, port
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), port

