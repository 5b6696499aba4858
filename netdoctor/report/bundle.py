"""`--bundle FILE.tar.gz`: everything an incident channel needs in one file. Called by
check.command with finished Reports, the runs' captures and the API objects the verdict used.

Layout: `<target>/report.txt|.json|.md` per target (and `summary.txt` for several), `<target>/
pcaps/<point>.pcap` (as captured: Linux cooked v2, every interface of a node), `<target>/nodes/
<node>/inventory.yaml` (interfaces, routes, neighbours, bridge fdb as netdoctor read them) and
`conntrack.txt` (the node's tracked connections of the probes), `<target>/objects/<kind>_<ns>_<name>
.yaml` (never a Secret; env values and last-applied annotations removed) and `README.txt`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
import time
from pathlib import Path

import yaml

from netdoctor.model import Capture, Report


@dataclasses.dataclass(frozen=True)
class Part:
    """One target's share of the bundle."""

    report: Report
    captures: tuple[Capture, ...]
    objects: tuple[dict, ...]
    unread: tuple[str, ...] = ()


def write(path: Path, parts: list[Part], summary: str = "") -> int:
    """Write the bundle; return how many files it holds."""
    files: dict[str, bytes] = {}
    for part in parts:
        files.update(_files(_folder(part.report) if len(parts) > 1 else "", part))
    if summary:
        files["summary.txt"] = summary.encode()
    files["README.txt"] = _readme(parts).encode()
    now = time.time()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"netdoctor-bundle/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    return len(files)


def _folder(report: Report) -> str:
    return f"{report.namespace}_{report.target.replace('/', '_')}/"


def _files(prefix: str, part: Part) -> dict[str, bytes]:
    from netdoctor.report.json import render as as_json
    from netdoctor.report.markdown import render as as_markdown

    files = {f"{prefix}report.txt": _text(part.report).encode(), f"{prefix}report.json": as_json(part.report).encode(),
             f"{prefix}report.md": as_markdown(part.report).encode()}
    for capture in part.captures:
        point = capture.point.replace(" ", "-")
        if capture.pcap:
            files[f"{prefix}pcaps/{point}.pcap"] = capture.pcap
        if capture.probe is None and capture.inventory is not None:
            files[f"{prefix}nodes/{point}/inventory.yaml"] = yaml.safe_dump(
                json.loads(json.dumps(dataclasses.asdict(capture.inventory), default=str)), sort_keys=False).encode()
        if capture.probe is None and not capture.blind:
            files[f"{prefix}nodes/{point}/conntrack.txt"] = "".join(
                f"{n.proto} {n.src}:{n.sport} -> {n.dst}:{n.dport} reply from {n.reply_src}:{n.reply_sport}\n"
                for n in capture.nat).encode()
    for obj in part.objects:
        meta = obj.get("metadata") or {}
        name = f"{obj.get('kind', 'Object')}_{meta.get('namespace') or 'cluster'}_{meta.get('name', '?')}"
        files[f"{prefix}objects/{name}.yaml"] = yaml.safe_dump(obj, sort_keys=False).encode()
    if part.unread:
        files[f"{prefix}objects/UNREAD.txt"] = "".join(f"{line}\n" for line in part.unread).encode()
    return files


def _text(report: Report) -> str:
    from rich.console import Console

    from netdoctor.report import text

    out = io.StringIO()
    text.render(report, Console(file=out, width=120, no_color=True, highlight=False, soft_wrap=False,
                                force_terminal=False), verbose=True)
    return out.getvalue()


def _readme(parts: list[Part]) -> str:
    lines = ["netdoctor incident bundle", ""]
    for part in parts:
        r = part.report
        lines.append(f"{r.namespace}/{r.target}: {r.state.value.upper()}"
                     + (f" at {r.diagnosis.layer.value}" if r.diagnosis.layer and r.state.value != "pass" else "")
                     + f": {r.diagnosis.headline}")
    lines += ["", "report.txt/.json/.md: the verdict; pcaps/: one per capture point (open in Wireshark: Linux "
              "cooked v2 names each packet's interface); nodes/NODE/: inventory.yaml (interfaces, routes, "
              "neighbours, fdb) and conntrack.txt (the probes' tracked connections); objects/: the API objects the "
              "verdict used (never a Secret; env values removed)."]
    return "\n".join(lines) + "\n"
