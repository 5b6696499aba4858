"""A host's interfaces, routes, neighbours, bridge FDB and tracked connections, from the tools'
machine-readable output: iproute2's JSON and conntrack's XML.

`netdoctor.probe.capture` runs `inventory_script()` in each capturing probe (node or pod namespace),
listing while the capture runs what the traffic does not change and the rest when it ends, with (on
a node) `conntrack_script()`, and hands their output to `parse_inventory` and
`parse_conntrack`: the capture decoder names interfaces from the Inventory, and `netdoctor.judge.hops`
asks its lookups which hop a packet takes and the NatEntries where a Service connection was sent.
An entry that can't be read is skipped, never the host's whole listing. Pure functions, no I/O.

iproute2 JSON: link/addr since 4.13, route/neigh after 4.15, typed routes valid since 5.1; every tagged netshoot (v0.1 of Nov 2021 on: Alpine ≥ 3.13, iproute2 ≥ 5.4; v0.13: 6.x) has it: no text fallback.
"""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Iterable, Iterator

from netdoctor.observations import Interface, InterfaceKind, Inventory, NatEntry, Route

_END = "@@end"
_COMMANDS = {
    "@@link": "ip -j -d link show",
    "@@addr": "ip -j -4 addr show",
    "@@route": "ip -j -4 route show table main",
    "@@neigh": "ip -j -4 neigh show",
    "@@fdb": "bridge -j fdb show",
}
# Each command's stderr is dropped: in the capture stream it would land inside the JSON ("Peer netns
# reference is invalid" for a veth being deleted, "bridge: not found"). The `echo` after each ends the
# line ip leaves open when the kernel cuts a dump short (an unclosed `[`), so the next marker stands alone.
# The commands run at once (bash process substitutions, read in order from fds 3 on): links,
# addresses and routes, which the probes' traffic does not change, while the capture runs; the
# neighbours and the FDB, which it teaches, once it ends, while tcpdump flushes; all are printed
# after that. Stopping a capture costs one short listing, not five in a row.
_DURING = ("@@link", "@@addr", "@@route")
_FDS = {marker: fd for fd, marker in enumerate(_COMMANDS, 3)}
FIRST_FREE_FD = 3 + len(_COMMANDS)  # for what the capture lists beside the inventory (conntrack)


def _started(markers) -> str:
    return "exec " + " ".join(f"{_FDS[m]}< <({_COMMANDS[m]} 2>/dev/null)" for m in markers)


def relayed(fd: int) -> str:
    """Bash that copies what fd `fd` holds to stdout and closes it, with builtins only: a `cat` per
    listing was seven processes more per node when the capture stops, on the machine the check
    waits for."""
    return f"mapfile -t _listed <&{fd}; printf '%s\\n' \"${{_listed[@]}}\"; exec {fd}<&-"


_SCRIPT = (_started(_DURING), _started(m for m in _COMMANDS if m not in _DURING), "; ".join(
    f"echo {marker}; {relayed(fd)}; echo" for marker, fd in _FDS.items()) + f"; echo {_END}")

_KINDS = {
    "veth": InterfaceKind.VETH,
    "netkit": InterfaceKind.VETH,  # Cilium's veth replacement: also one end per pod
    "bridge": InterfaceKind.BRIDGE,
    **{kind: InterfaceKind.OVERLAY for kind in (
        "vxlan", "geneve", "ipip", "sit", "gre", "gretap", "ip6gre", "ip6gretap", "ip6tnl",
        "wireguard", "tun",
    )},
}


def inventory_script() -> tuple[str, str, str]:
    """Three bash snippets for `netdoctor.probe.capture`, run in one shell: the first once its
    capture has started (it starts listing links, IPv4 addresses and main-table routes), the second
    when the capture ends (it starts listing neighbours and the bridge FDB), the third once tcpdump
    has exited (it prints iproute2's JSON of each after an `@@name` line, then `@@end`). A command
    that fails (or `bridge` that is missing) leaves its section empty; the snippets themselves
    always run to their end."""
    return _SCRIPT


def parse_inventory(output: bytes) -> Inventory:
    """The Inventory in `inventory_script()`'s output (anything before its first marker is ignored).
    ValueError (one line) only when the output stops before its end marker or has no interface
    that can be read; any other unreadable entry or section is left out."""
    sections = _sections(output.decode("utf-8", "replace"))
    if _END not in sections:
        raise ValueError("inventory output is truncated (no end marker)")
    addresses = _addresses(_entries(sections.get("@@addr", "")))
    interfaces = _each(lambda entry: _interface(entry, addresses), sections.get("@@link", ""))
    if not interfaces:
        raise ValueError("inventory output has no interface list")
    return Inventory(
        interfaces=interfaces,
        routes=_each(_route, sections.get("@@route", "")),
        neighbours=_each(_neighbour, sections.get("@@neigh", "")),
        fdb=_each(_fdb_entry, sections.get("@@fdb", "")),
        unread=tuple(marker.lstrip("@") for marker in ("@@route", "@@neigh", "@@fdb")
                     if not _readable(sections.get(marker, ""))),
    )


def _readable(section: str) -> bool:
    """Whether a section holds a JSON array at all (an empty table `[]` is read; nothing is not)."""
    return "[" in section


def _sections(text: str) -> dict[str, str]:
    """The text under each marker line; what precedes the first marker is dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() in (*_COMMANDS, _END):
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(line)
    return {marker: "\n".join(lines) for marker, lines in sections.items()}


def _each(read: Callable[[dict], Any], section: str) -> tuple:
    """`read` applied to every object of a section's JSON array, keeping what it could read."""
    return tuple(found for found in map(read, _entries(section)) if found is not None)


# ---------------------------------------------------------------- JSON, entry by entry


def _entries(section: str) -> list[dict]:
    """The objects of a section's JSON array. Parsed whole when it parses; else element by element,
    so an element that is no JSON (an old iproute2's `{"blackhole","dst":…}`) or an array the kernel
    cut short (`[{…},{…` with no `]`) costs only that element. Empty or absent: no entries."""
    try:
        value = json.loads(section)
    except json.JSONDecodeError:
        value = [_element(text) for text in _array_elements(section)]
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _element(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # this element alone is unreadable: `_entries` skips it


def _array_elements(text: str) -> Iterator[str]:
    """The raw text of each top-level element of the JSON array `text` starts with, split at the
    commas between brackets (strings skipped); an array never closed yields its cut last element."""
    start = text.find("[")
    if start < 0:
        return
    depth, quoted, escaped, begin = 0, False, False, start + 1
    for index in range(start, len(text)):
        char = text[index]
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                yield text[begin:index]
                return
        elif char == "," and depth == 1:
            yield text[begin:index]
            begin = index + 1
    yield text[begin:]


# ---------------------------------------------------------------- interfaces


def _interface(entry: dict, addresses: dict[int, tuple[str, ...]]) -> Interface | None:
    """One `ip -j -d link` object; None without an index and a name. The kind comes from
    linkinfo.info_kind; an overlay's underlay device and UDP port from its info_data."""
    index, name = _int(entry.get("ifindex")), _str(entry.get("ifname"))
    if index is None or name is None:
        return None
    flags = _strings(entry.get("flags"))
    info = _object(entry.get("linkinfo"))
    kind = InterfaceKind.LOOPBACK if "LOOPBACK" in flags else _KINDS.get(info.get("info_kind"), InterfaceKind.DEVICE)
    overlay = _object(info.get("info_data")) if kind is InterfaceKind.OVERLAY else {}
    return Interface(
        index=index,
        name=name,
        kind=kind,
        mtu=_int(entry.get("mtu")),
        master=_str(entry.get("master")),
        addresses=addresses.get(index, ()),
        link=_str(overlay.get("link")),
        overlay_port=_int(overlay.get("port")),  # none for a collect-metadata ("external") geneve
        up="UP" in flags,
        tunnel=_str(info.get("info_kind")) if kind is InterfaceKind.OVERLAY else None,
    )


def _addresses(entries: list[dict]) -> dict[int, tuple[str, ...]]:
    """Interface index -> its IPv4 addresses with prefix (a `peer` address's local side: /32)."""
    found: dict[int, tuple[str, ...]] = {}
    for entry in entries:
        index = _int(entry.get("ifindex"))
        for info in _objects(entry.get("addr_info")):
            address = _ip_interface(info.get("local"), info.get("prefixlen"))
            if index is not None and address:
                found[index] = found.get(index, ()) + (address,)
    return found


# ---------------------------------------------------------------- routes, neighbours, fdb


def _route(entry: dict) -> Route | None:
    """One `ip -j route` object. A typed route (blackhole, unreachable, prohibit, throw) gets no
    device; a multipath route keeps its first nexthop; None without a destination, or for a
    unicast route without a device."""
    destination = "default" if entry.get("dst") == "default" else _ip_network(entry.get("dst"))
    if destination is None:
        return None
    if entry.get("type", "unicast") != "unicast":
        return Route(destination, None)
    hop = entry if "dev" in entry else next(iter(_objects(entry.get("nexthops"))), {})
    device = _str(hop.get("dev"))
    return Route(destination, device, _ip(hop.get("gateway"))) if device else None


def _neighbour(entry: dict) -> tuple[str, str, str] | None:
    """(ip, mac, device) of an `ip -j neigh` entry that has a link-layer address."""
    ip, mac, device = _ip(entry.get("dst")), _str(entry.get("lladdr")), _str(entry.get("dev"))
    return (ip, mac.lower(), device) if ip and mac and device else None


def _fdb_entry(entry: dict) -> tuple[str, str] | None:
    """(mac, port) of a `bridge -j fdb` entry on a bridge port; `self` entries (no master) and the
    bridge's own address are not ports."""
    mac, port, bridge = _str(entry.get("mac")), _str(entry.get("ifname")), _str(entry.get("master"))
    return (mac.lower(), port) if mac and port and bridge and port != bridge else None


# ---------------------------------------------------------------- typed reads of JSON values


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _ip(value: Any) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _ip_interface(local: Any, prefixlen: Any) -> str | None:
    if not (isinstance(local, str) and _int(prefixlen) is not None):
        return None
    try:
        return str(ipaddress.IPv4Interface(f"{local}/{prefixlen}"))
    except ValueError:
        return None


def _ip_network(value: Any) -> str | None:
    try:
        return str(ipaddress.IPv4Network(value, strict=False)) if isinstance(value, str) else None
    except ValueError:
        return None


# ---------------------------------------------------------------- connection tracking

_CONNTRACK, _CONNTRACK_END = "@@conntrack", "@@ctend"
_PORTED = ("tcp", "udp")  # conntrack's XML gives ports for these; an ICMP flow has no echo id in it


def conntrack_script(ips: list[str]) -> tuple[str, str]:
    """Two bash snippets, run in the shell of `inventory_script()`'s: the first starts listing, as
    `conntrack -o xml`, the host's tracked connections that involve `ips` (needs NET_ADMIN; lists
    nothing without it) on fd FIRST_FREE_FD; the second prints them between `@@conntrack` and
    `@@ctend` lines. One dump of the table, its flows (one per line) picked by `grep -F`: each
    dump walks the kernel's whole table (~15 ms of CPU on an idle node, seconds on a busy one), once
    however many sources; an image without grep lists each source with `conntrack -s`.
    `parse_conntrack` keeps the flows whose original source is one of them."""
    sources = [str(ipaddress.IPv4Address(ip)) for ip in ips]
    if not sources:
        return ":", f"echo {_CONNTRACK}; echo; echo {_CONNTRACK_END}"
    fd = FIRST_FREE_FD
    picked = " ".join(f"-e '<src>{ip}</src>'" for ip in sources)
    each = "; ".join(f"conntrack -L -s {ip} -o xml 2>/dev/null" for ip in sources)
    started = (f"if command -v grep >/dev/null; then exec {fd}< <(conntrack -L -o xml 2>/dev/null | grep -F {picked}); "
               f"else exec {fd}< <({each}); fi")
    return started, f"echo {_CONNTRACK}; {relayed(fd)}; echo; echo {_CONNTRACK_END}"


def parse_conntrack(text: str, sources: Iterable[str] | None = None) -> tuple[NatEntry, ...]:
    """The TCP and UDP flows between `@@conntrack` and `@@ctend` whose original source is one of
    `sources` (None: every one), each `<flow>` element read on its own: a cut document or a broken
    flow cost only that flow. ICMP flows are left out: their XML has no echo id to match a ping by
    (and no Service translates one)."""
    start = text.find(_CONNTRACK)
    if start < 0:
        return ()
    end = text.find(_CONNTRACK_END, start)
    wanted = None if sources is None else frozenset(sources)
    entries = (e for e in map(_nat_entry, _flows(text[start:end if end > start else None])) if e is not None)
    return tuple(e for e in entries if wanted is None or e.src in wanted)


def _flows(text: str) -> Iterator[str]:
    start = text.find("<flow>")
    while start >= 0:
        end = text.find("</flow>", start)
        if end < 0:
            return
        yield text[start:end + len("</flow>")]
        start = text.find("<flow>", end)


def _nat_entry(flow: str) -> NatEntry | None:
    try:
        element = ElementTree.fromstring(flow)
    except ElementTree.ParseError:
        return None  # this flow alone is unreadable: `parse_conntrack` skips it
    original, reply = _direction(element, "original"), _direction(element, "reply")
    if original is None or reply is None or original[0] not in _PORTED or reply[0] != original[0]:
        return None
    proto, src, dst, sport, dport = original
    _, reply_src, _, reply_sport, _ = reply
    return NatEntry(proto, src, sport, dst, dport, reply_src, reply_sport)


def _direction(flow: ElementTree.Element, direction: str) -> tuple[str, str, str, int | None, int | None] | None:
    """(protocol, src, dst, sport, dport) of one direction of a flow; None when it lacks addresses."""
    meta = next((m for m in flow.iter("meta") if m.get("direction") == direction), None)
    layer4 = meta.find("layer4") if meta is not None else None
    if meta is None or layer4 is None:
        return None
    src, dst = _ip(meta.findtext("layer3/src")), _ip(meta.findtext("layer3/dst"))
    if src is None or dst is None:
        return None
    return layer4.get("protoname", ""), src, dst, _port(layer4.findtext("sport")), _port(layer4.findtext("dport"))


def _port(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
