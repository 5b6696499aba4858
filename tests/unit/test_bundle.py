"""`check --bundle FILE.tar.gz` (issue 14 item 6): the reports in three formats, the pcaps, each
node's inventory and conntrack excerpt, the API objects the verdict used — never a Secret, no env
value, no managedFields — in one gzipped tar; a bad path is refused before anything is created."""

from __future__ import annotations

import tarfile

import yaml

from netdoctor import catalog
from netdoctor.check import bundle as api_objects, plan
from netdoctor.cluster.kube import NotFound
from netdoctor.judge.verdict import judge
from netdoctor.model import Capture, Evidence
from netdoctor.observations import Interface, InterfaceKind, Inventory, NatEntry
from netdoctor.report import bundle

from test_judge import Cluster, facts
from test_shared_run import run


class ObjectKube:
    def get_object(self, kind, namespace, name):
        if kind == "Node" and name == "node-b":
            raise NotFound("nodes", name, None, f'nodes "{name}" not found')
        obj = {"kind": kind, "apiVersion": "v1", "metadata": {
            "name": name, "namespace": namespace, "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "web"}}}
        if kind == "Pod":
            obj["spec"] = {"containers": [{"name": "web", "env": [{"name": "TOKEN", "value": "s3cret"},
                                                                   {"name": "KEY", "valueFrom": {"secretKeyRef": {}}}]}]}
        return obj

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        return [{"kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": namespace}},
                {"kind": "Secret", "metadata": {"name": "oops", "namespace": namespace}}]


def test_the_bundle_holds_reports_pcaps_inventories_conntrack_and_cleaned_objects(tmp_path):
    f = facts()
    the_plan = plan.build(f, plan.Options())
    report = judge(Evidence(f, the_plan, Cluster().observe(the_plan, f)), catalog.load())
    inventory = Inventory((Interface(3, "cni0", InterfaceKind.BRIDGE),))
    captures = (Capture("node-a", "node-a", packets=(), inventory=inventory, pcap=b"PCAP",
                        nat=(NatEntry("tcp", "10.244.0.9", 40000, "10.96.0.20", 80, "10.244.1.5", 8080),)),
                Capture("probe source", "node-a", "source", pcap=b"PCAP2"))
    found, unread = api_objects.objects(ObjectKube(), f)
    path = tmp_path / "incident.tar.gz"
    count = bundle.write(path, [bundle.Part(report, captures, tuple(found), tuple(unread))])
    with tarfile.open(path) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}
    assert count == len(files)
    assert {"report.txt", "report.json", "report.md", "pcaps/node-a.pcap", "pcaps/probe-source.pcap",
            "nodes/node-a/inventory.yaml", "nodes/node-a/conntrack.txt", "objects/Service_demo_web.yaml",
            "objects/Pod_demo_web-1.yaml", "objects/NetworkPolicy_demo_deny.yaml", "objects/UNREAD.txt",
            "README.txt"} <= set(files)
    assert b"10.244.0.9:40000 -> 10.96.0.20:80 reply from 10.244.1.5:8080" in files["nodes/node-a/conntrack.txt"]
    assert yaml.safe_load(files["nodes/node-a/inventory.yaml"])["interfaces"][0]["name"] == "cni0"
    everything = b"".join(files.values())
    assert b"s3cret" not in everything and b"secretKeyRef" not in everything and b"managedFields" not in everything
    assert b"last-applied" not in everything and not any("Secret_" in name for name in files)
    pod = yaml.safe_load(files["objects/Pod_demo_web-1.yaml"])
    assert pod["metadata"]["annotations"] == {"team": "web"}
    assert b"node-b" in files["objects/UNREAD.txt"]


def test_a_bundle_path_that_cannot_be_written_is_refused_before_connecting(tmp_path):
    code, _, err = run("check", "svc/web", "-n", "demo", "--bundle", str(tmp_path / "missing" / "x.tar.gz"))
    assert code == 2 and "cannot write in" in err
    code, _, err = run("check", "svc/web", "-n", "demo", "--bundle", str(tmp_path / "x.zip"))
    assert code == 2 and "FILE.tar.gz" in err
