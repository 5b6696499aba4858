"""Running system tools for the lab: `ip`, `nft`, `sysctl`, inside named network namespaces.

Used by the lab's topology, controllers and faults. Every failure raises LabCommandError with the
tool's own message; nothing here touches the root network namespace.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, Sequence

from netdoctor.errors import EnvironmentNotSuitable, NetdoctorError

REQUIRED_TOOLS = ("ip", "nft", "bridge")
CLONE_NEWNET = 0x40000000


class LabCommandError(NetdoctorError):
    """A system command the lab ran failed."""


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabCommandError(f"{' '.join(argv[:6])}: {proc.stderr.strip() or 'exit %d' % proc.returncode}")
    return proc.stdout


def ip_batch(netns: str | None, lines: Sequence[str]) -> None:
    """Several `ip` commands in one process, in one namespace (None: as `ip -n` is not given)."""
    if lines:
        run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], stdin="\n".join(lines) + "\n")


def nft(netns: str, script: str) -> None:
    run(["ip", "netns", "exec", netns, "nft", "-f", "-"], stdin=script)


def sysctl(netns: str, *settings: str) -> None:
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings])


def netns_names() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    return [int(p) for p in run(["ip", "netns", "pids", netns], check=False).split()]


def require_iptables() -> None:
    """kube-proxy's iptables mode and Cilium's NOTRACK rules load through iptables-nft."""
    if shutil.which("iptables-nft-restore") is None:
        raise EnvironmentNotSuitable("this lab needs iptables-nft-restore (Debian: apt-get install iptables)")


def require_libnftables() -> None:
    """The data plane's tables (a node's, and Cilium's per pod) are loaded through libnftables (nft_in)."""
    try:
        _libnftables()
    except OSError as exc:
        raise EnvironmentNotSuitable(f"this lab needs libnftables ({exc}; Debian: apt-get install libnftables1)")


def require_environment() -> None:
    """Root, the tools and the kernel features the lab needs, or one clear line."""
    if os.geteuid() != 0:
        raise EnvironmentNotSuitable("the lab needs root (network namespaces, veth, nftables)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise EnvironmentNotSuitable(
            f"the lab needs {', '.join(missing)} (Debian: apt-get install iproute2 nftables)"
        )


@functools.lru_cache(maxsize=None)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the body with this thread inside the named network namespace, then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@functools.lru_cache(maxsize=None)
def _libnftables() -> ctypes.CDLL:
    lib = ctypes.CDLL("libnftables.so.1")
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    return lib


_NFT_RELEASE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft-release")


def nft_in(netns: str, script: str) -> None:
    """What `nft` does with `script` in `netns`, through libnftables in this process: about a
    millisecond where an `nft` process takes twenty. Most of that is the kernel releasing the
    context's netlink socket (~12 ms), which happens on another thread, after the rules are in."""
    lib = _libnftables()
    with entered(netns):  # the context's socket is opened in the namespace it is made in
        ctx = lib.nft_ctx_new(0)
    lib.nft_ctx_buffer_error(ctx)
    failed = lib.nft_run_cmd_from_buffer(ctx, script.encode()) != 0
    error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
    _NFT_RELEASE.submit(lib.nft_ctx_free, ctx)
    if failed:
        raise LabCommandError(f"nft -f - in {netns}: {error or 'failed'}")


def socket_in(netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in a lab namespace (a socket keeps the namespace it was made in)."""
    with entered(netns):
        return socket.socket(family, kind)
