"""Many targets and a smoke file on a lab shop (issue 14 items 1, 2 and 7): `check --all -n shop`
creates one probe set for every Service (the pods are counted as the API server sees them created);
the shipped examples/shop-smoke.yaml passes, its denials confirmed by the capture; breaking a fault
fails exactly the expectations it should, each with the check's diagnosis."""

from __future__ import annotations

import json
import re
import threading
from io import StringIO
from pathlib import Path

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import MANAGED, start, unique_name

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop-smoke.yaml"


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def run(lab, *argv) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    code = main([*argv, "--kubeconfig", lab.kubeconfig], Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, out.getvalue(), err.getvalue()


class CreatedPods(threading.Thread):
    """Every netdoctor probe pod the API server lists while the block runs (listed every 0.2 s:
    a probe lives for the whole run, seconds)."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.v1, _ = lab.api()
        self.names: set[str] = set()
        self.done = threading.Event()

    def listed(self) -> set[str]:
        return {p.metadata.name for p in self.v1.list_pod_for_all_namespaces(label_selector=MANAGED).items}

    def run(self):
        while not self.done.is_set():
            self.names.update(self.listed() - self.before)
            self.done.wait(0.2)

    def __enter__(self):
        self.before = self.listed()  # an earlier run's probes still terminating
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(5)


PROBE_LINE = re.compile(r"^  ([^:]+): (.*)$")


def planned_probes(lab, *targets) -> list[str]:
    """The probes `--plan` lists for these targets, each as what makes it (namespace, node,
    identity, capture), without its role name."""
    code, out, err = run(lab, "check", *targets, "-n", "shop", "--plan")
    assert code == 0, err
    section, found = None, []
    for line in out.splitlines():
        if not line.startswith("  "):
            section = line
        elif section == "probes to create:":
            found.append(PROBE_LINE.match(line)[2])
    return found


def test_check_all_creates_one_probe_set_for_every_service_of_the_namespace(lab):
    services = ("svc/frontend", "svc/api", "svc/db")
    separately = sum(len(planned_probes(lab, s)) for s in services)
    shared = {p for s in services for p in planned_probes(lab, s)}
    with CreatedPods(lab) as created:
        code, out, err = run(lab, "check", "--all", "-n", "shop", "-o", "json")
    doc = json.loads(out)
    assert code == 0, err + out
    assert [r["target"] for r in doc["summary"]] == ["shop/svc/api", "shop/svc/db", "shop/svc/frontend"]
    assert {r["state"] for r in doc["summary"]} <= {"pass", "warn"}
    assert len(created.names) == len(shared) < separately, (sorted(created.names), shared, separately)


def smoke(lab, path: Path, *extra) -> tuple[int, dict, str]:
    code, out, err = run(lab, "smoke", "-f", str(path), "-o", "json", *extra)
    return code, (json.loads(out) if out.strip() else {}), err


def by_where(doc: dict) -> dict[str, dict]:
    return {r["where"]: r for r in doc["results"]}


def test_the_shop_smoke_file_passes_and_its_denials_are_confirmed_by_the_capture(lab):
    code, doc, err = smoke(lab, EXAMPLE)
    assert code == 0, json.dumps([r for r in doc.get("results", []) if r["state"] != "pass"], indent=1) + err
    results = by_where(doc)
    assert len(results) >= 12 and sum(r["kind"] == "deny" for r in results.values()) >= 5
    assert all(r["state"] == "pass" for r in results.values())
    # toolbox (ops, node of its own) to api: the SYN dies at api's node, in its policy chain
    assert results["flows[5]"]["confirmed"].startswith("confirmed by capture"), results["flows[5]"]
    confirmed = [w for w, r in results.items() if r["kind"] == "deny" and r["confirmed"].startswith("confirmed")]
    assert len(confirmed) >= 5, {w: r["confirmed"] for w, r in results.items() if r["kind"] == "deny"}
    assert doc["probes"] > 0


@pytest.mark.parametrize("fault, broken, layer", [
    ("policy-deny-ingress", {"services[1]", "flows[0]", "flows[1]"}, "policy"),
    ("dns-down", {"services[0]", "services[1]", "services[2]", "names[0]", "names[1]"}, "dns"),
])
def test_a_fault_fails_exactly_the_expectations_it_breaks_with_the_diagnosis(lab, fault, broken, layer):
    lifecycle.break_fault(lab.name, fault, None)
    try:
        code, doc, err = smoke(lab, EXAMPLE)
    finally:
        lifecycle.fix_faults(lab.name, fault)
    assert code == 1, err
    failed = {w: r for w, r in by_where(doc).items() if r["state"] != "pass"}
    assert set(failed) == broken, {w: (r["state"], r["message"]) for w, r in failed.items()}
    for where, r in failed.items():
        assert r["state"] == "fail" and r["diagnosis"]["layer"] == layer, (where, r["diagnosis"])
    if fault == "policy-deny-ingress":
        flow = failed["flows[0]"]["diagnosis"]
        assert (flow["check_id"], flow["cause"]) == ("ND-POL-001", "ingress-denied") and flow["lost_at"], flow


def test_the_incident_bundle_holds_the_reports_pcaps_inventories_and_objects(lab, tmp_path):
    import tarfile

    path = tmp_path / "incident.tar.gz"
    code, out, err = run(lab, "check", "svc/api", "-n", "shop", "-o", "json", "--bundle", str(path))
    assert code == 0 and f"bundle: {path}" in err, err
    with tarfile.open(path) as tar:
        files = {m.name.split("/", 1)[1]: m.size for m in tar.getmembers()}
    assert {"report.txt", "report.json", "report.md", "objects/Service_shop_api.yaml",
            "objects/NetworkPolicy_shop_api-allow-frontend.yaml"} <= set(files), sorted(files)
    assert [f for f in files if f.startswith("pcaps/") and files[f] > 24], sorted(files)
    nodes = {f.split("/")[1] for f in files if f.startswith("nodes/")}
    assert nodes and all(f"nodes/{n}/inventory.yaml" in files and f"nodes/{n}/conntrack.txt" in files for n in nodes)
