"""A host's interfaces, routes, neighbours and bridge FDB: one exec, parsed into an Inventory.

`netdoctor.probe.capture` runs `inventory_script()` in each capturing probe (node or pod namespace) when
its capture ends and hands the output to `parse_inventory`; the capture decoder names interfaces from it, and
`netdoctor.judge.hops` asks the Inventory's lookups which hop a packet takes. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re

from netdoctor.observations import (
    ExecResult,
    Interface,
    InterfaceKind,
    Inventory,
    NatEntry,
    Route,
)

_END = "@@end"
_SCRIPT = (
    "echo @@link; ip -d -o link show || exit; "
    "echo @@addr; ip -o -4 addr show; "
    "echo @@route; ip -o -4 route show table main; "
    "echo @@neigh; ip -4 neigh show; "
    "echo @@fdb; bridge fdb show 2>/dev/null; "
    f"echo {_END}"
)
_SECTIONS = ("@@link", "@@addr", "@@route", "@@neigh", "@@fdb", _END)

_KINDS = {
    "veth": InterfaceKind.VETH,
    "netkit": InterfaceKind.VETH,  # Cilium's veth replacement: also one end per pod
    "bridge": InterfaceKind.BRIDGE,
    **{kind: InterfaceKind.OVERLAY for kind in (
        "vxlan", "geneve", "ipip", "sit", "gre", "gretap", "ip6gre", "ip6gretap", "ip6tnl",
        "wireguard", "tun",
    )},
}
_ROUTE_TYPES = frozenset({
    "unicast", "blackhole", "unreachable", "prohibit", "throw", "local", "broadcast", "multicast",
    "anycast", "nat",
})
_LINK_HEAD = re.compile(r"^(?P<index>\d+): (?P<name>[^\s:@]+)(?:@\S*)?: <(?P<flags>[^>]*)>(?P<rest>.*)$")
_ADDR = re.compile(r"^(?P<index>\d+):\s+\S+\s+inet\s+(?P<address>\S+)")


def inventory_command() -> list[str]:
    """Argv to run in a probe: `ip` link/addr/route/neigh and `bridge fdb`, each section after an
    `@@name` line. Fails only when `ip link` does; `bridge` may be absent."""
    return ["sh", "-c", _SCRIPT]


def inventory_script() -> str:
    """The same as a shell snippet, for `netdoctor.probe.capture` to run right after its capture ends."""
    return _SCRIPT


def parse_inventory(result: ExecResult) -> Inventory:
    """The Inventory in `result`; ValueError (one line) when the exec failed, the output stops
    early, or the interface list can't be read."""
    _check_exec(result)
    sections = _sections(result.stdout.decode("utf-8", "replace"))
    if _END not in sections:
        raise ValueError("inventory output is truncated (no end marker)")
    if not sections.get("@@link"):
        raise ValueError("inventory output has no interface list")
    addresses = _addresses(sections.get("@@addr", []))
    return Inventory(
        interfaces=tuple(_interface(line, addresses) for line in sections["@@link"]),
        routes=tuple(r for r in map(_route, sections.get("@@route", [])) if r is not None),
        neighbours=tuple(n for n in map(_neighbour, sections.get("@@neigh", [])) if n is not None),
        fdb=tuple(e for e in map(_fdb_entry, sections.get("@@fdb", [])) if e is not None),
    )


def _check_exec(result: ExecResult) -> None:
    if result.error is not None:
        raise ValueError(f"inventory command failed: {result.error.message}")
    if result.exit_code != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(f"inventory command exited with {result.exit_code}: {stderr[0] if stderr else 'no message'}")


def _sections(text: str) -> dict[str, list[str]]:
    """Non-empty lines under each `@@name` marker; lines before the first marker are dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() in _SECTIONS:
            current = sections.setdefault(line.strip(), [])
        elif line.strip():
            current.append(line.rstrip())
    return sections


# ---------------------------------------------------------------- interfaces


def _interface(line: str, addresses: dict[int, tuple[str, ...]]) -> Interface:
    """One `ip -d -o link` line: the header, then `\\`-separated detail segments."""
    head, *details = line.split("\\")
    match = _LINK_HEAD.match(head)
    if match is None:
        raise ValueError(f"unreadable interface line: {line[:80]!r}")
    index, flags, rest = int(match["index"]), match["flags"].split(","), match["rest"]
    kind, kind_details = _kind(flags, details)
    overlay = kind is InterfaceKind.OVERLAY
    return Interface(
        index=index,
        name=match["name"],
        kind=kind,
        mtu=_int(_word_after(rest, "mtu")),
        master=_word_after(rest, "master"),
        addresses=addresses.get(index, ()),
        link=_word_after(kind_details, "dev") if overlay else None,
        overlay_port=_int(_word_after(kind_details, "dstport")) if overlay else None,
        up="UP" in flags,
    )


def _kind(flags: list[str], details: list[str]) -> tuple[InterfaceKind, str]:
    """The interface's kind and its kind's detail segment (`vxlan id 1 ... dstport 8472`)."""
    if "LOOPBACK" in flags:
        return InterfaceKind.LOOPBACK, ""
    for segment in details:
        words = segment.split()
        if words and words[0] in _KINDS:
            return _KINDS[words[0]], segment
    return InterfaceKind.DEVICE, ""


def _addresses(lines: list[str]) -> dict[int, tuple[str, ...]]:
    """Interface index -> its IPv4 addresses with prefix (a `peer` address's local side gets /32)."""
    found: dict[int, tuple[str, ...]] = {}
    for line in lines:
        match = _ADDR.match(line)
        address = _ip_interface(match["address"]) if match else None
        if address:
            index = int(match["index"])
            found[index] = found.get(index, ()) + (address,)
    return found


# ---------------------------------------------------------------- routes, neighbours, fdb


def _route(line: str) -> Route | None:
    """One `ip -o -4 route` line. Typed routes (blackhole, unreachable, ...) get no device; a
    multipath route keeps its first nexthop."""
    words = line.split()
    kind = words.pop(0) if words[0] in _ROUTE_TYPES and len(words) > 1 else "unicast"
    destination = "default" if words[0] == "default" else _ip_network(words[0])
    if destination is None:
        return None
    if kind != "unicast":
        return Route(destination, None)
    return Route(destination, _after(words, "dev"), _after(words, "via"))


def _neighbour(line: str) -> tuple[str, str, str] | None:
    """(ip, mac, device) of an `ip neigh` entry that has a link-layer address."""
    words = line.split()
    ip, mac, device = _ip(words[0]), _after(words, "lladdr"), _after(words, "dev")
    return (ip, mac.lower(), device) if ip and mac and device else None


def _fdb_entry(line: str) -> tuple[str, str] | None:
    """(mac, port) of a `bridge fdb` entry on a bridge port; `self` entries and the bridge's own
    address are not ports."""
    words = line.split()
    device, master = _after(words, "dev"), _after(words, "master")
    return (words[0].lower(), device) if device and master and device != master else None


# ---------------------------------------------------------------- small helpers


def _after(words: list[str], key: str) -> str | None:
    """The word following the first `key` in `words`."""
    try:
        return words[words.index(key) + 1]
    except (ValueError, IndexError):
        return None


def _word_after(text: str, key: str) -> str | None:
    return _after(text.split(), key)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _ip_interface(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Interface(text))
    except ValueError:
        return None


def _ip_network(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        return None


# ---------------------------------------------------------------- connection tracking

_CONNTRACK_FIELD = re.compile(r"\b(src|dst|sport|dport|id)=(\S+)")


def conntrack_script(ips: list[str]) -> str:
    """Shell snippet listing the host's tracked connections from `ips` (needs NET_ADMIN; prints
    nothing without it), after an `@@conntrack` line."""
    patterns = " ".join(f"-e 'src={ip} '" for ip in ips)
    return f"echo @@conntrack; conntrack -L 2>/dev/null | grep -F {patterns}; echo @@ctend"


def parse_conntrack(text: str) -> tuple[NatEntry, ...]:
    """The entries between `@@conntrack` and `@@ctend` (`conntrack -L` lines); others are skipped."""
    start, end = text.find("@@conntrack"), text.find("@@ctend")
    if start < 0:
        return ()
    lines = text[start:end if end > start else None].splitlines()[1:]
    return tuple(e for e in map(_nat_entry, lines) if e is not None)


def _nat_entry(line: str) -> NatEntry | None:
    words = line.split()
    if not words or words[0] not in ("tcp", "udp", "icmp"):
        return None
    fields = _CONNTRACK_FIELD.findall(line)
    original, reply = _tuple_fields(fields[: len(fields) // 2]), _tuple_fields(fields[len(fields) // 2:])
    if "src" not in original or "src" not in reply or "dst" not in original:
        return None
    port = "id" if words[0] == "icmp" else "sport"
    return NatEntry(words[0], original["src"], _int(original.get(port)), original["dst"],
                    None if words[0] == "icmp" else _int(original.get("dport")), reply["src"],
                    _int(reply.get("id" if words[0] == "icmp" else "sport")))


def _tuple_fields(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)
