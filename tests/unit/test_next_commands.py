"""Every printed command runs as printed, and no Python repr reaches a report (issue 11 item 7).

Each cause of checks/*.yaml is rendered with realistic values; every `netdoctor …` command it
prints is parsed by the CLI itself (click's make_context, as the shell would run it, no --help),
its arguments by the parsers the commands use; every `kubectl …` one uses only the flags the
table below lists for its subcommand (kubectl v1.36's). Then the reports of the judge's table
(tests/unit/test_judge.py CASES) are rendered in every format and searched for leaked reprs.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
import typer

from netdoctor import catalog
from netdoctor.check.target import parse_namespace, parse_source, parse_target
from netdoctor.cli import app
from netdoctor.environment import Environment
from netdoctor.judge.diagnose import common_params
from netdoctor.policy.matrix import parse_port
from netdoctor.report.render import FORMATS, render

sys.path.insert(0, str(Path(__file__).parent))
from test_judge import CASES, facts, run  # noqa: E402

CATALOG = catalog.load()

# What a real run fills in: every value a command may need (a new one must be added here).
REALISTIC = {
    "namespace": "shop", "target": "svc/api", "service": "api", "port": "80", "target_port": "8080",
    "source": "pod/frontend-7d9f on node-1", "source_pod": "frontend-7d9f", "source_namespace": "shop",
    "selector": "app=api,tier=backend", "cluster_ip": "10.96.0.20", "node_port": "30080",
    "source_ref": "shop/frontend-7d9f", "backend_ref": "shop/api-5c8d-x2k", "proto_port": "TCP/8080",
    "pod": "api-5c8d-x2k", "pods": "api-5c8d-x2k, api-5c8d-q7w", "node": "node-2", "nodes": "node-1, node-2",
    "backend": "api-5c8d-q7w", "policy": "deny-egress", "policies": "shop/deny-egress",
    "dns_pod": "kube-system/coredns-6f6b-abc", "name": "api", "search": "shop.svc.cluster.local",
}

# kubectl's flags per subcommand used by the templates; VALUED take a value (`-o wide` or `-o=wide`).
KUBECTL_GLOBAL = {"-n", "--namespace", "--context"}
KUBECTL_FLAGS = {
    "get": {"-o", "--output", "-l", "--selector", "-A", "--all-namespaces", "--field-selector", "--show-labels",
            "--sort-by"},
    "describe": {"-l", "--selector", "-A", "--all-namespaces"},
    "logs": {"-l", "--selector", "-c", "--container", "--tail", "--all-containers", "-f", "--previous"},
    "exec": {"-i", "-t", "-it", "-c", "--container", "--stdin", "--tty"},
    "top": {"-l", "--selector", "-A", "--containers"},
    "debug": {"-i", "-t", "-it", "--profile", "--image", "--stdin", "--tty"},
    "auth": {"-A", "--all-namespaces"},
}
KUBECTL_VALUED = {"-n", "--namespace", "--context", "-o", "--output", "-l", "--selector", "--field-selector",
                  "--sort-by", "-c", "--container", "--tail", "--profile", "--image"}
KUBECTL_RESOURCES = {"pod", "pods", "po", "svc", "service", "services", "deploy", "deployment", "endpointslices",
                     "networkpolicy", "networkpolicies", "netpol", "configmap", "configmaps", "cm", "events", "node",
                     "nodes", "crd", "endpoints"}
OUTPUTS = re.compile(r"^(wide|yaml|json|name|jsonpath=.+)$")
SELECTOR = re.compile(r"^[A-Za-z0-9./-]+(!?=[A-Za-z0-9._-]*)?(,[A-Za-z0-9./-]+(!?=[A-Za-z0-9._-]*)?)*$")
NS_POD = re.compile(r"^[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*$")


def causes():
    for check in CATALOG.checks.values():
        for cause in check.causes.values():
            yield check.id, cause
    for cause in CATALOG.hops.causes.values():
        yield CATALOG.hops.id, cause


def rendered_commands() -> list[tuple[str, str]]:
    out = []
    for check_id, cause in causes():
        params = {**{p: "x" for p in cause.params}, **REALISTIC}
        for command in CATALOG.render(check_id, cause.key, params).commands:
            out.append((f"{check_id}:{cause.key}", command))
    return out


COMMANDS = rendered_commands()


def segments(command: str) -> list[list[str]]:
    """The simple commands of a shell line (split at |, &&, ;)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    found, current = [], []
    for token in lexer:
        if token in ("|", "&&", ";"):
            found.append(current)
            current = []
        else:
            current.append(token)
    return found + [current]


def netdoctor_context(args: list[str]):
    """Parse a netdoctor command line as the CLI would run it (typer's click), down to the leaf
    command: unknown options, missing arguments and bad values raise its usage errors."""
    command = typer.main.get_command(app)
    ctx = command.context_class(command, info_name="netdoctor")
    while hasattr(command, "list_commands"):  # a group
        name = args.pop(0)
        command = command.get_command(ctx, name)
        assert command is not None, f"no netdoctor command {name!r}"
        ctx = command.context_class(command, info_name=name, parent=ctx)
    assert "--help" not in args
    return command.make_context(ctx.info_name, args, parent=ctx.parent)


def check_netdoctor(args: list[str]) -> None:
    ctx = netdoctor_context(list(args))
    p = ctx.params
    if ctx.command.name == "explain":  # live mode: --from/--to must name pods the cluster has
        assert NS_POD.match(p["source"]) and NS_POD.match(p["destination"]), args
        parse_port(p["port"])
    elif ctx.command.name == "matrix":
        for port in p["ports"] or ():
            parse_port(port)
        parse_namespace(p["namespace"], "-n")
    elif ctx.command.name == "check":
        assert len(p["targets"]) == 1, args
        parse_target(p["targets"][0])
        parse_namespace(p["namespace"], "-n")
        if p["source"]:
            parse_source(p["source"])
    else:
        raise AssertionError(f"a template names netdoctor {ctx.command.name}: teach this test its arguments")


def check_kubectl(args: list[str]) -> None:
    positional, flags, i = [], [], 0
    while i < len(args):
        token = args[i]
        if token == "--":
            break
        if token.startswith("-"):
            name, eq, value = token.partition("=")
            if name in KUBECTL_VALUED and not eq:
                i += 1
                value = args[i]
            flags.append((name, value))
        else:
            positional.append(token)
        i += 1
    sub = positional[0]
    assert sub in KUBECTL_FLAGS, f"kubectl {sub}: not in the table"
    for name, value in flags:
        assert name in KUBECTL_FLAGS[sub] | KUBECTL_GLOBAL, f"kubectl {sub} has no flag {name}"
        if name in ("-o", "--output"):
            assert OUTPUTS.match(value), value
        if name in ("-l", "--selector", "--field-selector"):
            assert SELECTOR.match(value), value
        if name in ("-n", "--namespace"):
            parse_namespace(value, "-n")
    if sub in ("get", "describe"):
        kinds = positional[1].split(",")
        assert all(k.split("/")[0] in KUBECTL_RESOURCES for k in kinds), positional
    if sub == "exec":
        assert len(positional) == 2 and "--" in args, "kubectl exec POD -- COMMAND"
    if sub == "debug":
        assert positional[1].startswith("node/") and "--image" in dict(flags), args


def test_the_templates_print_commands_at_all():
    assert len(COMMANDS) > 60
    assert any(c.startswith("netdoctor policy explain") for _, c in COMMANDS)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}-{i}" for i, (w, _) in enumerate(COMMANDS)])
def test_every_next_command_runs_as_printed(where, command):
    assert not re.search(r"<[a-z_-]+>|\{|\bNone\b", command.replace("{{", "").replace("}}", "")
                         if "jsonpath" not in command else re.sub(r"\{\.[^}]*\}", "", command)), command
    for words in segments(command):
        if words[0] == "netdoctor":
            check_netdoctor(words[1:])
        elif words[0] == "kubectl":
            check_kubectl(words[1:])
        else:
            assert words[0] in ("grep", "sh"), f"{where}: unexpected program in {command!r}"


def test_a_command_that_needs_what_the_run_lacks_is_not_printed():
    """An anonymous probe source has no pod to name: policy explain is left out, the rest stays."""
    params = {k: v for k, v in REALISTIC.items() if k not in ("source_ref", "source_pod")}
    rendered = CATALOG.render("ND-POL-001", "ingress-denied", params)
    assert not any("explain" in c for c in rendered.commands)
    assert "netdoctor policy matrix -n shop --port TCP/8080" in rendered.commands
    dns = CATALOG.render("ND-DNS-001", "no-cluster-search", {**params, "search": "x"})
    assert dns.commands == ()


def test_common_params_are_command_line_values():
    f = facts()
    params = common_params(replace(f, source_pod="client-1", source_namespace="ops"))
    assert params["source_ref"] == "ops/client-1" and params["backend_ref"] == "demo/web-1"
    assert params["proto_port"] == "TCP/8080"
    anonymous = common_params(f)
    assert "source_ref" not in anonymous and "source_pod" not in anonymous
    impersonating = common_params(replace(f, impersonates="pod/frontend-1"))
    assert impersonating["source_ref"] == "demo/frontend-1"
    headless = common_params(replace(f, service=replace(f.service, cluster_ip=None, headless=True)))
    assert "cluster_ip" not in headless and all(v not in ("None", "") for v in headless.values())


# ---------------------------------------------------------------- no Python repr in a report

LEAKS = re.compile(r"\bNone\b|\[\s*'|'\s*\]|\(\s*'|\{\s*'|<[A-Za-z_][\w.-]*( object at 0x[0-9a-f]+)?>")
HTML = re.compile(r"</?(details|summary)>")


def leaks(text: str) -> list[str]:
    return [m.group(0) for m in LEAKS.finditer(HTML.sub("", text))]


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def rendered(report, fmt: str) -> list[str]:
    """The report in `fmt` as the texts a reader sees."""
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"}, width=200)
    render(report, fmt, env, verbose=True)
    out = env.stdout.getvalue()
    if fmt == "json":
        return strings(json.loads(out))
    if fmt == "junit":
        root = ET.fromstring(out.split("\n", 1)[1])
        return [t for e in root.iter() for t in (e.text or "", *e.attrib.values())]
    return [out]


def reports():
    for name, (f, cluster, *_) in CASES.items():
        yield name, run(f, cluster)
        yield f"{name}, --from", run(replace(f, source_pod="client-1", source="pod/client-1 on node-a"), cluster)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_python_repr_reaches_a_report(fmt):
    found = {}
    for name, report in reports():
        bad = [(leak, text[:200]) for text in rendered(report, fmt) for leak in leaks(text)]
        if bad:
            found[name] = bad
    assert not found, found


def test_the_leak_pattern_catches_what_it_is_for():
    for text in ("no port None", "got ['a', 'b']", "('a', 'b')", "{'k': 1}", "--from <source-pod>",
                 "<netdoctor.x.Y object at 0x7f00aa>"):
        assert leaks(text), text
    assert not leaks("<details><summary>ND-POD-001</summary>") and not leaks("api (http) → 8080 [ok]")
