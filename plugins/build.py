"""Build the krew plugin archive and print its sha256: `python3 plugins/build.py [--write] [DIR]`.

The archive holds the two launchers in plugins/krew/ (netdoctor itself installs with pip, as the
manifest's caveats say), byte for byte the same on every build (sorted, owner 0, mtime 0, gzip
without a name or time), so the sha256 in plugins/netdoctor.yaml can be checked by a test and
recomputed by anyone. `--write` puts the version and the sha256 into the manifest; publish the
archive as the release asset the manifest's `uri` names.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHERS = HERE / "krew"
MANIFEST = HERE / "netdoctor.yaml"
ARCHIVE = "kubectl-netdoctor.tar.gz"


def archive_bytes() -> bytes:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(LAUNCHERS.iterdir()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar_buffer.getvalue())
    return out.getvalue()


def main(argv: list[str]) -> int:
    write = "--write" in argv
    directory = Path(next((a for a in argv if not a.startswith("--")), "."))
    data = archive_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (directory / ARCHIVE).write_bytes(data)
    print(f"{directory / ARCHIVE}: sha256 {digest}")
    if write:
        sys.path.insert(0, str(HERE.parent))
        from netdoctor import __version__

        text = MANIFEST.read_text()
        text = re.sub(r"(?m)^(\s*sha256: ).*$", rf"\g<1>{digest}", text)
        text = re.sub(r"(?m)^(  version: ).*$", rf"\g<1>v{__version__}", text)
        text = re.sub(r"/download/v[0-9.]+/", f"/download/v{__version__}/", text)
        MANIFEST.write_text(text)
        print(f"{MANIFEST}: version v{__version__}, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
