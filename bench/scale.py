"""Scenarios 7-10 of bench/compare.py (issue 13): how each contender's cost grows with its work.

  7  small misses: N distinct cold 4 KiB objects through 32 keep-alive clients
  8  connections: 9,900 idle keep-alive connections beside 100 busy ones (wrk on a warm object)
  9  many distinct large hits: 200 clients, each on a different warm 16 MiB object
  10 index scale (tuskd alone): 10^3, 10^5, 10^6 objects put in its index by tusk-fill-index

compare.py runs them like 1-6 (same contenders, order rotating per round); the functions here take
compare's Bench (radosgw, deadline, temp dir) and one contender.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import random
import resource
import shutil
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchlib import (Interrupted, TimeUp, group_rss_bytes, http_get, log, parse_wrk, tail,
                      wait_port)

MiB = 1 << 20
BUCKET = "bench"
SMALL_BASE = "small4k"
LARGE_BASE = "obj16"
IDLE = 9900
BUSY = 100


def small_count(quick: bool) -> int:
    return 1000 if quick else 2000


def large_clients(quick: bool) -> int:
    return 50 if quick else 200


def small_keys(rnd: int, n: int) -> list[str]:
    """The cold keys of scenario 7's round `rnd`: the same for every contender (each has its own
    cache), fresh for every round."""
    return [f"misses-r{rnd}/{i:05d}" for i in range(n)]


def large_keys(n: int) -> list[str]:
    return [f"large/{i:03d}" for i in range(n)]


def copies_wanted(scenarios: list[int], rounds: int, quick: bool) -> list[tuple[str, str]]:
    """(new key, base key) server-side copies scenarios 7 and 9 need."""
    out = []
    if 7 in scenarios:
        for r in range(rounds):
            out += [(k, SMALL_BASE) for k in small_keys(r, small_count(quick))]
    if 9 in scenarios:
        out += [(k, LARGE_BASE) for k in large_keys(large_clients(quick))]
    return out


def metric(parsed: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` (harness.parse_prometheus keys) carrying `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in parsed.items() if n == name and want <= set(ls))


def percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Perf:
    """perf record -g of one process for the length of a scenario run (compare.py --perf)."""

    def __init__(self, base: Path, pid: int):
        self.data = base.with_suffix(".data")
        self.report = base.with_suffix(".txt")
        self.proc = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-g", "-p", str(pid),
                                      "-o", str(self.data)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.3)  # perf attaches

    def finish(self) -> str:
        self.proc.send_signal(2)  # SIGINT: perf writes its data and exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        rep = subprocess.run(["perf", "report", "--no-children", "--stdio", "-g", "none",
                              "--percent-limit", "1", "--sort", "dso,symbol", "-i", str(self.data)],
                             capture_output=True, text=True, timeout=120)
        self.report.write_text(rep.stdout)
        top = [" ".join(ln.split()[:4]) for ln in rep.stdout.splitlines() if ln.strip() and
               not ln.startswith("#")][:12]
        return f"perf profile {self.report}:\n    " + "\n    ".join(top)


# ------------------------------------------------------------------------------------------------
# 7


def s7_misses(bench, c, rnd: int) -> dict:
    keys = small_keys(rnd, small_count(bench.quick))
    info = bench.up.info(keys[0])
    want = info["sha256"]
    todo = list(keys)
    lock = threading.Lock()
    lat: list[float] = []
    bad: list[str] = []
    timeout = bench.deadline.bound(120)

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=timeout)
        while True:
            with lock:
                if not todo:
                    break
                key = todo.pop()
            t0 = time.monotonic()
            try:
                conn.request("GET", f"/{BUCKET}/{key}")
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=timeout)
                with lock:
                    bad.append(f"{key}: {type(e).__name__}")
                continue
            dt = time.monotonic() - t0
            ok = r.status == 200 and hashlib.sha256(body).hexdigest() == want
            with lock:
                lat.append(dt)
                if not ok:
                    bad.append(f"{key}: {r.status}, {len(body)} bytes")
        conn.close()

    off = bench.up.log_offset()
    cpu0 = c.cpu()
    t0 = time.monotonic()
    ths = [threading.Thread(target=client, daemon=True) for _ in range(32)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout + 30)
    wall = time.monotonic() - t0
    cpu = c.cpu() - cpu0
    n = len(keys)
    out = {"misses/s": n / wall, "p99 ms": percentile(lat, 99) * 1000 if lat else None,
           "p50 ms": percentile(lat, 50) * 1000 if lat else None,
           "correct": f"{n - len(bad)}/{n}", "upstream reqs": bench.up.usage(off)[0],
           "server CPU ms/miss": cpu * 1000 / n}
    if bad:
        out["errors"] = f"{len(bad)}/{n} bad: " + "; ".join(bad[:3])
    return out


# ------------------------------------------------------------------------------------------------
# 8


def _wrk_busy(bench, c, path: str, dur: int) -> dict:
    p = subprocess.run(["wrk", "-t2", f"-c{BUSY}", f"-d{dur}s", "--latency", "--timeout", "5s",
                        f"http://127.0.0.1:{c.port}{path}"], capture_output=True, text=True,
                       timeout=bench.deadline.bound(dur + 30))
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed: {p.stderr[-500:]}")
    return parse_wrk(p.stdout)


def _open_idle(port: int, path: str, n: int) -> tuple[list[socket.socket], int]:
    """n keep-alive connections that each made one request and read its answer, then wait."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    fails = 0

    def one(_):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(req)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed before an answer")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed mid-body")
                body += chunk
            return s
        except Exception:
            s.close()
            raise

    socks = []
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for f in [ex.submit(one, i) for i in range(n)]:
            try:
                socks.append(f.result())
            except OSError:
                fails += 1
    return socks, fails


def _still_open(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            data = s.recv(1, socket.MSG_PEEK)
            if data:
                n += 1  # unexpected bytes, but open
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def s8_connections(bench, c) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 1000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE + 4096), hard))
    path = f"/{BUCKET}/catalog.json"
    dur = 3 if bench.quick else 8
    alone = _wrk_busy(bench, c, path, dur)
    time.sleep(0.5)
    rss0 = group_rss_bytes(c.proc.pid)
    t0 = time.monotonic()
    socks, fails = _open_idle(c.port, path, IDLE)
    opened = time.monotonic() - t0
    try:
        time.sleep(0.5)
        rss1 = group_rss_bytes(c.proc.pid)
        cpu0 = c.cpu()
        busy = _wrk_busy(bench, c, path, dur)
        cpu = c.cpu() - cpu0
        kept = _still_open(socks)
    finally:
        for s in socks:
            s.close()
    out = {"busy req/s": busy.get("req/s"), "busy req/s without idle": alone.get("req/s"),
           "busy ratio": (busy["req/s"] / alone["req/s"]) if busy.get("req/s") and alone.get("req/s")
           else None,
           "p99 ms": busy.get("p99 ms"), "p99 ms without idle": alone.get("p99 ms"),
           "idle open at end": f"{kept}/{IDLE}", "RSS MB": rss1 / 1e6,
           "RSS KiB/idle conn": (rss1 - rss0) / 1024 / max(1, len(socks)),
           "open idle s": opened, "server CPU s": cpu,
           "non-2xx": busy.get("non-2xx", 0) + alone.get("non-2xx", 0),
           "sock errors": busy.get("sock errors", 0)}
    if fails:
        out["errors"] = f"{fails}/{IDLE} idle connections could not be opened"
    return out


# ------------------------------------------------------------------------------------------------
# 9


def s9_warm_large(bench, c) -> None:
    """Fetches every object of scenario 9 once (8 at a time), so the measured run is all hits."""
    keys = large_keys(large_clients(bench.quick))
    size = bench.up.info(keys[0])["size"]

    def one(key):
        st, _, body = http_get(c.port, f"/{BUCKET}/{key}", timeout=bench.deadline.bound(120))
        if st != 200 or len(body) != size:
            raise RuntimeError(f"{c.name}: warming {key} -> {st}, {len(body)} bytes")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, keys))


def s9_large_hits(bench, c, warmed: set) -> dict:
    if c.name not in warmed:
        t0 = time.monotonic()
        s9_warm_large(bench, c)
        warmed.add(c.name)
        log(f"{c.name}: warmed {large_clients(bench.quick)} objects in {time.monotonic() - t0:.1f}s")
        time.sleep(1)
    keys = large_keys(large_clients(bench.quick))
    size = bench.up.info(keys[0])["size"]
    off = bench.up.log_offset()
    fmt = "%{http_code} %{size_download} %{time_total}"
    cpu0 = c.cpu()
    t0 = time.monotonic()
    ps = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", fmt, "--max-time", "300",
                            f"http://127.0.0.1:{c.port}/{BUCKET}/{k}"], stdout=subprocess.PIPE,
                           text=True) for k in keys]
    outs = [p.communicate(timeout=bench.deadline.bound(320))[0].split() for p in ps]
    wall = time.monotonic() - t0
    cpu = c.cpu() - cpu0
    ok = sum(1 for o in outs if o and o[0] == "200" and int(o[1]) == size)
    total = sum(int(o[1]) for o in outs if o)
    times = [float(o[2]) for o in outs if o]
    return {"aggregate MB/s": total / wall / 1e6, "slowest s": max(times),
            "median client s": statistics.median(times), "complete": f"{ok}/{len(keys)}",
            "upstream reqs": bench.up.usage(off)[0], "server CPU s": cpu,
            "server CPU s/GB": cpu / (total / 1e9) if total else None}


# ------------------------------------------------------------------------------------------------
# 10


def s10_sizes(quick: bool) -> list[int]:
    return [1000, 10000] if quick else [1000, 100000, 1000000]


WRK_RANDOM = """
local n = {n}
math.randomseed({seed})
request = function()
  return wrk.format("GET", string.format("/{bucket}/idx/%07d", math.random(0, n - 1)))
end
"""


class IndexScale:
    """Scenario 10: tuskd over caches of n objects made by tusk-fill-index, for every n at once.
    Every size is filled first; then each round restarts tuskd on every size in turn (the order
    rotating per round, as the contenders of 1-9 do), times the first served hit and runs wrk on
    random objects, so the machine's noise falls on all sizes alike and the p99 ratio compares
    like with like. Last, per size, a restart with max_size 10 % below what is stored."""

    SIZE = 1024
    ENDPOINT = "http://127.0.0.1:9"  # never asked: every object is fresh

    def __init__(self, bench, tuskd_cls, binary: Path, fill_tool: Path, sizes: list[int]):
        self.bench, self.fill_tool, self.sizes = bench, fill_tool, sizes
        self.t = {n: tuskd_cls(bench.procs, bench.tmp / f"index-{n}", binary) for n in sizes}
        self.figs: dict[int, dict] = {n: {"objects": n} for n in sizes}
        self.rounds: dict[int, list[dict]] = {n: [] for n in sizes}

    def fill(self, n: int) -> None:
        t = self.t[n]
        shutil.rmtree(t.dir, ignore_errors=True)
        t.dir.mkdir(parents=True)
        p = subprocess.run([str(self.fill_tool), "--dir", str(t.dir / "cache"), "--count", str(n),
                            "--endpoint", self.ENDPOINT, "--bucket", BUCKET, "--prefix", "idx/",
                            "--size", str(self.SIZE), "--chunk-size", str(64 * 1024)],
                           capture_output=True, text=True,
                           timeout=self.bench.deadline.bound(900))
        if p.returncode != 0:
            raise RuntimeError(f"tusk-fill-index: {p.stderr[-300:]}")
        filled = json.loads(p.stdout)
        self.figs[n].update({"fill s": filled["seconds"], "index MB": filled["index_bytes"] / 1e6,
                             "index bytes/object": filled["index_bytes"] / n})

    def start(self, n: int, max_size: str | None = None) -> float:
        """Starts tuskd on cache n; seconds from spawn to the first 200 of a random object."""
        t = self.t[n]
        # 64 KiB chunks: max_size may not be below chunk_size, and 10^3 objects of 1 KiB are 1 MB
        argv = t.argv_for(self.ENDPOINT, max_size=max_size, chunk_size="64KiB")
        probe = f"/{BUCKET}/idx/{random.randrange(n):07d}"
        t0 = time.monotonic()
        t.proc = self.bench.procs.spawn(t.name, argv, t.log_path, cwd=t.dir)
        while time.monotonic() - t0 < 60:
            if t.proc.poll() is not None:
                raise RuntimeError(f"tuskd exited: {tail(t.log_path)}")
            try:
                st, _, body = http_get(t.port, probe, timeout=5)
                if st == 200 and len(body) == self.SIZE:
                    first = time.monotonic() - t0
                    wait_port(t.admin_port, t.proc, "tuskd admin", t.log_path)
                    return first
                raise RuntimeError(f"first GET {probe} -> {st}, {len(body)} bytes")
            except (ConnectionRefusedError, ConnectionResetError):
                time.sleep(0.002)
        raise RuntimeError("tuskd did not answer within 60 s")

    def hit_round(self, n: int, rnd: int) -> dict:
        t = self.t[n]
        first = self.start(n)
        try:
            lua = t.dir / "random.lua"
            lua.write_text(WRK_RANDOM.format(n=n, seed=n + rnd, bucket=BUCKET))
            dur = 3 if self.bench.quick else 6
            w = subprocess.run(["wrk", "-t2", "-c32", f"-d{dur}s", "--latency", "--timeout", "5s",
                                "-s", str(lua), f"http://127.0.0.1:{t.port}/"],
                               capture_output=True, text=True,
                               timeout=self.bench.deadline.bound(dur + 30))
            if w.returncode != 0:
                raise RuntimeError(f"wrk failed: {w.stderr[-300:]}")
            hits = parse_wrk(w.stdout)
            return {"restart to first hit s": first, "hit req/s": hits.get("req/s"),
                    "hit p50 ms": hits.get("p50 ms"), "hit p99 ms": hits.get("p99 ms"),
                    "non-2xx": hits.get("non-2xx"),
                    "misses": metric(t.metrics(), "tusk_requests_total", outcome="MISS"),
                    "RSS MB": group_rss_bytes(t.proc.pid) / 1e6}
        finally:
            t.stop()

    def evict(self, n: int) -> None:
        t = self.t[n]
        # 10% of the bytes over the limit; the store evicts down to 0.95 of it
        target = int(n * self.SIZE * 0.9 / 0.95)
        t0 = time.monotonic()
        try:
            self.start(n, max_size=str(target))
            evicted = 0
            while time.monotonic() - t0 < 120:
                evicted = int(metric(t.metrics(), "tusk_cache_evictions_total"))
                if evicted >= n // 10 - 1:
                    break
                time.sleep(0.05)
            evict_s = time.monotonic() - t0
            objects = int(metric(t.metrics(), "tusk_cache_objects"))
        finally:
            t.stop()
        self.figs[n].update({"evict 10% s": evict_s if evicted >= n // 10 - 1 else None,
                             "evicted": evicted, "objects after": objects})

    def summarise(self, n: int) -> None:
        """Medians over the rounds, with the rounds' p99 values listed."""
        runs = self.rounds[n]
        fig = self.figs[n]
        for k in ("restart to first hit s", "hit req/s", "hit p50 ms", "hit p99 ms", "RSS MB"):
            vals = [r[k] for r in runs if r.get(k) is not None]
            if vals:
                fig[k] = max(vals) if k == "RSS MB" else statistics.median(vals)
        fig["hit p99 ms, rounds"] = " / ".join(f"{r['hit p99 ms']:.2f}" for r in runs
                                               if r.get("hit p99 ms") is not None)
        fig["non-2xx"] = sum(r.get("non-2xx") or 0 for r in runs)
        fig["misses"] = sum(r.get("misses") or 0 for r in runs)

    def attempt(self, n: int, step) -> bool:
        """Runs step(); a failure is size n's error (the size is then left out), except the
        run's own deadline and interruption, which end the run."""
        try:
            step()
            return True
        except (TimeUp, Interrupted):
            raise
        except Exception as e:
            self.figs[n]["errors"] = f"{type(e).__name__}: {str(e)[:300]}"
            return False

    def run(self, rounds: int) -> list[dict]:
        live = []
        for n in self.sizes:
            t0 = time.monotonic()
            if self.attempt(n, lambda: self.fill(n)):
                live.append(n)
            log(f"[index {n}] filled ({time.monotonic() - t0:.1f}s)")
        for rnd in range(rounds):
            order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
            for n in order:
                if "errors" not in self.figs[n] and self.attempt(
                        n, lambda: self.rounds[n].append(self.hit_round(n, rnd))):
                    log(f"[index {n} r{rnd}] {self.rounds[n][-1]}")
        for n in live:
            if "errors" not in self.figs[n]:
                self.attempt(n, lambda: (self.summarise(n), self.evict(n)))
                log(f"[index {n}] {self.figs[n]}")
        return [self.figs[n] for n in self.sizes]

    def cleanup(self) -> None:
        for t in self.t.values():
            t.stop()
            shutil.rmtree(t.dir / "cache", ignore_errors=True)
