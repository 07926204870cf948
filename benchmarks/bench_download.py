"""How long the download of one monthly archive takes, by the server that serves it.

``raw_trades`` downloads the month's zip with :func:`flow_assets.sources.http.download_verified`
(one streamed GET, sha256 on the way, checked against the ``.zip.CHECKSUM``). This times that
call against the two local servers ``bench_pipeline.py`` can use (``--server``):

* ``archive``: the repo's :class:`~flow_assets.sources.mirror.ArchiveServer` (in this process);
* ``plain``: ``python -m http.server`` (a child process), as the issue measured it;

and, for scale, a local copy of the file with sha256 (no HTTP). Each is repeated ``--repeat``
times, interleaved; wall clock, this process's CPU seconds and the server child's (plain).

    .venv/bin/python benchmarks/bench_download.py                 # the 150M-trade month M
    .venv/bin/python benchmarks/bench_download.py --scale 0.1 --label M
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import BENCH_DIR, archive_root, monthly_folder, plan, serve

from flow_assets.sources.http import download_verified, make_session

MiB = 1 << 20


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _copy(path: Path, dest: Path) -> str:
    """A local copy with sha256: what the download costs without HTTP."""
    digest = hashlib.sha256()
    with path.open("rb") as source, dest.open("wb") as out:
        while block := source.read(MiB):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def once(kind: str, path: Path, root: Path, workdir: Path) -> dict:
    """One download of ``path`` (under ``root``) served by ``kind``: wall and CPU seconds."""
    dest = workdir / path.name
    cpu0, children0 = _cpu()
    t0 = time.perf_counter()
    if kind == "copy":
        _copy(path, dest)
        serve_s = 0.0
    else:
        with serve(root, kind) as url:
            file_url = f"{url}/{path.relative_to(root).as_posix()}"
            t1 = time.perf_counter()
            download_verified(make_session(), file_url, dest, file_url + ".CHECKSUM")
            serve_s = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    cpu1, children1 = _cpu()
    dest.unlink()
    return {
        "server": kind,
        "download_s": round(serve_s if kind != "copy" else wall, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu1 - cpu0, 2),  # the client, and ArchiveServer's threads (in-process)
        "server_child_cpu_s": round(children1 - children0, 2),  # python -m http.server
        "mib_per_s": round(path.stat().st_size / MiB / (serve_s if kind != "copy" else wall), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label", default="M", choices=[s.label for s in plan(1.0)])
    parser.add_argument("--repeat", type=int, default=3)
    ns = parser.parse_args()
    root = archive_root(ns.scale, ns.seed)
    (spec,) = [s for s in plan(ns.scale) if s.label == ns.label]
    path = monthly_folder(root) / spec.zip_name
    with open("/proc/loadavg") as fh:
        load0 = fh.read().split()[0]
    rows = []
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        for _ in range(ns.repeat):
            for kind in ("archive", "plain", "copy"):
                rows.append(once(kind, path, root, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    with open("/proc/loadavg") as fh:
        load1 = fh.read().split()[0]
    result = {"file": str(path), "mib": round(path.stat().st_size / MiB), "load": [load0, load1]}
    result["runs"] = rows
    out = BENCH_DIR / f"download-s{ns.scale:g}-{ns.label}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"{path.name} ({result['mib']:,} MiB), load {load0} -> {load1}; results: {out}")
    for kind in ("archive", "plain", "copy"):
        got = sorted(r["download_s"] for r in rows if r["server"] == kind)
        print(f"  {kind:<8} download s: {got}")


if __name__ == "__main__":
    main()
