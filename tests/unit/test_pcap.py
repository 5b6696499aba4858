"""pcap decoding and per-interface files: captures built with scapy, DNS wire bytes with dnspython."""

import io
import subprocess
import sys
import threading

import dns.message
import dns.rcode
import dns.rrset
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, ICMPerror, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapWriter, RawPcapReader, rdpcap

from netdoctor.probe import pcap
from netdoctor.observations import Direction, DnsInfo, Encap, Quoted

T0 = 1_700_000_000.0
NAMES = {2: "eth0", 3: "vxlan.calico", 4: "cali@1/x"}
QNAME = "api.shop.svc.cluster.local."


def capture(*frames, linktype=276, **writer_options) -> bytes:
    """A pcap of `frames` (scapy packets or raw link-layer bytes), 1 ms apart from T0."""
    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype=linktype, sync=True, **writer_options)
    for i, frame in enumerate(frames):
        packet = Raw(frame) if isinstance(frame, bytes) else frame
        packet.time = T0 + i / 1000
        writer.write(packet)
    return buf.getvalue()


def sll2(ifindex=2, outgoing=False, proto=0x0800) -> CookedLinuxV2:
    return CookedLinuxV2(proto=proto, ifindex=ifindex, pkttype=4 if outgoing else 0)


def one(frame, **options):
    (packet,) = pcap.decode(capture(frame, **options), NAMES)
    return packet


def dns_query() -> dns.message.Message:
    return dns.message.make_query(QNAME, "A", id=4242)


def udp_dns(wire: bytes, response=False) -> IP:
    sport, dport = (53, 40000) if response else (40000, 53)
    return IP(src="10.244.1.5", dst="10.96.0.10") / UDP(sport=sport, dport=dport) / Raw(wire)


# ---------------------------------------------------------------- framing and link layers


def test_empty_and_header_only_captures_have_no_packets():
    header_only = capture(sll2() / IP() / TCP())[:24]
    assert pcap.decode(b"", NAMES) == ()
    assert pcap.decode(header_only, NAMES) == ()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"this is not a capture, just some text that is long enough", "not a pcap"),
        (b"\x0a\x0d\x0d\x0a" + bytes(60), "pcapng"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap header"),
    ],
)
def test_garbage_raises_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        pcap.decode(data, NAMES)


def test_unsupported_link_type_raises_value_error():
    with pytest.raises(ValueError, match="link type 105"):
        pcap.decode(capture(b"\x00" * 40, linktype=105), NAMES)


def test_record_longer_than_any_snaplen_is_corrupt():
    data = bytearray(capture(sll2() / IP() / TCP()))
    data[24 + 8 : 24 + 12] = (10**7).to_bytes(4, "little")
    with pytest.raises(ValueError, match="corrupt pcap: record 0"):
        pcap.decode(bytes(data), NAMES)


@pytest.mark.parametrize("cut", [5, 30], ids=["mid-data", "mid-record-header"])
def test_truncated_last_record_keeps_the_complete_ones(cut):
    data = capture(*(sll2() / IP(src="10.0.0.1", dst=f"10.0.0.{i}") / TCP() for i in range(2, 5)))
    packets = pcap.decode(data[:-cut], NAMES)
    assert [p.dst for p in packets] == ["10.0.0.2", "10.0.0.3"]


def test_time_index_and_ip_fields():
    packets = pcap.decode(
        capture(
            sll2() / IP(src="10.244.1.5", dst="10.96.0.1", flags="DF") / TCP(sport=40000, dport=80, flags="S"),
            sll2() / IP(src="10.96.0.1", dst="10.244.1.5") / TCP(sport=80, dport=40000) / Raw(b"x" * 100),
        ),
        NAMES,
    )
    first, second = packets
    assert (first.index, second.index) == (0, 1)
    assert first.time == pytest.approx(T0) and second.time == pytest.approx(T0 + 0.001)
    assert (first.proto, first.src, first.dst, first.sport, first.dport) == ("tcp", "10.244.1.5", "10.96.0.1", 40000, 80)
    assert first.length == 40 and second.length == 140
    assert first.dont_fragment and not second.dont_fragment
    assert first.encap is None and first.dns is None and first.quoted is None


def test_decoders_sharing_what_they_have_seen_decode_alike(monkeypatch):
    """The worker's decoders share one table: a packet met at a second point is not dissected again,
    and each point still gets its own interfaces, times and directions."""
    def syn(ttl):
        return IP(src="10.244.1.5", dst="10.244.2.7", flags="DF", ttl=ttl) / TCP(sport=40000, dport=8080, flags="S")

    pod = capture(sll2(2, outgoing=True) / syn(64))
    node = capture(sll2(4) / syn(64), sll2(3, outgoing=True) / syn(63))
    apart = [pcap.decode(pod, NAMES), pcap.decode(node, NAMES)]
    dissected = []
    real = pcap._dissect
    monkeypatch.setattr(pcap, "_dissect", lambda payload, *rest: dissected.append(payload) or real(payload, *rest))
    seen: dict = {}
    together = []
    for data in (pod, node):
        decoder = pcap.Decoder(seen)
        decoder.feed(data)
        together.append(decoder.packets(NAMES))
    assert together == apart
    assert [p.interface for p in together[1]] == ["cali@1/x", "vxlan.calico"]
    assert len(dissected) == 1 == len(seen)  # the SYN once: its routed copy differs only in TTL and checksum


def test_a_translated_copy_is_dissected_again_a_routed_one_is_not(monkeypatch):
    """Routing rewrites the TTL and the header checksum, which no Packet field comes from; NAT
    rewrites an address, which the judge reads: only the translated copy is dissected again."""
    def syn(dst, ttl):
        return IP(src="10.244.1.5", dst=dst, ttl=ttl) / TCP(sport=40000, dport=80, flags="S")

    data = capture(sll2(2) / syn("10.96.0.10", 64), sll2(3, outgoing=True) / syn("10.96.0.10", 63),
                   sll2(4, outgoing=True) / syn("10.244.2.7", 63))
    dissected = []
    real = pcap._dissect
    monkeypatch.setattr(pcap, "_dissect", lambda payload, *rest: dissected.append(payload) or real(payload, *rest))
    packets = pcap.decode(data, NAMES)
    assert [p.dst for p in packets] == ["10.96.0.10", "10.96.0.10", "10.244.2.7"]
    assert [(p.sport, p.dport, p.tcp_flags) for p in packets] == [(40000, 80, "S")] * 3
    assert len(dissected) == 2


def test_nanosecond_big_endian_pcap():
    data = capture(sll2() / IP() / TCP(), sll2() / IP() / TCP(), nano=True, endianness=">")
    assert [p.time for p in pcap.decode(data, NAMES)] == pytest.approx([T0, T0 + 0.001])


def test_direction_and_interface_names():
    packets = pcap.decode(
        capture(sll2(2, outgoing=True) / IP() / UDP(), sll2(3) / IP() / UDP(), sll2(9) / IP() / UDP()), NAMES
    )
    assert [(p.ifindex, p.interface, p.direction) for p in packets] == [
        (2, "eth0", Direction.OUT),
        (3, "vxlan.calico", Direction.IN),
        (9, "if9", Direction.IN),
    ]


def test_non_ipv4_records_are_skipped_but_counted():
    data = capture(
        sll2(proto=0x0806) / ARP(),
        sll2() / IP(dst="10.0.0.1") / ICMP(),
        sll2(proto=0x86DD) / IPv6() / UDP(),
        sll2() / IP(dst="10.0.0.2") / ICMP(),
    )
    assert [(p.index, p.dst) for p in pcap.decode(data, NAMES)] == [(1, "10.0.0.1"), (3, "10.0.0.2")]


def test_ethernet_capture_has_interface_zero_and_direction_in():
    data = capture(Ether() / ARP(), Ether() / IP(dst="10.0.0.9") / TCP(), linktype=1)
    (packet,) = pcap.decode(data, NAMES)
    assert (packet.index, packet.dst, packet.ifindex, packet.interface, packet.direction) == (
        1, "10.0.0.9", 0, "if0", Direction.IN,
    )


def test_linux_sll_capture_keeps_the_outgoing_direction():
    data = capture(CookedLinux(pkttype=4, proto=0x0800) / IP() / TCP(), CookedLinux(pkttype=0, proto=0x0800) / IP() / TCP(), linktype=113)
    assert [(p.ifindex, p.direction) for p in pcap.decode(data, NAMES)] == [(0, Direction.OUT), (0, Direction.IN)]


def test_raw_ip_capture_skips_ipv6():
    data = capture(bytes(IPv6() / UDP()), bytes(IP(dst="10.0.0.3") / UDP(sport=1, dport=2)), linktype=101)
    (packet,) = pcap.decode(data, NAMES)
    assert (packet.index, packet.dst, packet.proto, packet.dport, packet.interface) == (1, "10.0.0.3", "udp", 2, "if0")


# ---------------------------------------------------------------- transport and ICMP


@pytest.mark.parametrize("flags", ["S", "SA", "RA", "PA", "FA"])
def test_tcp_flag_letters(flags):
    assert one(sll2() / IP() / TCP(flags=flags)).tcp_flags == flags


def test_non_first_fragment_keeps_the_protocol_without_ports():
    packet = one(sll2() / IP(proto=17, frag=185) / Raw(b"x" * 40))
    assert (packet.proto, packet.sport, packet.dport, packet.length) == ("udp", None, None, 60)


def test_other_ip_protocols_are_ip():
    assert one(sll2() / IP(proto=47) / Raw(b"\x00" * 8)).proto == "ip"


def test_icmp_echo_has_its_id():
    request = one(sll2() / IP() / ICMP(type=8, id=777, seq=1))
    reply = one(sll2() / IP() / ICMP(type=0, id=777, seq=1))
    assert (request.proto, request.icmp_type, request.icmp_code, request.icmp_id) == ("icmp", 8, 0, 777)
    assert (reply.icmp_type, reply.icmp_id, reply.quoted) == (0, 777, None)


def test_port_unreachable_quotes_the_dns_query():
    error = (
        IP(src="10.244.2.7", dst="10.244.1.5")
        / ICMP(type=3, code=3)
        / IPerror(src="10.244.1.5", dst="10.244.2.7")
        / UDPerror(sport=40000, dport=53)
        / Raw(dns_query().to_wire())
    )
    packet = one(sll2() / error)
    assert (packet.proto, packet.icmp_type, packet.icmp_code, packet.icmp_id) == ("icmp", 3, 3, None)
    assert packet.quoted == Quoted("udp", "10.244.1.5", "10.244.2.7", sport=40000, dport=53)
    assert packet.dns is None


def test_frag_needed_quotes_the_tcp_syn_from_its_first_eight_bytes():
    syn = IP(src="10.244.1.5", dst="10.244.2.7", flags="DF") / TCP(sport=41000, dport=8080, flags="S")
    error = IP(src="192.168.0.1", dst="10.244.1.5") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(bytes(syn)[:28])
    packet = one(sll2() / error)
    assert (packet.icmp_type, packet.icmp_code) == (3, 4)
    assert packet.quoted == Quoted("tcp", "10.244.1.5", "10.244.2.7", sport=41000, dport=8080)


def test_time_exceeded_quotes_an_echo_request():
    error = IP(src="192.168.0.1", dst="10.244.1.5") / ICMP(type=11) / IPerror(src="10.244.1.5", dst="10.244.9.9") / ICMPerror(type=8, id=99)
    assert one(sll2() / error).quoted == Quoted("icmp", "10.244.1.5", "10.244.9.9", icmp_id=99)


def test_icmp_error_without_a_quoted_header():
    assert one(sll2() / IP() / ICMP(type=3, code=1)).quoted is None


# ---------------------------------------------------------------- tunnels


def vxlan(port: int, inner) -> IP:
    return IP(src="192.168.0.11", dst="192.168.0.12") / UDP(sport=51000, dport=port) / VXLAN(vni=4096) / inner


@pytest.mark.parametrize("port", [8472, 4789])
def test_vxlan_describes_the_inner_packet(port):
    inner = Ether() / IP(src="10.244.1.5", dst="10.244.2.7", flags="DF") / TCP(sport=40000, dport=8080, flags="S")
    packet = one(sll2(3) / vxlan(port, inner))
    assert (packet.proto, packet.src, packet.dst, packet.sport, packet.dport) == ("tcp", "10.244.1.5", "10.244.2.7", 40000, 8080)
    assert (packet.length, packet.dont_fragment, packet.tcp_flags, packet.interface) == (40, True, "S", "vxlan.calico")
    assert packet.encap == Encap("vxlan", "192.168.0.11", "192.168.0.12", port, 4096)


def test_vxlan_carrying_dns_decodes_the_inner_query():
    packet = one(sll2() / vxlan(8472, Ether() / udp_dns(dns_query().to_wire())))
    assert packet.encap is not None and packet.dns == DnsInfo(4242, False, "NOERROR", QNAME)


def test_vxlan_with_a_non_ipv4_inner_frame_describes_the_outer_packet():
    packet = one(sll2() / vxlan(8472, Ether() / ARP()))
    assert (packet.proto, packet.src, packet.dst, packet.dport, packet.encap) == ("udp", "192.168.0.11", "192.168.0.12", 8472, None)


def test_geneve_describes_the_inner_packet():
    geneve = pytest.importorskip("scapy.contrib.geneve")
    outer = IP(src="192.168.0.11", dst="192.168.0.12") / UDP(sport=51000, dport=6081) / geneve.GENEVE(vni=77, proto=0x6558)
    packet = one(sll2() / outer / Ether() / IP(src="10.244.1.5", dst="10.244.2.7") / ICMP(type=8, id=5))
    assert (packet.proto, packet.src, packet.icmp_id) == ("icmp", "10.244.1.5", 5)
    assert packet.encap == Encap("geneve", "192.168.0.11", "192.168.0.12", 6081, 77)


# ---------------------------------------------------------------- DNS


def test_dns_query():
    packet = one(sll2() / udp_dns(dns_query().to_wire()))
    assert packet.dns == DnsInfo(id=4242, response=False, rcode="NOERROR", qname=QNAME, answers=())


def test_dns_response_with_addresses():
    response = dns.message.make_response(dns_query())
    response.answer.append(dns.rrset.from_text(QNAME, 30, "IN", "A", "10.96.0.20", "10.96.0.21"))
    response.answer.append(dns.rrset.from_text(QNAME, 30, "IN", "AAAA", "fd00::20"))
    response.answer.append(dns.rrset.from_text(QNAME, 30, "IN", "TXT", '"not an address"'))
    packet = one(sll2() / udp_dns(response.to_wire(), response=True))
    assert packet.dns == DnsInfo(4242, True, "NOERROR", QNAME, packet.dns.answers)
    assert sorted(packet.dns.answers) == ["10.96.0.20", "10.96.0.21", "fd00::20"]


def test_dns_nxdomain():
    response = dns.message.make_response(dns_query())
    response.set_rcode(dns.rcode.NXDOMAIN)
    packet = one(sll2() / udp_dns(response.to_wire(), response=True))
    assert packet.dns == DnsInfo(4242, True, "NXDOMAIN", QNAME)


def test_dns_message_without_a_question_has_an_empty_qname():
    message = dns.message.Message(id=7)
    assert one(sll2() / udp_dns(message.to_wire())).dns == DnsInfo(7, False, "NOERROR", "")


def test_dns_payload_cut_by_the_snaplen_is_not_decoded():
    full = bytes(sll2() / udp_dns(dns_query().to_wire()))
    packet = one(full[:-10])
    assert (packet.proto, packet.dport, packet.dns) == ("udp", 53, None)


def test_not_dns_on_port_53_is_not_decoded():
    assert one(sll2() / udp_dns(b"\x01\x02\x03")).dns is None


def test_dns_only_on_port_53():
    assert one(sll2() / IP() / UDP(sport=40000, dport=5353) / Raw(dns_query().to_wire())).dns is None


# ---------------------------------------------------------------- per-interface files


def read_back(path):
    reader = RawPcapReader(str(path))
    try:
        return reader.linktype, [bytes(p) for p in rdpcap(str(path))]
    finally:
        reader.close()


def test_write_per_interface(tmp_path):
    frames = [
        sll2(2, outgoing=True) / IP(dst="10.0.0.1") / TCP(),
        sll2(4) / IP(dst="10.0.0.2") / UDP(),
        sll2(2) / IP(dst="10.0.0.3") / ICMP(),
        sll2(9, proto=0x0806) / ARP(),
    ]
    data = capture(*frames, snaplen=9000)
    directory = tmp_path / "captures" / "node-a"
    paths = pcap.write_per_interface(data + b"\x00" * 7, NAMES, directory, "node-a")
    names = ["node-a_all.pcap", "node-a_cali_1_x.pcap", "node-a_eth0.pcap", "node-a_if9.pcap"]
    assert paths == [directory / name for name in names]
    expected = {
        "node-a_all.pcap": frames,
        "node-a_eth0.pcap": [frames[0], frames[2]],
        "node-a_cali_1_x.pcap": [frames[1]],
        "node-a_if9.pcap": [frames[3]],
    }
    for path in paths:
        assert path.read_bytes()[:24] == data[:24]  # same link type, snaplen and time resolution
        linktype, packets = read_back(path)
        assert linktype == 276 and packets == [bytes(f) for f in expected[path.name]]
    assert [p.time for p in rdpcap(str(directory / "node-a_eth0.pcap"))] == pytest.approx([T0, T0 + 0.002])
    assert pcap.write_per_interface(b"", NAMES, tmp_path / "none", "x") == []


def test_written_files_decode_like_the_capture(tmp_path):
    data = capture(sll2(2) / IP(dst="10.0.0.1") / TCP(), sll2(3) / IP(dst="10.0.0.2") / TCP())
    paths = pcap.write_per_interface(data, NAMES, tmp_path, "p")
    assert pcap.decode((tmp_path / "p_all.pcap").read_bytes(), NAMES) == pcap.decode(data, NAMES)
    assert [p.dst for p in pcap.decode((tmp_path / "p_vxlan.calico.pcap").read_bytes(), NAMES)] == ["10.0.0.2"]
    assert len(paths) == 3


# ---------------------------------------------------------------- lazy scapy


def test_importing_the_module_does_not_import_scapy_and_preload_does():
    script = (
        "import sys, netdoctor.probe.pcap as p\n"
        "assert not [m for m in sys.modules if m.startswith('scapy')], 'scapy imported'\n"
        "p.preload(); p.preload()\n"
        "assert 'scapy.layers.vxlan' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_preload_from_several_threads():
    threads = [threading.Thread(target=pcap.preload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert one(sll2() / IP() / TCP(flags="S")).tcp_flags == "S"


# ---------------------------------------------------------------- streaming


def mixed_capture() -> bytes:
    query = dns_query().to_wire()
    inner = IP(src="10.244.1.5", dst="10.244.2.7") / TCP(sport=40000, dport=8080, flags="S")
    tunnelled = IP(src="172.18.0.2", dst="172.18.0.3") / UDP(sport=5555, dport=8472) / VXLAN(vni=1) / Ether() / inner
    return capture(sll2(2) / inner, sll2(3) / tunnelled, sll2(2) / udp_dns(query), sll2(2, outgoing=True) / inner,
                   sll2(4) / IPv6(), sll2(2) / IP(src="10.244.1.5", dst="10.244.2.7") / ICMP(type=8, id=7))


@pytest.mark.parametrize("size", [1, 7, 24, 100, 10_000])
def test_a_stream_fed_in_pieces_decodes_as_the_whole(size):
    data = mixed_capture()
    decoder = pcap.Decoder()
    for start in range(0, len(data), size):
        decoder.feed(data[start:start + size])
    assert decoder.packets(NAMES) == pcap.decode(data, NAMES)
    assert decoder.data == data
    assert [p.encap.kind if p.encap else None for p in decoder.packets(NAMES)] == [None, "vxlan", None, None, None]


def test_the_same_bytes_on_two_interfaces_are_two_packets():
    first, _, _, again, _ = pcap.decode(mixed_capture(), NAMES)
    assert (first.interface, again.interface, first.index, again.index) == ("eth0", "eth0", 0, 3)
    assert (first.direction, again.direction) == (Direction.IN, Direction.OUT)
    assert first.tcp_flags == again.tcp_flags == "S"


def test_a_bad_stream_is_refused_when_its_packets_are_asked_for():
    decoder = pcap.Decoder()
    decoder.feed(b"\x00" * 40)
    with pytest.raises(ValueError, match="not a pcap capture"):
        decoder.packets(NAMES)


def test_a_transport_header_cut_short_leaves_the_packet_without_its_fields():
    whole = bytes(IP(src="10.244.1.5", dst="10.244.2.7") / ICMP(type=3, code=3) / IPerror() / UDPerror())
    (packet,) = pcap.decode(capture(sll2() / Raw(whole[:25])), NAMES)
    assert (packet.proto, packet.src, packet.icmp_type, packet.quoted) == ("icmp", "10.244.1.5", None, None)
