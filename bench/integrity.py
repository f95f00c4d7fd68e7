#!/usr/bin/python3
"""What the integrity check (issue 10) costs a cold fill: one object filled into an empty cache,
with a single-part MD5 ETag (hashed while filling, its last byte held until verified) and the
same bytes uploaded in parts (a multipart ETag: nothing to check), by one or two tuskd builds,
alternating, `--rounds` times. Reports the median fill time (GET start to the last chunk
durable) and tuskd's CPU seconds (utime + stime) per fill, and the ratios.

  /usr/bin/python3 bench/integrity.py --tuskd build/proxy/tuskd [--tuskd-b OLD] [--size 1GiB]

tuskd runs with compare.py's configuration but `prefetch: whole` (integrity is checked only for
fills that fetch every byte). radosgw and the processes are compare.py's; every process started
here is stopped by PID, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import durability  # noqa: E402

from compare import BUCKET, Deadline, Interrupted, Procs, Upstream, log  # noqa: E402

SINGLE = "single.img"  # one PUT: ETag = MD5 of the bytes
MULTI = "multi.img"  # compare.py's multipart upload (64 MiB parts): ETag "...-N"


class Tuskd(durability.Tuskd):
    def argv(self, up_port: int) -> list[str]:
        argv = super().argv(up_port)
        path = Path(argv[-1])
        cfg = json.loads(path.read_text())
        for r in cfg["routes"]:
            r["prefetch"] = "whole"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        return argv


def fill(procs, up, binary: Path, workdir: Path, key: str, size: int, deadline) -> dict:
    t = Tuskd(procs, workdir, binary, 8 << 20)
    try:
        t.start(up.port)
        durability.wait_settled(t, deadline, "start-up")
        cpu0 = t.cpu()
        t0 = time.monotonic()
        got = compare.curl_get(t.port, f"/{BUCKET}/{key}", timeout=deadline.bound(1200))
        if got["code"] != 200 or got["size"] != size:
            raise RuntimeError(f"GET {key}: {got}; log:\n{compare.tail(t.log_path)}")
        durability.wait_settled(t, deadline, "the fill")
        res = {"fill s": time.monotonic() - t0, "cpu s": t.cpu() - cpu0}
        m = t.metrics()
        res["verified"] = t.counter(m, "tusk_integrity_verified_total")
        res["reread"] = t.counter(m, "tusk_integrity_reread_bytes_total")
        return res
    finally:
        t.stop()
        shutil.rmtree(workdir / "cache", ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tuskd", required=True)
    ap.add_argument("--tuskd-b", help="a second build, e.g. the tree before the change")
    ap.add_argument("--size", type=durability.parse_size, default=durability.parse_size("1GiB"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=1800)
    args = ap.parse_args(argv)

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    deadline = Deadline(args.time_limit)
    tmp = Path(tempfile.mkdtemp(prefix="tusk-integrity-"))
    procs = Procs()
    up = Upstream(procs, tmp, {MULTI: args.size})
    status = 0
    try:
        builds = {"A": tmp / "tuskd-a"}
        shutil.copy2(args.tuskd, builds["A"])
        if args.tuskd_b:
            builds["B"] = tmp / "tuskd-b"
            shutil.copy2(args.tuskd_b, builds["B"])
        up.start(deadline)
        up.make_objects(deadline)
        with open(up.objects[MULTI]["path"], "rb") as f:  # the same bytes in one PUT
            up.s3.put_object(Bucket=BUCKET, Key=SINGLE, Body=f, ACL="public-read")
        results: dict[tuple[str, str], list[dict]] = {}
        for rnd in range(args.rounds):
            order = list(builds) if rnd % 2 == 0 else list(reversed(builds))
            for name in order:
                for key in (SINGLE, MULTI):
                    r = fill(procs, up, builds[name], tmp / f"{name}-{key}", key, args.size,
                             deadline)
                    log(f"round {rnd + 1} {name} {key}: {r}")
                    results.setdefault((name, key), []).append(r)
        print(f"A: {args.tuskd}" + (f"\nB: {args.tuskd_b}" if args.tuskd_b else ""))
        print(f"| build | object ({durability.show_size(args.size)}) | fill s (median of "
              f"{args.rounds}) | tuskd CPU s | verified | read back |")
        print("|---|---|---|---|---|---|")
        med = {}
        for (name, key), rs in results.items():
            f = statistics.median(r["fill s"] for r in rs)
            c = statistics.median(r["cpu s"] for r in rs)
            med[(name, key)] = (f, c)
            v = rs[-1]["verified"]
            rr = rs[-1]["reread"]
            print(f"| {name} | {key} | {f:.2f} | {c:.2f} | {durability.count(v)} | "
                  f"{'n/a' if rr is None else f'{rr / (1 << 20):.0f} MiB'} |")
        fs, cs = med[("A", SINGLE)]
        fm, cm = med[("A", MULTI)]
        print(f"\nA, checked / unchecked: fill time {fs / fm:.2f}x, CPU {cs / cm:.2f}x")
        if "B" in builds:
            fb, cb = med[("B", SINGLE)]
            print(f"single-part object, A / B: fill time {fs / fb:.2f}x, CPU {cs / cb:.2f}x")
    except (Interrupted, KeyboardInterrupt) as e:
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
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
