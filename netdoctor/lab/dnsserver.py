"""The lab's cluster DNS: a CoreDNS look-alike serving Services and pods from a zone file.

The lab's DNS controller calls `build_zone` with Services, EndpointSlices and pods and writes
the result as JSON (atomically, by rename); the lab runs the server in the DNS pod's namespace as
`python3 -m netdoctor.lab.dnsserver --zone FILE --listen 0.0.0.0 --port 53`. The server reloads
the file when it changes (0.2 s mtime poll, or at once on SIGHUP) and exits on SIGTERM/SIGINT.

Answers (TTL 5, authoritative, like CoreDNS's kubernetes plugin):
- `<svc>.<ns>.svc.<domain>` A: the ClusterIP; headless: the ready endpoints' IPs, and each
  endpoint as `<hostname or a-b-c-d>.<svc>.<ns>.svc.<domain>`. A headless Service with no ready
  endpoint has no records (NXDOMAIN, as CoreDNS). ExternalName: a CNAME, followed by the
  target's records when the target is in the cluster domain (outside it: no upstream to ask).
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports.
- `a-b-c-d.<ns>.pod.<domain>` A for pods that exist ("pods verified").
- PTR in in-addr.arpa for ClusterIPs and headless endpoints.
- Names in the cluster domain or in-addr.arpa that don't exist: NXDOMAIN; existing names (and
  their parents, e.g. `<ns>.svc.<domain>`) with no data of the asked type: NOERROR/NODATA; both
  carry the zone's SOA so resolvers cache the negative answer.
- Names outside those zones: REFUSED. This server has no upstream; REFUSED is what CoreDNS
  answers for a zone it doesn't serve, and unlike NXDOMAIN it doesn't claim the name is absent.

Zone file (JSON): {"domain": D, "ttl": 5, "records": {name: {type: [rdata, ...]}},
"overrides": {name: [ip, ...]}}; names are lower-case FQDNs without the final dot, rdata is
presentation format. An override replaces a name's A records (e.g. a stale record for a fault).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import struct
import threading
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DEFAULT_TTL = 5
REVERSE_ZONE = "in-addr.arpa"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
POLL_SECONDS = 0.2
TCP_IDLE_SECONDS = 5.0
MAX_CNAME_CHAIN = 8

log = logging.getLogger(__name__)


# ---- zone building (pure) -------------------------------------------------------------------

def build_zone(services: list[dict], slices: list[dict], pods: list[dict], domain: str = "cluster.local") -> dict:
    """The JSON-able zone for these objects (see the module docstring for its shape)."""
    domain = domain.strip(".").lower()
    records: dict[str, dict[str, list[str]]] = {}
    for svc in services:
        _add_service(records, svc, _slices_of(svc, slices), domain)
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if ip and ":" not in ip:
            ns = (pod.get("metadata") or {}).get("namespace") or "default"
            _add(records, f"{ip.replace('.', '-')}.{ns}.pod.{domain}", "A", ip)
    return {"domain": domain, "ttl": DEFAULT_TTL,
            "records": {name: {t: sorted(set(v)) for t, v in types.items()} for name, types in sorted(records.items())}}


def _add(records: dict, name: str, rdtype: str, rdata: str) -> None:
    records.setdefault(name.lower(), {}).setdefault(rdtype, []).append(rdata)


def _slices_of(svc: dict, slices: list[dict]) -> list[dict]:
    meta = svc.get("metadata") or {}
    return [s for s in slices
            if (s.get("metadata") or {}).get("namespace") == meta.get("namespace")
            and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == meta.get("name")
            and s.get("addressType", "IPv4") == "IPv4"]


def _add_service(records: dict, svc: dict, slices: list[dict], domain: str) -> None:
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    fqdn = f"{meta['name']}.{meta.get('namespace') or 'default'}.svc.{domain}"
    if spec.get("type") == "ExternalName":
        _add(records, fqdn, "CNAME", spec["externalName"].rstrip(".") + ".")
    elif spec.get("clusterIP") in (None, "", "None"):
        _add_headless(records, fqdn, spec, slices)
    else:
        _add(records, fqdn, "A", spec["clusterIP"])
        _add(records, _reverse(spec["clusterIP"]), "PTR", fqdn + ".")
        for port in spec.get("ports") or []:
            if port.get("name"):
                srv = f"_{port['name']}._{(port.get('protocol') or 'TCP').lower()}.{fqdn}"
                _add(records, srv, "SRV", f"0 100 {port['port']} {fqdn}.")


def _add_headless(records: dict, fqdn: str, spec: dict, slices: list[dict]) -> None:
    all_addresses = bool(spec.get("publishNotReadyAddresses"))
    for sl in slices:
        for ep in sl.get("endpoints") or []:
            if not all_addresses and (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in ep.get("addresses") or []:
                target = f"{ep.get('hostname') or ip.replace('.', '-')}.{fqdn}"
                _add(records, fqdn, "A", ip)
                _add(records, target, "A", ip)
                _add(records, _reverse(ip), "PTR", target + ".")
                for port in sl.get("ports") or []:
                    if port.get("name"):
                        srv = f"_{port['name']}._{(port.get('protocol') or 'TCP').lower()}.{fqdn}"
                        _add(records, srv, "SRV", f"0 100 {port['port']} {target}.")


def _reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


# ---- answering (pure) -----------------------------------------------------------------------

@dataclass
class Zone:
    """A loaded zone file, ready to answer questions."""

    domain: dns.name.Name
    ttl: int
    rrsets: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = field(default_factory=dict)
    parents: set[dns.name.Name] = field(default_factory=set)  # empty non-terminals

    @classmethod
    def from_json(cls, data: dict) -> Zone:
        ttl = int(data.get("ttl", DEFAULT_TTL))
        zone = cls(dns.name.from_text(data.get("domain", "cluster.local")), ttl)
        records = {k.lower().rstrip("."): dict(v) for k, v in (data.get("records") or {}).items()}
        for name, ips in (data.get("overrides") or {}).items():
            records.setdefault(name.lower().rstrip("."), {})["A"] = list(ips)
        for name, types in records.items():
            owner = dns.name.from_text(name)
            zone.rrsets[owner] = {
                dns.rdatatype.from_text(t): dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, t, rdata)
                for t, rdata in types.items() if rdata
            }
            zone.parents.update(_ancestors(owner))
        return zone

    def soa(self) -> dns.rrset.RRset:
        text = f"ns.dns.{self.domain} hostmaster.{self.domain} 1 7200 1800 86400 {self.ttl}"
        return dns.rrset.from_text(self.domain, self.ttl, dns.rdataclass.IN, dns.rdatatype.SOA, text)

    def serves(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.domain) or qname.is_subdomain(dns.name.from_text(REVERSE_ZONE))

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        question = query.question[0]
        qname, qtype = question.name.canonicalize(), question.rdtype
        if not self.serves(qname):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        response.answer = self._lookup(qname, qtype)
        if not response.answer:
            exists = qname in self.rrsets or qname in self.parents or qname == self.domain
            response.set_rcode(dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN)
            response.authority = [self.soa()]
        return response

    def _lookup(self, qname: dns.name.Name, qtype: int, depth: int = 0) -> list[dns.rrset.RRset]:
        if qname == self.domain and qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            return [self.soa()]
        types = self.rrsets.get(qname, {})
        if qtype == dns.rdatatype.ANY:
            return list(types.values())
        if qtype in types:
            return [types[qtype]]
        if dns.rdatatype.CNAME in types:
            return [types[dns.rdatatype.CNAME], *self._chase(types[dns.rdatatype.CNAME], qtype, depth)]
        return []

    def _chase(self, cname: dns.rrset.RRset, qtype: int, depth: int) -> list[dns.rrset.RRset]:
        """A CNAME's target answered too when it is in this zone (CoreDNS chases in its zones)."""
        target = cname[0].target.canonicalize()
        if depth >= MAX_CNAME_CHAIN or not target.is_subdomain(self.domain) or qtype == dns.rdatatype.CNAME:
            return []
        return self._lookup(target, qtype, depth + 1)


def _ancestors(name: dns.name.Name) -> list[dns.name.Name]:
    parents = []
    while len(name) > 1:
        name = name.parent()
        parents.append(name)
    return parents


# ---- server ---------------------------------------------------------------------------------

class ZoneFile:
    """The zone file and the Zone last loaded from it; `reload_if_changed` swaps in a new one."""

    def __init__(self, path: str):
        self.path = path
        self._stamp = self._stat()
        self.zone = self._load()

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self) -> Zone:
        with open(self.path, encoding="utf-8") as fh:
            return Zone.from_json(json.load(fh))

    def reload_if_changed(self, force: bool = False) -> None:
        try:
            stamp = self._stat()
            if stamp == self._stamp and not force:
                return
            self._stamp = stamp
            self.zone = self._load()
            log.info("zone reloaded from %s", self.path)
        except (OSError, ValueError, dns.exception.DNSException) as exc:
            log.warning("keeping the previous zone: cannot load %s: %s", self.path, exc)


def handle_wire(zone: Zone, wire: bytes, max_size: int | None) -> bytes | None:
    """The response to one DNS message, or None if it can't be parsed; max_size: UDP limit."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        log.debug("ignoring malformed query: %s", exc)
        return None
    if len(query.question) != 1:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    response = zone.answer(query)
    if max_size is None:
        return response.to_wire()
    limit = max(512, query.payload) if query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire()


class Server:
    """UDP and TCP listeners; one select loop (UDP, accepts, zone polling), a thread per TCP client."""

    def __init__(self, zone_file: ZoneFile, listen: str, port: int):
        self.zone_file = zone_file
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((listen, port))
        self.tcp.bind((listen, port))
        self.tcp.listen(64)

    def serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.udp, selectors.EVENT_READ, self._on_udp)
            sel.register(self.tcp, selectors.EVENT_READ, self._on_accept)
            while not self.stop.is_set():
                for key, _ in sel.select(timeout=POLL_SECONDS):
                    key.data()
                self.zone_file.reload_if_changed(force=self.reload.is_set())
                self.reload.clear()
        self.udp.close()
        self.tcp.close()

    def _on_udp(self) -> None:
        try:
            wire, peer = self.udp.recvfrom(65535)
            reply = handle_wire(self.zone_file.zone, wire, max_size=512)
            if reply is None:  # in the pod's log: a client that splits its queries shows up here
                log.warning("udp: no answer to %d bytes from %s:%d that are not a DNS query: %s",
                            len(wire), *peer, wire[:16].hex())
            else:
                self.udp.sendto(reply, peer)
        except OSError as exc:  # one client's trouble (e.g. unreachable) must not stop the server
            log.warning("udp: %s", exc)

    def _on_accept(self) -> None:
        try:
            conn, _ = self.tcp.accept()
        except OSError as exc:
            log.warning("tcp accept: %s", exc)
            return
        threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TCP_IDLE_SECONDS)
            try:
                while (wire := _read_tcp_message(conn)) is not None:
                    reply = handle_wire(self.zone_file.zone, wire, max_size=None)
                    if reply is None:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError as exc:  # includes timeouts: the client went quiet or away
                log.debug("tcp client closed: %s", exc)


def _read_tcp_message(conn: socket.socket) -> bytes | None:
    header = _read_exact(conn, 2)
    return None if header is None else _read_exact(conn, struct.unpack("!H", header)[0])


def _read_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netdoctor.lab.dnsserver", description=__doc__.splitlines()[0])
    parser.add_argument("--zone", required=True, help="zone file (JSON) written by the lab")
    parser.add_argument("--listen", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="dnsserver: %(levelname)s %(message)s")
    server = Server(ZoneFile(args.zone), args.listen, args.port)
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: server.reload.set())
    log.info("serving %s on %s:%d", server.zone_file.zone.domain, args.listen, args.port)
    server.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
