"""What the cluster is made of, in words: the header line the text and Markdown renderers print."""

from __future__ import annotations

from netdoctor.model import ClusterKind, Cni, CniKind, Confidence, Overlay, ProxyKind, ProxyMode, ServiceProxy

_OVERLAY = {Overlay.ROUTED: "routed, no overlay", Overlay.UNKNOWN: "overlay unknown"}


def header(kind: ClusterKind) -> str:
    """`CNI flannel (vxlan overlay) · Service proxy kube-proxy (nftables)`; unknown says what was seen."""
    return f"{cni(kind.cni)} · {proxy(kind.proxy)}"


def cni(c: CniKind) -> str:
    if c.name is Cni.UNKNOWN:
        return f"CNI unknown ({c.evidence[0]})" if c.evidence else "CNI unknown"
    return f"CNI {c.name.value} ({_OVERLAY.get(c.overlay, f'{c.overlay.value} overlay')}{_doubt(c.confidence)})"


def proxy(p: ProxyKind) -> str:
    if p.name is ServiceProxy.UNKNOWN:
        return f"Service proxy unknown ({p.evidence[0]})" if p.evidence else "Service proxy unknown"
    mode = "mode unknown" if p.mode is ProxyMode.UNKNOWN else p.mode.value
    return f"Service proxy {p.name.value} ({mode}{_doubt(p.confidence)})"


def _doubt(confidence: Confidence) -> str:
    return "" if confidence is Confidence.HIGH else f", {confidence.value} confidence"
