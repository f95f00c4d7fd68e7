#!/usr/bin/python3
"""What durability costs a cold fill: the fsync/fdatasync calls and LMDB commits tuskd makes to
fill one object (default 1 GiB) from a local radosgw, from tuskd's own counters and, as ground
truth that also works on builds without them, from strace attached to tuskd.

  /usr/bin/python3 bench/durability.py --tuskd build/proxy/tuskd [--size 1GiB] [--chunk-size 8MiB]

Two cold fills, each into an empty cache (one GET with curl to /dev/null): the first untraced,
for the fill time and the counters `tusk_disk_syncs_total` / `tusk_index_commits_total` ("n/a"
when the build has none); the second under `strace -f -C -y -e trace=fsync,fdatasync,msync -p
PID`, whose ptrace stops slow the fill, so its time is not the one reported. With `-y` each call
names its file: fdatasync/msync of index/data.mdb is one per LMDB commit (the index is opened
MDB_NOMETASYNC). A fill ends when tusk_fills_active is 0 again (its last chunk is durable).
Prints a markdown table row. radosgw, the object upload and the tuskd contender are
bench/compare.py's; every process started here is stopped by PID, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (radosgw, processes, the tuskd contender)

from compare import BUCKET, Deadline, Interrupted, Procs, Upstream, log  # noqa: E402

KEY = "durability.img"
SYNCS = "tusk_disk_syncs_total"
COMMITS = "tusk_index_commits_total"
SYNC_CALLS = ("fsync", "fdatasync", "msync")
UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
         "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
# One traced call as `strace -f -y` writes it: "<tid>  fdatasync(7</path/to/file>" (the rest of
# the line may come later, as "<... fdatasync resumed>", which is not a second call).
CALL_LINE = re.compile(r"^\d+\s+(?P<call>fsync|fdatasync|msync)\((?:0x[0-9a-f]+, \d+, \S+|"
                       r"\d+<(?P<path>[^>]*)>)")
# A row of strace's summary table: % time, seconds, usecs/call, calls, [errors,] syscall.
SUMMARY_ROW = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(?P<calls>\d+)\s+(?:\d+\s+)?(?P<call>\w+)\s*$")


def parse_size(text: str) -> int:
    """4096, 512KiB, 8MiB, 1GiB, 1.5GiB, 8MB: the sizes tuskd's configuration accepts."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1GiB, 8MiB, 4096)")
    return int(float(m.group(1)) * UNITS[m.group(2) or ""])


def show_size(n: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if n >= UNITS[unit] and n % UNITS[unit] == 0:
            return f"{n // UNITS[unit]} {unit}"
    return f"{n} B"


class Tuskd(compare.Tuskd):
    """compare.py's tuskd contender with the chunk size under test."""

    def __init__(self, procs: Procs, workdir: Path, binary: Path, chunk_size: int):
        super().__init__(procs, workdir, binary)
        self.chunk_size = chunk_size

    def argv(self, up_port: int) -> list[str]:
        argv = super().argv(up_port)
        path = Path(argv[-1])
        cfg = json.loads(path.read_text())
        cfg["cache"]["chunk_size"] = str(self.chunk_size)
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        return argv

    def counter(self, metrics: dict, name: str) -> float | None:
        """The sum of `name`'s samples, None when this build does not export it."""
        values = [v for (n, _), v in metrics.items() if n == name]
        return sum(values) if values else None

    def fills_active(self) -> float:
        return self.counter(self.metrics(), "tusk_fills_active") or 0.0


def wait_settled(t: Tuskd, deadline: Deadline, what: str) -> None:
    """Until no fill is in flight (a fill's last chunks become durable after its client is done)."""
    end = time.monotonic() + deadline.bound(300)
    while t.fills_active() > 0:
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: fills still active after 300 s")
        time.sleep(0.02)


def all_threads_traced(pid: int, tracer: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # a thread that just ended
        m = re.search(r"^TracerPid:\s*(\d+)", status, re.M)
        if not m or int(m.group(1)) != tracer:
            return False
    return True


def start_strace(procs: Procs, pid: int, out: Path, log_path: Path):
    argv = ["strace", "-f", "-C", "-y", "-e", "trace=" + ",".join(SYNC_CALLS), "-o", str(out),
            "-p", str(pid)]
    p = procs.spawn("strace", argv, log_path)
    end = time.monotonic() + 15
    while not all_threads_traced(pid, p.pid):
        if p.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"strace did not attach to every thread of {pid}:\n"
                               f"{compare.tail(log_path)}")
        time.sleep(0.05)
    return p


def read_strace(out: Path) -> dict:
    """{'calls': Counter by syscall (the summary table), 'index': calls on index/data.mdb,
    'lines': Counter by syscall counted from the trace lines (must equal 'calls')}."""
    calls, lines, index = Counter(), Counter(), 0
    for line in out.read_text(errors="replace").splitlines():
        if m := CALL_LINE.match(line):
            lines[m["call"]] += 1
            if m["path"] and m["path"].endswith("/index/data.mdb"):
                index += 1
        elif (m := SUMMARY_ROW.match(line)) and m["call"] in SYNC_CALLS:
            calls[m["call"]] = int(m["calls"])
    return {"calls": calls, "lines": lines, "index": index}


def fill(procs: Procs, up: Upstream, binary: Path, workdir: Path, size: int, chunk_size: int,
         trace: bool, deadline: Deadline) -> dict:
    """One cold GET of KEY into an empty cache; the counters' deltas, seconds, strace counts."""
    t = Tuskd(procs, workdir, binary, chunk_size)
    strace = None
    try:
        t.start(up.port)  # GETs catalog.json: a small fill of its own, before the measurement
        wait_settled(t, deadline, "start-up")
        before = t.metrics()
        if trace:
            strace = start_strace(procs, t.proc.pid, workdir / "strace.out", workdir / "strace.log")
        t0 = time.monotonic()
        got = compare.curl_get(t.port, f"/{BUCKET}/{KEY}", timeout=deadline.bound(1200))
        client_s = time.monotonic() - t0
        if got["code"] != 200 or got["size"] != size:
            raise RuntimeError(f"GET /{BUCKET}/{KEY}: {got}; log:\n{compare.tail(t.log_path)}")
        wait_settled(t, deadline, "the fill")
        fill_s = time.monotonic() - t0
        after = t.metrics()
        if strace is not None:
            procs.stop(strace)  # SIGTERM: strace detaches and writes its summary
            strace = None
        res = {"client s": client_s, "fill s": fill_s}
        for name in (SYNCS, COMMITS):
            a, b = t.counter(after, name), t.counter(before, name)
            res[name] = None if a is None else a - (b or 0)
        if trace:
            res["strace"] = read_strace(workdir / "strace.out")
        return res
    finally:
        if strace is not None:
            procs.stop(strace)
        t.stop()
        shutil.rmtree(workdir / "cache", ignore_errors=True)


def count(v) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tuskd", required=True, help="the tuskd binary (a copy of it is measured)")
    ap.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    ap.add_argument("--chunk-size", type=parse_size, default=parse_size("8MiB"))
    ap.add_argument("--time-limit", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument("--tmp", help="parent of the temp dir (default: $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, strace output)")
    args = ap.parse_args(argv)
    src = Path(args.tuskd).resolve()
    if not os.access(src, os.X_OK):
        ap.error(f"no executable tuskd at {src}")
    if not shutil.which("strace"):
        ap.error("strace not found: apt-get install strace")

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deadline = Deadline(args.time_limit)
    tmp = Path(tempfile.mkdtemp(prefix="tusk-durability-", dir=args.tmp))
    procs = Procs()
    up = Upstream(procs, tmp, {KEY: args.size})
    status = 0
    try:
        binary = tmp / "tuskd"  # the binary may be rebuilt while we run: measure one fixed copy
        shutil.copy2(src, binary)
        up.start(deadline)
        up.make_objects(deadline)
        (tmp / "static" / BUCKET / KEY).unlink()  # compare.py keeps a copy to serve; not needed
        log("cold fill, untraced")
        plain = fill(procs, up, binary, tmp / "plain", args.size, args.chunk_size, False, deadline)
        log(f"  {plain}")
        log("cold fill, under strace")
        traced = fill(procs, up, binary, tmp / "traced", args.size, args.chunk_size, True, deadline)
        st = traced["strace"]
        log(f"  {traced}")
        if st["lines"] != st["calls"]:
            log(f"warning: strace summary {dict(st['calls'])} != traced lines {dict(st['lines'])}")
        syncs = st["calls"]["fsync"] + st["calls"]["fdatasync"]
        msync = f" (+{st['calls']['msync']} msync)" if st["calls"]["msync"] else ""
        print(f"tuskd: {src}")
        print("| size | chunk size | fsync+fdatasync (strace) | of them on index/data.mdb "
              f"(strace) | `{SYNCS}` | LMDB commits (`{COMMITS}`) | fill s |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {show_size(args.size)} | {show_size(args.chunk_size)} | {syncs:,}{msync} "
              f"| {st['index']:,} | {count(plain[SYNCS])} | {count(plain[COMMITS])} "
              f"| {plain['fill s']:.2f} |")
        if traced[SYNCS] is not None and (traced[SYNCS], traced[COMMITS]) != (plain[SYNCS],
                                                                              plain[COMMITS]):
            print(f"(the traced fill counted {count(traced[SYNCS])} syncs, "
                  f"{count(traced[COMMITS])} commits)")
    except Interrupted as e:
        log(f"interrupted ({e})")
        status = 130
    except Exception as e:
        log(f"error: {type(e).__name__}: {e}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        up.stop()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if args.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
