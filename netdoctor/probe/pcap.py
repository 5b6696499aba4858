"""Packet captures: classic pcap bytes in, `netdoctor.observations.Packet`s out.

Called by the probe stage's capture code (`netdoctor.probe.capture`), which feeds a `Decoder` the
pcap streamed back from `tcpdump -i any -U --immediate-mode -w -` run in probe pods as it arrives
(each record is decoded while the steps still run), and by `netdoctor.check.command`, which writes
`--pcap DIR` files with `write_per_interface`. This is the only module that imports scapy, lazily
(`preload` lets a background thread pay the import early, dnspython's with it); scapy types never
leave it. The record framing and the link-layer headers are read here with `struct`; scapy
dissects only the headers the judge reads, one layer at a time (IPv4, then TCP or UDP, the VXLAN
header and the inner IPv4 and transport headers of a tunnelled packet; ICMP with what its errors
quote), never payloads; dnspython decodes DNS payloads. A packet seen again on another interface
with the same bytes (but for the TTL and header checksum a router rewrites) is dissected once.
Checksums are never looked at: offload makes them wrong at every hop.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdoctor.observations import Direction, DnsInfo, Encap, Packet, Quoted

_HEADER_LEN = 24
_RECORD_HEADER_LEN = 16
_MAX_RECORD = 262144  # tcpdump's default snaplen: a longer record means a corrupt file
_MAGICS = {  # magic as stored → (byte order, timestamp fraction ticks per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_SLL2 = struct.Struct("!H2xI2xB")  # protocol, ifindex, packet type
_SLL2_LEN = 20
_SLL = struct.Struct("!H12xH")  # packet type, protocol
_SLL_LEN = 16
_ETHER = struct.Struct("!12xH")  # ethertype
_ETHER_LEN = 14
_VXLAN_PORTS = (8472, 4789)
_GENEVE_PORT = 6081
_ICMP_ECHO_TYPES = (0, 8)
_ICMP_ERROR_TYPES = (3, 11, 12)
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class _Layers:
    """The scapy classes used here, imported once by `_layers`."""

    ether: Any
    ip: Any
    iperror: Any
    tcp: Any
    udp: Any
    icmp: Any
    vxlan: Any
    geneve: Any  # None when scapy.contrib.geneve can't be imported


@dataclass(frozen=True)
class _Header:
    raw: bytes  # the 24-byte global header, copied as is into written files
    record: struct.Struct  # the record header in the file's byte order
    ticks: float  # timestamp fraction units per second (µs or ns pcap)
    snaplen: int
    linktype: int


@dataclass(frozen=True)
class _Record:
    index: int
    time: float
    raw: bytes  # record header and captured bytes

    @property
    def frame(self) -> bytes:
        return self.raw[_RECORD_HEADER_LEN:]


@dataclass(frozen=True)
class _Frame:
    """What the link-layer header says about a record."""

    ifindex: int
    direction: Direction
    ethertype: int
    payload: bytes


_lock = threading.Lock()
_loaded: _Layers | None = None


def preload() -> None:
    """Import scapy and bind the tunnel ports now, and dnspython's parser (idempotent, thread-safe)."""
    _layers()
    import dns.message  # what `_dns` imports at the first DNS packet


def decode(data: bytes, names: Mapping[int, str]) -> tuple[Packet, ...]:
    """The IPv4 packets of a whole pcap file, in capture order; `names` maps ifindex → name.

    Empty or header-only data gives (); a truncated last record is dropped; data that is not a
    classic pcap of a supported link type raises ValueError."""
    decoder = Decoder()
    decoder.feed(data)
    return decoder.packets(names)


class Decoder:
    """A pcap as it streams in: `feed` decodes every record complete so far, `packets` names the
    interfaces once the host's list is known. One thread at a time."""

    def __init__(self, seen: dict[bytes, dict[str, Any] | None] | None = None):
        """`seen`: IPv4 bytes → the Packet fields they give, shared by the decoders of one run (the
        same packet crosses the pod's eth0, its veth and the bridge with the same bytes)."""
        self._data = bytearray()
        self._header: _Header | None = None
        self._offset, self._index = _HEADER_LEN, 0
        self._decoded: list[tuple[_Record, _Frame, dict[str, Any]]] = []
        self._seen: dict[bytes, dict[str, Any] | None] = {} if seen is None else seen
        self._failure: ValueError | None = None

    @property
    def data(self) -> bytes:
        """Every byte fed, as captured."""
        return bytes(self._data)

    def feed(self, chunk: bytes) -> None:
        """Take more of the stream and decode the records it completes, once scapy is imported
        (`preload`): a capture's reader never waits for the import (a bad header is kept for
        `packets` to raise)."""
        self._data += chunk
        if self._failure is not None or len(self._data) < _HEADER_LEN or _loaded is None:
            return
        try:
            self._decode_complete()
        except ValueError as exc:
            self._failure = exc

    def packets(self, names: Mapping[int, str]) -> tuple[Packet, ...]:
        """Every IPv4 packet fed, in capture order, with its interface's name; ValueError for data
        that is not a classic pcap of a supported link type."""
        if self._failure is None and len(self._data) >= _HEADER_LEN:
            try:
                self._decode_complete()
            except ValueError as exc:
                self._failure = exc
        if self._failure is not None:
            raise self._failure
        if self._header is None:
            _header(bytes(self._data))  # raises for a header cut short; None for no data
            return ()
        return tuple(Packet(index=record.index, time=record.time, ifindex=frame.ifindex,
                            interface=_interface_name(names, frame.ifindex), direction=frame.direction, **fields)
                     for record, frame, fields in self._decoded)

    def _decode_complete(self) -> None:
        if self._header is None:
            self._header = _header(bytes(self._data[:_HEADER_LEN]))
        layers = _layers()
        link = _LINKS[self._header.linktype]
        for record in _records(self._data, self._header, self._offset, self._index):
            self._offset += len(record.raw)
            self._index = record.index + 1
            frame = link(record.frame)
            fields = self._fields(frame, layers)
            if fields is not None:
                self._decoded.append((record, frame, fields))

    def _fields(self, frame: _Frame, layers: _Layers) -> dict[str, Any] | None:
        return _ipv4_fields(frame.payload, layers, self._seen) if frame.ethertype == _ETH_P_IP else None


def write_per_interface(data: bytes, names: Mapping[int, str], directory: Path, prefix: str) -> list[Path]:
    """Write `<prefix>_<interface>.pcap` per interface and `<prefix>_all.pcap`, with the original
    link type, snaplen, timestamps and record bytes; return the paths written, sorted."""
    header = _header(data)
    if header is None:
        return []
    link = _LINKS[header.linktype]
    everything: list[bytes] = []
    files: dict[Path, list[bytes]] = {directory / f"{prefix}_all.pcap": everything}
    for record in _records(data, header):
        name = _interface_name(names, link(record.frame).ifindex)
        files.setdefault(directory / f"{prefix}_{_UNSAFE.sub('_', name)}.pcap", []).append(record.raw)
        everything.append(record.raw)
    directory.mkdir(parents=True, exist_ok=True)
    for path, records in files.items():
        path.write_bytes(header.raw + b"".join(records))
    return sorted(files)


# ---------------------------------------------------------------- scapy, imported lazily


def _layers() -> _Layers:
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _import_layers()
        return _loaded


def _import_layers() -> _Layers:
    from scapy.config import conf

    # Dissecting sends nothing: scapy need not read the host's routing tables at import (~50 ms;
    # the settings exist from scapy 2.6 on, an older one ignores them).
    conf.route_autoload = conf.route6_autoload = False
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import bind_layers

    bind_layers(UDP, VXLAN, dport=8472)  # Linux's VXLAN port: older scapy binds only 4789
    return _Layers(Ether, IP, IPerror, TCP, UDP, ICMP, VXLAN, _import_geneve())


def _import_geneve() -> Any:
    try:
        from scapy.contrib.geneve import GENEVE
    except ImportError:
        return None  # documented: Geneve packets are then described by their outer headers
    return GENEVE


# ---------------------------------------------------------------- pcap framing


def _header(data: bytes) -> _Header | None:
    """The global header; None for empty data; ValueError for anything but a classic pcap."""
    if not data:
        return None
    magic = data[:4]
    if magic == _PCAPNG_MAGIC:
        raise ValueError("pcapng capture: only classic pcap is supported (tcpdump -w writes it)")
    if magic not in _MAGICS:
        raise ValueError(f"not a pcap capture: unknown magic number 0x{magic.hex()}")
    if len(data) < _HEADER_LEN:
        raise ValueError(f"truncated pcap header: {len(data)} of {_HEADER_LEN} bytes")
    order, ticks = _MAGICS[magic]
    snaplen, linktype = struct.unpack_from(order + "II", data, 16)
    linktype &= 0xFFFF  # the upper bits may carry FCS information
    if linktype not in _LINKS:
        raise ValueError(f"unsupported pcap link type {linktype}")
    return _Header(data[:_HEADER_LEN], struct.Struct(order + "IIII"), ticks, snaplen, linktype)


def _records(data: bytes | bytearray, header: _Header, offset: int = _HEADER_LEN, index: int = 0) -> Iterator[_Record]:
    """Every complete record from `offset` (record `index`) on; a record cut short at the end of
    the data ends the iteration."""
    limit = max(header.snaplen, _MAX_RECORD)
    while offset + _RECORD_HEADER_LEN <= len(data):
        seconds, fraction, captured, _ = header.record.unpack_from(data, offset)
        if captured > limit:
            raise ValueError(f"corrupt pcap: record {index} at byte {offset} claims {captured} bytes")
        end = offset + _RECORD_HEADER_LEN + captured
        if end > len(data):
            return  # the capture stopped mid-record
        yield _Record(index, seconds + fraction / header.ticks, bytes(data[offset:end]))
        offset, index = end, index + 1


# ---------------------------------------------------------------- link layers


def _sll2(frame: bytes) -> _Frame:
    if len(frame) < _SLL2_LEN:
        return _Frame(0, Direction.IN, 0, b"")
    ethertype, ifindex, pkttype = _SLL2.unpack_from(frame)
    return _Frame(ifindex, _direction(pkttype), ethertype, frame[_SLL2_LEN:])


def _sll(frame: bytes) -> _Frame:
    if len(frame) < _SLL_LEN:
        return _Frame(0, Direction.IN, 0, b"")
    pkttype, ethertype = _SLL.unpack_from(frame)
    return _Frame(0, _direction(pkttype), ethertype, frame[_SLL_LEN:])


def _ether(frame: bytes) -> _Frame:
    if len(frame) < _ETHER_LEN:
        return _Frame(0, Direction.IN, 0, b"")
    (ethertype,) = _ETHER.unpack_from(frame)
    return _Frame(0, Direction.IN, ethertype, frame[_ETHER_LEN:])


def _raw_ip(frame: bytes) -> _Frame:
    return _Frame(0, Direction.IN, _ETH_P_IP, frame)  # an IPv6 packet fails the version check


def _direction(pkttype: int) -> Direction:
    return Direction.OUT if pkttype == _PACKET_OUTGOING else Direction.IN


# EN10MB, RAW (12 and 14 are DLT_RAW values seen in files), LINUX_SLL, RAW, IPV4, LINUX_SLL2
_LINKS = {1: _ether, 12: _raw_ip, 14: _raw_ip, 113: _sll, 101: _raw_ip, 228: _raw_ip, 276: _sll2}


# ---------------------------------------------------------------- IPv4 and above


def _ipv4_fields(payload: bytes, layers: _Layers, seen: dict[bytes, dict[str, Any] | None]) -> dict[str, Any] | None:
    """The Packet fields of an IPv4 packet (the inner one when tunnelled), or None for another
    protocol or a packet too short for its header; `seen` holds those of the bytes met before."""
    key = _hop_neutral(payload)
    found = seen.get(key, seen)
    if found is seen:
        found = seen[key] = _dissect(payload, layers, seen)
    return found


def _hop_neutral(payload: bytes) -> bytes:
    """The packet's bytes without the two header fields a router rewrites at every hop, the TTL and
    the header checksum: a packet routed from the pod's veth to the bridge or the tunnel is the same
    packet to the judge (no Packet field comes from them), dissected once. NAT changes an address:
    a translated packet stays a new one."""
    return payload[:8] + b"\0" + payload[9:10] + b"\0\0" + payload[12:]


def _dissect(payload: bytes, layers: _Layers, seen: dict[bytes, dict[str, Any] | None]) -> dict[str, Any] | None:
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ip, l4 = _ipv4(payload, layers)
    tunnel = _tunnel(ip, l4, layers)
    inner = _ipv4_fields(tunnel[0], layers, seen) if tunnel else None
    if tunnel and inner is not None:
        return {**inner, "encap": tunnel[1]}
    return dict(
        proto=_PROTOS.get(ip.proto, "ip"),
        src=ip.src,
        dst=ip.dst,
        length=ip.len,
        dont_fragment=bool(ip.flags.DF),
        encap=None,
        **_transport(ip, l4, layers),
    )


def _ipv4(payload: bytes, layers: _Layers) -> tuple[Any, bytes]:
    """The IPv4 header dissected, and the bytes it carries (up to its total length: no padding)."""
    size = (payload[0] & 0x0F) * 4
    ip = layers.ip(payload[:size])
    return ip, payload[size:ip.len] if ip.len and ip.len > size else payload[size:]


def _interface_name(names: Mapping[int, str], ifindex: int) -> str:
    return names.get(ifindex, f"if{ifindex}")


def _tunnel(outer: Any, l4: bytes, layers: _Layers) -> tuple[bytes, Encap] | None:
    """(the inner IPv4 packet's bytes, Encap) of a VXLAN or Geneve packet carrying IPv4, else None."""
    if outer.proto != 17 or outer.frag or len(l4) < 16:
        return None
    udp = layers.udp(l4[:8])
    if udp.dport in _VXLAN_PORTS:
        kind, size = "vxlan", 8
    elif udp.dport == _GENEVE_PORT and layers.geneve is not None:
        kind, size = "geneve", 8 + (l4[8] & 0x3F) * 4  # its options: opt_len 4-byte words
    else:
        return None
    if len(l4) < 8 + size:
        return None
    tunnel, inner = getattr(layers, kind)(l4[8:8 + size]), l4[8 + size:]
    carried = tunnel.guess_payload_class(inner)
    if carried is layers.ether:
        if len(inner) < _ETHER_LEN or _ETHER.unpack_from(inner)[0] != _ETH_P_IP:
            return None
        inner = inner[_ETHER_LEN:]
    elif carried is not layers.ip:
        return None
    return inner, Encap(kind, outer.src, outer.dst, udp.dport, tunnel.vni)


def _transport(ip: Any, l4: bytes, layers: _Layers) -> dict[str, Any]:
    """The Packet fields of the header above IP (none for a later fragment, an unknown protocol or
    a header cut short)."""
    if ip.frag:
        return {}
    if ip.proto == 6 and len(l4) >= 20:
        tcp = _header_of(layers.tcp, l4[:max(20, (l4[12] >> 4) * 4)])
        return {"sport": tcp.sport, "dport": tcp.dport, "tcp_flags": str(tcp.flags)} if tcp else {}
    if ip.proto == 17 and len(l4) >= 8:
        udp = layers.udp(l4[:8])
        return {"sport": udp.sport, "dport": udp.dport, "dns": _dns(udp, l4[8:udp.len] if udp.len >= 8 else l4[8:])}
    if ip.proto == 1 and len(l4) >= 4:
        icmp = _header_of(layers.icmp, l4)
        return _icmp(icmp, layers) if icmp else {}
    return {}


def _header_of(layer: Any, data: bytes) -> Any:
    """scapy's dissection of a header, or None when the capture cut it too short to dissect (as
    the payload of a whole packet, scapy would have left those bytes raw)."""
    try:
        return layer(data)
    except (struct.error, IndexError, ValueError):
        return None


def _icmp(icmp: Any, layers: _Layers) -> dict[str, Any]:
    fields: dict[str, Any] = {"icmp_type": icmp.type, "icmp_code": icmp.code}
    if icmp.type in _ICMP_ECHO_TYPES:
        fields["icmp_id"] = icmp.id
    if icmp.type in _ICMP_ERROR_TYPES:
        fields["quoted"] = _quoted(icmp.payload, layers)
    return fields


def _quoted(error: Any, layers: _Layers) -> Quoted | None:
    """The packet an ICMP error quotes: its IP header and first 8 bytes."""
    if not isinstance(error, layers.iperror):
        return None
    l4 = error.payload
    proto = _PROTOS.get(error.proto, "ip")
    if isinstance(l4, (layers.tcp, layers.udp)):
        return Quoted(proto, error.src, error.dst, sport=l4.sport, dport=l4.dport)
    if isinstance(l4, layers.icmp) and l4.type in _ICMP_ECHO_TYPES:
        return Quoted(proto, error.src, error.dst, icmp_id=l4.id)
    return Quoted(proto, error.src, error.dst)


def _dns(udp: Any, payload: bytes) -> DnsInfo | None:
    """The DNS message in a port-53 UDP payload; None when dnspython can't parse it (snaplen)."""
    if 53 not in (udp.sport, udp.dport):
        return None
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    try:
        message = dns.message.from_wire(payload)
    except dns.exception.DNSException:
        return None  # documented: a truncated or non-DNS payload is not an error of the capture
    return DnsInfo(
        id=message.id,
        response=bool(message.flags & dns.flags.QR),
        rcode=dns.rcode.to_text(message.rcode()),
        qname=message.question[0].name.to_text() if message.question else "",
        answers=tuple(rd.address for rrset in message.answer
                      if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rd in rrset),
    )
