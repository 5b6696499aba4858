"""plugins/netdoctor.yaml is a krew plugin manifest krew would accept: the checks of krew's index
validation (internal/index/validation: apiVersion and kind, a safe name equal to the file's,
a one-line short description, a semver version, every platform with a uri, a sha256, a bin,
well-formed files and an os/arch selector), and more: its sha256 is the one of the archive
plugins/build.py makes, the archive holds what the manifest installs, its version is netdoctor's,
and the launcher runs netdoctor."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from netdoctor import __version__

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "plugins" / "netdoctor.yaml"
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def krew_problems(name: str, plugin: dict) -> list[str]:
    """What krew's ValidatePlugin(name, plugin) would refuse, as a list (empty: accepted)."""
    spec, problems = plugin.get("spec") or {}, []
    if plugin.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2":
        problems.append(f"apiVersion {plugin.get('apiVersion')!r}")
    if plugin.get("kind") != "Plugin":
        problems.append(f"kind {plugin.get('kind')!r}")
    if not re.fullmatch(r"[\w-]+", name) or name.upper() in WINDOWS_RESERVED:
        problems.append(f"unsafe name {name!r}")
    if (plugin.get("metadata") or {}).get("name") != name:
        problems.append("metadata.name differs from the file name")
    short = spec.get("shortDescription") or ""
    if not short or "\n" in short or "\r" in short:
        problems.append("shortDescription missing or not one line")
    if not SEMVER.match(str(spec.get("version", ""))):
        problems.append(f"version {spec.get('version')!r} is not vMAJOR.MINOR.PATCH")
    if not spec.get("platforms"):
        problems.append("no platforms")
    for i, platform in enumerate(spec.get("platforms") or []):
        problems += [f"platforms[{i}]: {p}" for p in _platform_problems(platform)]
    return problems


def _platform_problems(platform: dict) -> list[str]:
    problems = [f"{key} missing" for key in ("uri", "sha256", "bin") if not platform.get(key)]
    if platform.get("sha256") and not re.fullmatch(r"[a-f0-9]{64}", platform["sha256"]):
        problems.append("sha256 is not 64 lowercase hex digits")
    files = platform.get("files")
    if files is not None and (not files or not all(f.get("from") and f.get("to") for f in files)):
        problems.append("files must be unset or non-empty, each with from and to")
    selector = platform.get("selector")
    if not selector or (selector.get("matchLabels") is None and not selector.get("matchExpressions")):
        problems.append("empty selector")
    else:
        keys = [*(selector.get("matchLabels") or {}), *(e.get("key") for e in selector.get("matchExpressions") or [])]
        problems += [f"selector key {k!r} (only os, arch)" for k in keys if k not in ("os", "arch")]
        if selector.get("matchLabels") == {}:
            problems.append("matchLabels specified but empty")
    return problems


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_krew_accepts_the_manifest(manifest):
    assert krew_problems(MANIFEST.stem, manifest) == []


@pytest.mark.parametrize("change, problem", [
    (lambda m: m["spec"].update(version="0.1.0"), "version"),
    (lambda m: m["spec"].update(shortDescription="two\nlines"), "shortDescription"),
    (lambda m: m["spec"]["platforms"][0].update(sha256="ABC"), "sha256"),
    (lambda m: m["spec"]["platforms"][0]["selector"]["matchLabels"].update(distro="debian"), "selector key"),
    (lambda m: m["spec"]["platforms"][0].pop("bin"), "bin missing"),
    (lambda m: m["metadata"].update(name="nd"), "metadata.name"),
])
def test_the_validation_catches_what_krew_refuses(manifest, change, problem):
    broken = yaml.safe_load(yaml.safe_dump(manifest))
    change(broken)
    assert any(problem in p for p in krew_problems(MANIFEST.stem, broken))


def test_the_manifest_is_this_version_and_covers_linux_and_macos(manifest):
    assert manifest["spec"]["version"] == f"v{__version__}"
    platforms = manifest["spec"]["platforms"]
    assert {(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]) for p in platforms} == {
        ("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")}
    assert all(f"/v{__version__}/" in p["uri"] for p in platforms)


def test_the_sha256_is_the_built_archives_and_it_holds_what_krew_installs(manifest, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "plugins" / "build.py"), str(tmp_path)], capture_output=True,
                          text=True, check=True)
    data = (tmp_path / "kubectl-netdoctor.tar.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() in done.stdout
    assert {p["sha256"] for p in manifest["spec"]["platforms"]} == {hashlib.sha256(data).hexdigest()}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        tar.extractall(tmp_path / "x", filter="data")
    for platform in manifest["spec"]["platforms"]:
        assert {f["from"] for f in platform["files"]} <= set(members) and platform["bin"] in members
    assert all(m.mode & 0o111 for m in members.values())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(tmp_path / "x" / "kubectl-netdoctor"), "--version"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"netdoctor {__version__}\n"), done.stderr
    done = subprocess.run([str(tmp_path / "x" / "kubectl_complete-netdoctor"), "check", "--capture", "o"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout == "off\n:4\n", done.stderr
