#!/usr/bin/python3
"""Side-by-side load comparison: tuskd vs Varnish, nginx proxy_cache, nginx slice (and nginx
serving local files: the physical limit), all in front of one radosgw on 127.0.0.1.

  /usr/bin/python3 bench/compare.py --quick                 # smoke run, < 3 min
  /usr/bin/python3 bench/compare.py --out bench/RESULTS.md  # full run (~25 min)
  /usr/bin/python3 bench/compare.py --scenarios 1,2,3,4,5,6,7,8,9,10 --time-limit 3500 --out F
                                                            # everything (~40 min)
  options: --scenarios 1,...,10  --rounds N  --tuskd PATH  --time-limit SEC  --keep
           --contenders tuskd,nginx  --throttled 5   (side-by-side A/B runs of a few)
           --tuskd-b PATH   adds a second tuskd build as contender `tuskd-b` (A/B of a change)
           --perf 7,2       profiles tuskd's runs of those scenarios (perf record -g)
           --fill-index PATH   the tusk-fill-index tool of scenario 10 (default: build/bench/)

Scenarios (contenders alternate within each one, the order rotating per round: ABCDE BCDEA ...,
so that nobody always runs first or right after the same neighbour):
  1 small-object hits (wrk on a warm catalog.json)     2 large-object hits (8 curls on warm obj256)
  3 cold herd: 50 clients at once on a cold obj256     4 1 MiB range near the end of a cold obj1g
  5 aria2c -x16 -s16 on a cold obj1g                   6 = 3, 4, 5 with each contender's upstream
                                                           behind its own throttling relay
  7 small misses: 2,000 cold 4 KiB objects, 32 clients  8 10,000 connections: 9,900 idle + wrk -c100
  9 200 clients on 200 different warm 16 MiB objects   10 index scale, tuskd alone: 10^3/10^5/10^6
                                                           objects (bench/scale.py has 7-10)
Every process started here is in its own process group and is stopped by PID at the end (also on
Ctrl-C, SIGTERM, errors or when the global time limit hits). Upstream requests and bytes come from
radosgw's beast access log (one cold key per contender and run, so they are attributed exactly).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import http.client
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402  (scenarios 7-10)
from benchlib import (Deadline, Interrupted, Procs, TimeUp, curl_get, free_port,  # noqa: E402
                      group_cpu_seconds, http_get, log, parse_wrk, proc_wchar, tail,
                      wait_port)

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "integration" / "harness.py"
RELAY = ROOT / "tests" / "integration" / "relay.py"
PY = "/usr/bin/python3"
MiB = 1 << 20
BUCKET = "bench"
SLOW_MODE = "slow:41943040:20"  # 40 MiB/s per connection + 20 ms per request


def load_harness():
    spec = importlib.util.spec_from_file_location("tusk_harness", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tusk_harness"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


harness = load_harness()
# harness.BEAST_LINE skips the size field after the status; capture it (bytes sent + received).
_BEAST_SRC = harness.BEAST_LINE.pattern
# It also wants a quoted User-Agent; a client without one is logged as a bare "-".
BEAST_BYTES = re.compile(
    _BEAST_SRC.replace(r"(?P<status>\d{3}) \S+ ", r"(?P<status>\d{3}) (?P<bytes>\d+) ", 1)
    .replace(r'"(?:[^"\\]|\\.)*"', r'(?:"(?:[^"\\]|\\.)*"|-)', 1)
)
assert "bytes" in BEAST_BYTES.pattern and '|-)' in BEAST_BYTES.pattern, "harness.BEAST_LINE changed"


# ------------------------------------------------------------------------------------------------
# radosgw + objects


class Upstream:
    def __init__(self, procs: Procs, tmp: Path, sizes: dict[str, int]):
        self.procs = procs
        self.tmp = tmp
        self.sizes = sizes
        self.rgw = None
        self.static = tmp / "static"
        self.objects: dict[str, dict] = {}  # base key -> {size, sha256, path}
        self.key_base: dict[str, str] = {}  # every key -> its base object

    def start(self, deadline: Deadline):
        d = self.tmp / "rgw"
        log("starting radosgw ...")
        rgw = harness.Rgw()
        rgw._owned = True  # stop() works even if start() fails half-way
        rgw.dir = d
        self.rgw = rgw
        rgw.start(d, timeout=deadline.bound(180))
        self.pid = int(rgw.env["RGW_PIDS"].split()[0])
        log(f"radosgw on {rgw.endpoint} ({rgw.start_message.splitlines()[-1] if rgw.start_message else ''})")

    def stop(self):
        if self.rgw is not None:
            try:
                self.rgw.stop(purge=True)
            except Exception as e:
                log(f"radosgw stop failed: {e}; killing recorded PIDs")
                for pid in self.rgw.env.get("RGW_PIDS", "").split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            self.rgw = None

    @property
    def port(self) -> int:
        return self.rgw.port

    def make_objects(self, deadline: Deadline):
        from boto3.s3.transfer import TransferConfig

        s3 = self.rgw.s3("tusk")
        s3.create_bucket(Bucket=BUCKET, ACL="public-read")
        bdir = self.static / BUCKET
        bdir.mkdir(parents=True, exist_ok=True)
        cat = {"version": 1, "images": [{"name": f"img{i:03d}", "size": i * 12345,
                                           "url": f"img{i:03d}.tgz"} for i in range(40)]}
        data = json.dumps(cat, indent=1).encode()
        data = (data + b" " * 4096)[:4096]
        (bdir / "catalog.json").write_bytes(data)
        self.objects["catalog.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                        "path": bdir / "catalog.json"}
        for key, size in self.sizes.items():
            log(f"writing {key} ({size // MiB} MiB of random bytes)")
            h = hashlib.sha256()
            with open(bdir / key, "wb") as f:
                left = size
                while left:
                    b = os.urandom(min(16 * MiB, left))
                    h.update(b)
                    f.write(b)
                    left -= len(b)
            self.objects[key] = {"size": size, "sha256": h.hexdigest(), "path": bdir / key}
        tc = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=4)
        for key, obj in self.objects.items():
            deadline.bound(1)
            t0 = time.monotonic()
            s3.upload_file(str(obj["path"]), BUCKET, key, ExtraArgs={"ACL": "public-read",
                           "ContentType": "application/json" if key.endswith(".json")
                           else "application/octet-stream"}, Config=tc)
            log(f"uploaded {key} in {time.monotonic() - t0:.1f}s")
            self.key_base[key] = key
        self.s3 = s3

    def copies(self, wanted: list[tuple[str, str]], deadline: Deadline):
        """Server-side copies (new_key, base_key), public-read; hard links in the static tree."""
        t0 = time.monotonic()

        def one(pair):
            new, base = pair
            self.s3.copy_object(Bucket=BUCKET, Key=new, CopySource={"Bucket": BUCKET, "Key": base},
                                ACL="public-read")
            return pair

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            for new, base in ex.map(one, wanted):
                self.key_base[new] = base
                p = self.static / BUCKET / new
                p.parent.mkdir(parents=True, exist_ok=True)
                if not p.exists():
                    os.link(self.objects[base]["path"], p)
        # anonymous access check on one copy of each base
        for new, base in {b: (n, b) for n, b in wanted}.values():
            st, hd, _ = http_get(self.port, f"/{BUCKET}/{new}", {"Range": "bytes=0-0"})
            if st != 206:
                raise RuntimeError(f"anonymous GET of copied key {new} answered {st}: not public-read?")
        log(f"{len(wanted)} server-side copies in {time.monotonic() - t0:.1f}s")

    def info(self, key: str) -> dict:
        return self.objects[self.key_base[key]]

    # -- accounting from the beast log --

    def log_offset(self) -> int:
        return self.rgw.log_offset()

    def usage(self, since: int, key: str | None = None) -> tuple[int, int]:
        """(object GET/HEAD requests, bytes) logged after offset `since`, for one key or all."""
        self.rgw.flush_log()
        n = nbytes = 0
        with open(self.rgw.log_path, "rb") as f:
            f.seek(since)
            for raw in f:
                m = BEAST_BYTES.search(raw.decode("utf-8", "replace"))
                if not m or m["method"] not in ("GET", "HEAD"):
                    continue
                path = m["target"].split("?", 1)[0]
                if not path.startswith(f"/{BUCKET}/"):
                    continue
                if key is not None and path != f"/{BUCKET}/{key}":
                    continue
                n += 1
                nbytes += int(m["bytes"])
        return n, nbytes

    def settle(self, max_wait: float) -> float:
        """Waits until radosgw stops sending (background fills finished): its wchar grows by less
        than 1 MB in 1 s. Returns the seconds waited."""
        t0 = time.monotonic()
        last = proc_wchar(self.pid)
        quiet = 0
        while time.monotonic() - t0 < max_wait:
            time.sleep(0.25)
            now = proc_wchar(self.pid)
            quiet = quiet + 1 if now - last < 250_000 else 0
            last = now
            if quiet >= 4:
                return max(0.0, time.monotonic() - t0 - 1.0)  # minus the quiet second itself
        return time.monotonic() - t0


# ------------------------------------------------------------------------------------------------
# contenders


class Contender:
    name = "?"
    peer = True  # compared against tuskd
    static = False

    def __init__(self, procs: Procs, workdir: Path):
        self.procs = procs
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "server.log"

    def argv(self, up_port: int) -> list[str]:
        raise NotImplementedError

    def start(self, up_port: int, check_port: int | None = None):
        argv = self.argv(up_port)
        (self.dir / "command").write_text(shlex.join(argv) + "\n")
        self.proc = self.procs.spawn(self.name, argv, self.log_path, cwd=self.dir)
        wait_port(self.port, self.proc, self.name, self.log_path)
        self.ready()
        st, hd, body = http_get(self.port, f"/{BUCKET}/catalog.json", timeout=30)
        if st != 200 or len(body) != 4096:
            raise RuntimeError(f"{self.name}: GET /{BUCKET}/catalog.json -> {st}, {len(body)} bytes; "
                               f"log:\n{tail(self.log_path)}")

    def ready(self):
        pass

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def cpu(self) -> float:
        return group_cpu_seconds(self.proc.pid) if self.proc else 0.0


class Tuskd(Contender):
    name = "tuskd"
    peer = False
    sendfile = True

    def __init__(self, procs, workdir, binary: Path):
        super().__init__(procs, workdir)
        self.binary = binary
        self.admin_port = free_port()

    def argv(self, up_port):
        return self.argv_for(f"http://127.0.0.1:{up_port}")

    def argv_for(self, endpoint: str, max_size: str | None = None, chunk_size: str = "8MiB"):
        cfg = {
            # 12,000 connections: scenario 8 holds 10,000 open at once
            "server": {"listen": [f"127.0.0.1:{self.port}"], "workers": 0, "max_connections": 12000,
                       "drain_delay": "0s", "sendfile": self.sendfile},
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            "cache": {"dir": str(self.dir / "cache"), "max_size": max_size or "200GiB",
                      "chunk_size": chunk_size, "min_free": "2GiB"},
            "log": {"level": "warn", "access_log": "off"},
            "upstreams": {"rgw": {"endpoint": endpoint, "signature": "none",
                                  "connect_timeout": "5s", "stall_timeout": "60s", "retries": 3}},
            # prefetch none: fetch what clients ask for, as nginx-slice does (a whole GET asks
            # for every chunk). With `whole`, scenario 4 would also count the rest of the
            # object that tuskd fetches in the background after answering.
            "routes": [{"prefix": f"/{BUCKET}/", "upstream": "rgw", "bucket": BUCKET, "ttl": "1d",
                        "prefetch": "none"}],
        }
        p = self.dir / "tusk.yaml"
        p.write_text(json.dumps(cfg, indent=2) + "\n")
        return [str(self.binary), "--config", str(p)]

    def ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if http_get(self.admin_port, "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"tuskd not ready; log:\n{tail(self.log_path)}")

    def metrics(self) -> dict:
        try:
            st, _, body = http_get(self.admin_port, "/metrics", timeout=5)
            return harness.parse_prometheus(body.decode()) if st == 200 else {}
        except OSError:
            return {}


class TuskdB(Tuskd):
    """A second tuskd build (--tuskd-b), measured like a peer: the A/B of a change."""
    name = "tuskd-b"
    peer = True


class TuskdCopy(Tuskd):
    """tuskd itself with `server.sendfile: false` (hits read into memory and written): the
    A/B of sendfile against copying, measured like a peer."""
    name = "tuskd-copy"
    peer = True
    sendfile = False


class TuskdDirs(Tuskd):
    """tuskd whose cache already has its 65,536 body directories (objects/xx/yy), as a cache
    that has held objects for a while does: scenario 7's A/B of what a new cache pays to make
    them (a fresh cache makes one per miss for its first tens of thousands of objects)."""
    name = "tuskd-dirs"
    peer = True

    def start(self, up_port: int, check_port: int | None = None):
        objects = self.dir / "cache" / "objects"
        for a in range(256):
            for b in range(256):
                (objects / f"{a:02x}" / f"{b:02x}").mkdir(parents=True, exist_ok=True)
        super().start(up_port, check_port)


class Varnish(Contender):
    name = "varnish"

    def argv(self, up_port):
        vcl = self.dir / "bench.vcl"
        vcl.write_text(f"""vcl 4.1;
backend rgw {{
  .host = "127.0.0.1";
  .port = "{up_port}";
  .connect_timeout = 5s;
  .first_byte_timeout = 600s;
  .between_bytes_timeout = 600s;
}}
sub vcl_backend_response {{
  if (beresp.status == 200) {{
    set beresp.ttl = 1d;
    set beresp.grace = 1h;
  }}
}}
""")
        return ["varnishd", "-F", "-j", "none", "-a", f"127.0.0.1:{self.port}", "-T", "127.0.0.1:0",
                "-s", "malloc,4G", "-n", str(self.dir / "n"), "-f", str(vcl),
                # idle keep-alive connections stay 2 min, as nginx's and tuskd's (scenario 8)
                "-p", "timeout_idle=120",
                "-p", "send_timeout=600", "-p", "idle_send_timeout=600"]


NGINX_MAIN = """{user}worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 32768;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
{extra}
  server {{
    listen 127.0.0.1:{port};
{location}
  }}
}}
"""

NGINX_PROXY_COMMON = """      proxy_pass http://rgw;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:{up};
      proxy_read_timeout 600s;
      proxy_buffers 32 64k;
      proxy_buffer_size 64k;
      proxy_cache c;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s;
      add_header X-Cache $upstream_cache_status;
"""


class Nginx(Contender):
    name = "nginx"

    def extra(self, up_port):
        return (f"  proxy_cache_path {self.dir}/cache levels=1:2 keys_zone=c:64m max_size=200g "
                f"inactive=1d use_temp_path=off;\n"
                f"  upstream rgw {{ server 127.0.0.1:{up_port}; keepalive 64; }}")

    def location(self, up_port):
        return ("    location / {\n" + NGINX_PROXY_COMMON.format(up=up_port)
                + "      proxy_cache_valid 200 1d;\n    }")

    def argv(self, up_port):
        (self.dir / "tmp").mkdir(exist_ok=True)
        conf = self.dir / "nginx.conf"
        # as root, workers would run as nobody and could not enter our 0700 temp dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_MAIN.format(user=user, d=self.dir, port=self.port, extra=self.extra(up_port),
                                          location=self.location(up_port)))
        t = subprocess.run(["nginx", "-t", "-p", str(self.dir), "-c", str(conf)],
                           capture_output=True, text=True)
        if t.returncode != 0:
            raise RuntimeError(f"{self.name}: nginx -t failed:\n{t.stderr}")
        return ["nginx", "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"]


class NginxSlice(Nginx):
    name = "nginx-slice"

    def location(self, up_port):
        return ("    location / {\n      slice 8m;\n" + NGINX_PROXY_COMMON.format(up=up_port)
                + "      proxy_cache_key $uri$slice_range;\n"
                  "      proxy_set_header Range $slice_range;\n"
                  "      proxy_cache_valid 200 206 1d;\n    }")


class NginxStatic(Nginx):
    name = "static"
    peer = False
    static = True

    def __init__(self, procs, workdir, root: Path):
        super().__init__(procs, workdir)
        self.root = root

    def extra(self, up_port):
        return ""

    def location(self, up_port):
        return f"    location / {{\n      root {self.root};\n    }}"


class Relay:
    def __init__(self, procs: Procs, workdir: Path, name: str, up_port: int):
        self.port = free_port()
        self.log_path = workdir / f"relay-{name}.log"
        self.name = name
        self.proc = procs.spawn(f"relay-{name}", [PY, str(RELAY), "--listen", str(self.port),
                                                  "--upstream", f"127.0.0.1:{up_port}",
                                                  "--mode", SLOW_MODE], self.log_path)
        wait_port(self.port, self.proc, f"relay for {name}", self.log_path)

    def cpu(self) -> float:
        return group_cpu_seconds(self.proc.pid)


# ------------------------------------------------------------------------------------------------
# scenarios: each returns a dict of figures (numbers or short strings)


class Bench:
    def __init__(self, args, tmp: Path, procs: Procs, up: Upstream, deadline: Deadline):
        self.args = args
        self.tmp = tmp
        self.procs = procs
        self.up = up
        self.deadline = deadline
        self.quick = args.quick

    # 1
    def s1_small(self, c: Contender, key: str) -> dict:
        path = f"/{BUCKET}/catalog.json"
        for _ in range(2):
            st, _, body = http_get(c.port, path)
            assert st == 200 and len(body) == 4096, f"warm GET -> {st}"
        dur = 3 if self.quick else 10
        off = self.up.log_offset()
        cpu0 = c.cpu()
        p = subprocess.run(["wrk", "-t2", "-c50", f"-d{dur}s", "--latency", "--timeout", "5s",
                            f"http://127.0.0.1:{c.port}{path}"], capture_output=True, text=True,
                           timeout=self.deadline.bound(dur + 30))
        cpu = c.cpu() - cpu0
        if p.returncode != 0:
            raise RuntimeError(f"wrk failed: {p.stderr[-500:]}")
        r = parse_wrk(p.stdout)
        r["upstream reqs"] = self.up.usage(off)[0]
        r["server CPU s"] = cpu
        return r

    # 2
    def s2_large(self, c: Contender, key: str) -> dict:
        path = f"/{BUCKET}/{key}"
        size = self.up.info(key)["size"]
        for _ in range(2):
            r = curl_get(c.port, path, self.deadline.bound(300))
            assert r["code"] == 200 and r["size"] == size, f"warm GET -> {r}"
        time.sleep(0.5)
        off = self.up.log_offset()
        fmt = "%{http_code} %{size_download} %{time_total}"
        cpu0 = c.cpu()
        t0 = time.monotonic()
        ps = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", fmt, "--max-time", "300",
                                f"http://127.0.0.1:{c.port}{path}"], stdout=subprocess.PIPE, text=True)
              for _ in range(8)]
        outs = [p.communicate(timeout=self.deadline.bound(320))[0].split() for p in ps]
        wall = time.monotonic() - t0
        cpu = c.cpu() - cpu0
        ok = sum(1 for o in outs if o[0] == "200" and int(o[1]) == size)
        total = sum(int(o[1]) for o in outs)
        return {"aggregate MB/s": total / wall / 1e6, "slowest s": max(float(o[2]) for o in outs),
                "complete": f"{ok}/8", "upstream reqs": self.up.usage(off)[0], "server CPU s": cpu}

    # 3
    def s3_herd(self, c: Contender, key: str, relay: Relay | None) -> dict:
        n = 50
        info = self.up.info(key)
        path = f"/{BUCKET}/{key}"
        timeout = self.deadline.bound(300 if not relay else 600)
        res: list = [None] * n
        t0box = [0.0]
        barrier = threading.Barrier(n, action=lambda: t0box.__setitem__(0, time.monotonic()))

        def client(i):
            try:
                barrier.wait()
                conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=timeout)
                conn.request("GET", path, headers={"User-Agent": "compare.py-herd"})
                r = conn.getresponse()
                h = hashlib.sha256()
                buf = bytearray(MiB)
                mv = memoryview(buf)
                got = 0
                while True:
                    k = r.readinto(mv)
                    if not k:
                        break
                    h.update(mv[:k])
                    got += k
                conn.close()
                good_sha = h.hexdigest() == info["sha256"]
                res[i] = (r.status, got == info["size"] and good_sha, time.monotonic(),
                          f"X-Cache {r.getheader('X-Cache', '-')}, {got} of {info['size']} bytes, "
                          f"sha256 {'ok' if good_sha else 'WRONG'}")
            except Exception as e:
                res[i] = (0, False, time.monotonic(), repr(e)[:80])

        off = self.up.log_offset()
        cpu0 = c.cpu()
        rcpu0 = relay.cpu() if relay else 0
        ths = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(timeout + 30)
        t0 = t0box[0]
        done = [r for r in res if r is not None]
        ok = [r for r in done if r[0] == 200 and r[1]]
        wall = max(r[2] for r in done) - t0
        settle = self.up.settle(90 if relay else 30)
        cpu = c.cpu() - cpu0
        reqs, nbytes = self.up.usage(off, key)
        out = {"all complete s": wall if len(ok) == n else None,
               "first complete s": min(r[2] for r in ok) - t0 if ok else None,
               "correct": f"{len(ok)}/{n}", "upstream reqs": reqs, "upstream MB": nbytes / 1e6,
               "server CPU s": cpu}
        bad = [r for r in done if not (r[0] == 200 and r[1])]
        if bad:
            kinds = sorted({f"status {b[0]} {b[3]}" for b in bad})
            out["errors"] = f"{len(bad)}/{n} clients bad: " + "; ".join(kinds[:3])
        if relay:
            out["relay CPU %"] = 100 * (relay.cpu() - rcpu0) / (wall + settle)
        return out

    # 4
    def s4_range(self, c: Contender, key: str, relay: Relay | None) -> dict:
        info = self.up.info(key)
        size = info["size"]
        start = size - 4 * MiB
        end = start + MiB - 1
        with open(info["path"], "rb") as f:
            f.seek(start)
            want = hashlib.sha256(f.read(end - start + 1)).hexdigest()
        out_file = self.tmp / f"range-{c.name}.bin"
        off = self.up.log_offset()
        cpu0 = c.cpu()
        rcpu0 = relay.cpu() if relay else 0
        t0 = time.monotonic()
        r = curl_get(c.port, f"/{BUCKET}/{key}", self.deadline.bound(300 if not relay else 600),
                     extra=["-r", f"{start}-{end}"], out=str(out_file))
        wall = time.monotonic() - t0
        data = out_file.read_bytes() if out_file.exists() else b""
        out_file.unlink(missing_ok=True)
        correct = r["code"] == 206 and hashlib.sha256(data).hexdigest() == want
        if r["code"] == 200 and len(data) == size:
            correct = "200 full body"
        settle = self.up.settle(90 if relay else 30)
        cpu = c.cpu() - cpu0
        reqs, nbytes = self.up.usage(off, key)
        out = {"TTFB s": r["ttfb"], "total s": r["total"], "status": r["code"],
               "bytes to client MB": r["size"] / 1e6, "correct": "yes" if correct is True else
               (correct or "NO"), "upstream reqs": reqs, "upstream MB": nbytes / 1e6,
               "background s": settle, "server CPU s": cpu}
        if relay:
            out["relay CPU %"] = 100 * (relay.cpu() - rcpu0) / (wall + settle)
        return out

    # 5
    def s5_aria(self, c: Contender, key: str, relay: Relay | None) -> dict:
        info = self.up.info(key)
        d = self.tmp / "aria"
        d.mkdir(exist_ok=True)
        name = f"{c.name}.bin"
        (d / name).unlink(missing_ok=True)
        off = self.up.log_offset()
        cpu0 = c.cpu()
        rcpu0 = relay.cpu() if relay else 0
        limit = self.deadline.bound(300 if not relay else 600)
        t0 = time.monotonic()
        p = subprocess.run(["aria2c", "-x16", "-s16", "--dir", str(d), "-o", name,
                            "--allow-overwrite=true", "--auto-file-renaming=false",
                            "--file-allocation=none", "--console-log-level=warn",
                            "--summary-interval=0", "--download-result=hide", "--timeout=600",
                            "--max-tries=1", f"http://127.0.0.1:{c.port}/{BUCKET}/{key}"],
                           capture_output=True, text=True, timeout=limit)
        wall = time.monotonic() - t0
        ok = False
        if p.returncode == 0 and (d / name).exists():
            h = hashlib.sha256()
            with open(d / name, "rb") as f:
                while b := f.read(8 * MiB):
                    h.update(b)
            ok = h.hexdigest() == info["sha256"]
        (d / name).unlink(missing_ok=True)
        settle = self.up.settle(90 if relay else 30)
        cpu = c.cpu() - cpu0
        reqs, nbytes = self.up.usage(off, key)
        out = {"complete s": wall if ok else None, "correct": "yes" if ok else
               f"NO (rc {p.returncode}: {(p.stdout + p.stderr).strip()[-100:]!r})",
               "upstream reqs": reqs, "upstream MB": nbytes / 1e6, "background s": settle,
               "server CPU s": cpu}
        if relay:
            out["relay CPU %"] = 100 * (relay.cpu() - rcpu0) / (wall + settle)
        return out


# metric -> True (higher is better) / False (lower is better); others are shown without a ratio
DIRECTION = {
    "req/s": True, "p99 ms": False, "p50 ms": False, "aggregate MB/s": True, "slowest s": False,
    "all complete s": False, "first complete s": False, "upstream reqs": None, "upstream MB": False,
    "TTFB s": False, "total s": False, "complete s": False, "server CPU s": False,
    "misses/s": True, "server CPU ms/miss": False, "busy req/s": True, "busy ratio": True,
    "RSS MB": False, "RSS KiB/idle conn": False, "median client s": False, "server CPU s/GB": False,
}

TITLES = {
    1: "1. Small-object hits: wrk -t2 -c50 on a warm catalog.json (4 KiB)",
    2: "2. Large-object hits: 8 parallel curls of a warm {obj256}",
    3: "3. Cold herd: 50 clients at once on a cold {obj256} (sha256 of every copy checked)",
    4: "4. 1 MiB range 4 MiB before the end of a cold {obj1g} (curl -r)",
    5: "5. aria2c -x16 -s16 on a cold {obj1g} (sha256 checked)",
    7: "7. Small misses: {n7} distinct cold 4 KiB objects through 32 keep-alive clients",
    8: "8. Connections: 9,900 idle keep-alive connections beside wrk -t2 -c100 on a warm 4 KiB object",
    9: "9. Many distinct large hits: {n9} clients at once, each on a different warm {obj16}",
}


def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"
    return str(v)


def aggregate(runs: list[dict]) -> dict:
    """Median of numeric figures over rounds (min–max kept), strings joined."""
    out = {}
    keys = []
    for r in runs:
        for k in r:
            if k not in keys:
                keys.append(k)
    for k in keys:
        vals = [r.get(k) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len([v for v in vals if v is not None]) and None not in vals:
            med = statistics.median(nums)
            if all(isinstance(v, int) for v in nums) and med == int(med):
                med = int(med)
            out[k] = (med, min(nums), max(nums), len(nums))
        else:
            uniq = []
            for v in vals:
                s = fmt(v)
                if s not in uniq:
                    uniq.append(s)
            out[k] = " / ".join(uniq)
    return out


def table(title: str, results: dict[str, list[dict]], order: list[str]) -> str:
    names = [n for n in order if n in results]
    agg = {n: aggregate(results[n]) for n in names}
    metrics = []
    for n in names:
        for k in agg[n]:
            if k not in metrics and k != "errors":
                metrics.append(k)
    peers = [n for n in names if not n.startswith("tuskd") and n != "static"]  # A/B builds are not peers
    head = ["metric"] + names + ["tuskd / best peer"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in metrics:
        row = [k]
        for n in names:
            v = agg[n].get(k)
            if isinstance(v, tuple):
                med, lo, hi, cnt = v
                s = fmt(med)
                if cnt > 1 and lo != hi:
                    s += f" ({fmt(lo)}–{fmt(hi)})"
                row.append(s)
            else:
                row.append(v if v is not None else "")
        ratio = ""
        d = DIRECTION.get(k, "none")
        tv = agg.get("tuskd", {}).get(k)
        pv = [agg[p].get(k) for p in peers if isinstance(agg[p].get(k), tuple)]
        if d in (True, False) and isinstance(tv, tuple) and pv:
            best = max(x[0] for x in pv) if d else min(x[0] for x in pv)
            if best:
                ratio = f"{tv[0] / best:.2f}× ({'higher' if d else 'lower'} is better)"
            elif tv[0] == 0:
                ratio = "= (both 0)"
        row.append(ratio)
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    errs = [(n, r["errors"]) for n in names for r in results[n] if r.get("errors")]
    for n, e in errs:
        lines.append(f"\n- {n}: {e}")
    return "\n".join(lines) + "\n"


def index_table(runs: list[dict]) -> str:
    """Scenario 10: one column per index size, and the last size against the first."""
    title = ("10. Index scale (tuskd alone): N objects of 1 KiB put in the index and body files by "
             "tusk-fill-index; per round, every size in turn (order rotating): restart to the first "
             "served hit, then hits on random objects (wrk -t2 -c32); medians over the rounds; last "
             "a restart with max_size 10 % below what is stored")
    keys = []
    for r in runs:
        keys += [k for k in r if k not in keys and k not in ("objects", "errors")]
    head = ["metric"] + [f"{r['objects']:,} objects" for r in runs]
    if len(runs) > 1:
        head.append("largest / smallest")
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        row = [k] + [fmt(r.get(k)) for r in runs]
        if len(runs) > 1:
            a, b = runs[0].get(k), runs[-1].get(k)
            ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a
            row.append(f"{b / a:.2f}×" if ok else "")
        lines.append("| " + " | ".join(row) + " |")
    for r in runs:
        if r.get("errors"):
            lines.append(f"\n- {r['objects']:,} objects: {r['errors']}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------


def machine_facts(tuskd: Path, shown_as: Path) -> list[str]:
    def cmd(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception as e:
            return f"? ({e})"

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) // (1 << 20)} GiB"
    rev = cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    st = tuskd.stat()
    return [
        f"- nproc {os.cpu_count()}, CPU {cpu}, RAM {mem}, kernel {platform.release()}",
        f"- {platform.freedesktop_os_release().get('PRETTY_NAME', '?')}, Python {platform.python_version()}",
        f"- tuskd: {shown_as} (mtime {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))},"
        f" sha256 {hashlib.sha256(tuskd.read_bytes()).hexdigest()[:12]}), tree {rev}"
        + (" + uncommitted changes" if dirty else ""),
        f"- {cmd(['varnishd', '-V'])}",
        f"- {cmd(['nginx', '-v'])}",
        f"- {cmd(['radosgw', '--version'])}",
        f"- {cmd(['wrk', '-v'])}; {cmd(['aria2c', '--version'])}; {cmd(['curl', '--version'])}",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 32/128 MiB objects, 3 s wrk")
    ap.add_argument("--scenarios", default="1,2,3,4,5,6")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default: quick 1, full 3 "
                    "direct / 2 throttled)")
    ap.add_argument("--tuskd", default=str(ROOT / "build" / "proxy" / "tuskd"))
    ap.add_argument("--fill-index", default=str(ROOT / "build" / "bench" / "tusk-fill-index"),
                    help="the tusk-fill-index tool (scenario 10)")
    ap.add_argument("--perf", default="", help="scenarios (e.g. 7,2) whose tuskd runs are "
                    "profiled with perf record -g; the report's top lines go to the notes")
    ap.add_argument("--tuskd-b", help="a second tuskd binary, contender `tuskd-b` (A/B)")
    ap.add_argument("--out", help="write the tables, command and machine facts here (markdown)")
    ap.add_argument("--time-limit", type=float, help="seconds (default: quick 300, full 2400)")
    ap.add_argument("--tmp", help="parent of the temp dir (default: $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    ap.add_argument("--throttled", default="3,4,5",
                    help="which of scenarios 3,4,5 scenario 6 repeats behind the relay")
    ap.add_argument("--contenders", default="tuskd,varnish,nginx,nginx-slice,static",
                    help="comma-separated subset, for quick A/B runs (the table needs all)")
    args = ap.parse_args(argv)

    def subset(option: str, value: str, allowed: list, conv=str) -> list:
        """The comma-separated `value` of `option` as a non-empty subset of `allowed`, in
        `allowed`'s order."""
        picked = {conv(x.strip()) for x in value.split(",") if x.strip()}
        if not picked or not picked <= set(allowed):
            ap.error(f"{option}: a subset of {','.join(map(str, allowed))}")
        return [a for a in allowed if a in picked]

    sel = subset("--scenarios", args.scenarios, list(range(1, 11)), int)
    perf_for = subset("--perf", args.perf, [1, 2, 3, 4, 5, 7, 8, 9], int) if args.perf else []
    slow = subset("--throttled", args.throttled, [3, 4, 5], int)
    allowed = ["tuskd", "tuskd-copy", "tuskd-dirs", "varnish", "nginx", "nginx-slice", "static"]
    if args.tuskd_b:
        allowed.insert(1, "tuskd-b")
        if args.contenders == ap.get_default("contenders"):
            args.contenders += ",tuskd-b"
    order = subset("--contenders", args.contenders, allowed)
    tuskd_src = Path(args.tuskd).resolve()
    if not os.access(tuskd_src, os.X_OK):
        ap.error(f"no executable tuskd at {tuskd_src}")
    limit = args.time_limit or (300 if args.quick else 2400)
    deadline = Deadline(limit)
    rounds_direct = args.rounds or (1 if args.quick else 3)
    rounds_slow = args.rounds or (1 if args.quick else 2)
    sizes = {"obj256": (32 if args.quick else 256) * MiB, "obj1g": (128 if args.quick else 1024) * MiB}
    if 7 in sel:
        sizes[scale.SMALL_BASE] = 4096
    if 9 in sel:
        sizes[scale.LARGE_BASE] = (4 if args.quick else 16) * MiB
    label = {"obj256": f"{sizes['obj256'] // MiB} MiB object", "obj1g": f"{sizes['obj1g'] // MiB} MiB object"}

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="tusk-compare-", dir=args.tmp))
    procs = Procs()
    up = Upstream(procs, tmp, sizes)
    results: dict[tuple[str, int], dict[str, list[dict]]] = {}
    index_results: list[dict] = []
    notes: list[str] = []
    t_start = time.monotonic()
    status = 0
    log(f"temp dir {tmp}; time limit {limit:.0f}s; scenarios {sel}")
    contenders: list[Contender] = []
    relays: dict[str, Relay] = {}
    try:
        # the binary may be rebuilt while we run: measure one fixed copy
        tuskd = tmp / "tuskd"
        shutil.copy2(tuskd_src, tuskd)
        tuskd_b = tmp / "tuskd-b"
        if args.tuskd_b:
            shutil.copy2(Path(args.tuskd_b).resolve(), tuskd_b)
        facts = machine_facts(tuskd, tuskd_src)  # the copy (copy2 keeps the mtime)
        up.start(deadline)
        up.make_objects(deadline)
        phases = []
        direct = [s for s in sel if s <= 5 or s in (7, 8, 9)]
        if direct:
            phases.append(("direct", direct, rounds_direct))
        if 6 in sel:
            phases.append(("throttled", slow, rounds_slow))
        cold_base = {3: "obj256", 4: "obj1g", 5: "obj1g"}
        copies = []
        for ph, scens, rounds in phases:
            for s in scens:
                if s in cold_base:
                    for r in range(rounds):
                        for n in order:
                            copies.append((f"cold-{ph}-s{s}-r{r}-{n}", cold_base[s]))
        copies += scale.copies_wanted(sel, rounds_direct, args.quick)
        if copies:
            up.copies(copies, deadline)
        bench = Bench(args, tmp, procs, up, deadline)
        warmed: set[str] = set()  # contenders that hold scenario 9's objects

        for ph, scens, rounds in phases:
            log(f"== phase {ph}: scenarios {scens}, {rounds} round(s)")
            pdir = tmp / ph
            contenders = [Tuskd(procs, pdir / "tuskd", tuskd), TuskdB(procs, pdir / "tuskd-b", tuskd_b),
                          TuskdCopy(procs, pdir / "tuskd-copy", tuskd),
                          TuskdDirs(procs, pdir / "tuskd-dirs", tuskd),
                          Varnish(procs, pdir / "varnish"),
                          Nginx(procs, pdir / "nginx"), NginxSlice(procs, pdir / "nginx-slice"),
                          NginxStatic(procs, pdir / "static", up.static)]
            contenders = [c for c in contenders if c.name in order]
            relays = {}
            for c in contenders:
                upp = up.port
                if ph == "throttled" and not c.static:
                    relays[c.name] = Relay(procs, pdir, c.name, up.port)
                    upp = relays[c.name].port
                c.start(upp)
                log(f"{c.name} on 127.0.0.1:{c.port} (upstream 127.0.0.1:{upp})")
            for s in scens:
                res = results.setdefault((ph, s), {})
                for r in range(rounds):
                    if r > 0 and deadline.left() < (300 if ph == "throttled" else 120):
                        notes.append(f"{ph} scenario {s}: stopped after {r} round(s) (time limit)")
                        break
                    # rotate the order each round: whoever runs first (or after a heavy
                    # neighbour) does not keep that position's luck or penalty
                    k = r % len(contenders)
                    for c in contenders[k:] + contenders[:k]:
                        deadline.bound(1)
                        if s in cold_base:
                            key = f"cold-{ph}-s{s}-r{r}-{c.name}"
                        else:
                            key = "obj256"
                        t0 = time.monotonic()
                        if c.proc is not None and c.proc.poll() is not None:
                            rc = c.proc.returncode
                            notes.append(f"{ph}: {c.name} had exited ({rc}: "
                                         f"{tail(c.log_path, 1)!r}) before scenario {s} round {r}; "
                                         "restarted it (same cache dir)")
                            log(notes[-1])
                            c.stop()
                            c.start(relays[c.name].port if c.name in relays else up.port)
                        prof = None
                        if c.name == "tuskd" and s in perf_for:
                            prof = scale.Perf(tmp / f"perf-s{s}-r{r}", c.proc.pid)
                        try:
                            relay = relays.get(c.name)
                            if s == 1:
                                fig = bench.s1_small(c, key)
                            elif s == 2:
                                fig = bench.s2_large(c, key)
                            elif s == 3:
                                fig = bench.s3_herd(c, key, relay)
                            elif s == 4:
                                fig = bench.s4_range(c, key, relay)
                            elif s == 5:
                                fig = bench.s5_aria(c, key, relay)
                            elif s == 7:
                                fig = scale.s7_misses(bench, c, r)
                            elif s == 8:
                                fig = scale.s8_connections(bench, c)
                            else:
                                fig = scale.s9_large_hits(bench, c, warmed)
                        except (TimeUp, Interrupted):
                            raise
                        except Exception as e:
                            fig = {"errors": f"round {r}: {type(e).__name__}: {str(e)[:300]}"}
                        finally:
                            if prof is not None:
                                notes.append(prof.finish())
                                log(notes[-1])
                            if c.proc is not None and c.proc.poll() is not None:
                                fig["errors"] += f" (exited {c.proc.returncode}; log: {tail(c.log_path, 5)})"
                        if c.proc is not None and c.proc.poll() is not None:
                            fig["errors"] = (fig.get("errors", "") + f" {c.name} died during round {r} "
                                             f"({c.proc.returncode}: {tail(c.log_path, 1)!r}): "
                                             "figures invalid").strip()
                        if c.static:
                            fig.pop("upstream reqs", None)
                            fig.pop("upstream MB", None)
                            fig.pop("background s", None)
                        res.setdefault(c.name, []).append(fig)
                        short = {k: fmt(v) for k, v in fig.items() if k in DIRECTION or k in
                                 ("correct", "errors", "relay CPU %")}
                        log(f"[{ph} s{s} r{r}] {c.name} ({time.monotonic() - t0:.1f}s): {short}")
            for c in contenders:
                c.stop()
                shutil.rmtree(c.dir / "cache", ignore_errors=True)
                shutil.rmtree(c.dir / "n", ignore_errors=True)
            for rl in relays.values():
                procs.stop(rl.proc)
            contenders, relays = [], {}
        if 10 in sel:
            # tuskd alone against its own curve: peers keep no index across restarts
            fill_tool = Path(args.fill_index).resolve()
            s10 = scale.IndexScale(bench, Tuskd, tuskd, fill_tool, scale.s10_sizes(args.quick))
            try:
                index_results.extend(s10.run(args.rounds or (1 if args.quick else 3)))
            finally:
                s10.cleanup()
    except TimeUp as e:
        notes.append(f"stopped early: {e}")
        log(str(e))
        status = 3
    except Interrupted as e:
        notes.append(f"interrupted ({e})")
        log(f"interrupted ({e})")
        status = 130
    except Exception as e:
        log(f"error: {type(e).__name__}: {e}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for c in contenders:
            try:
                c.stop()
            except Exception:
                pass
        procs.stop_all()
        up.stop()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    elapsed = time.monotonic() - t_start
    out = []
    for (ph, s), res in results.items():
        title = TITLES[s].format(obj256=label["obj256"], obj1g=label["obj1g"],
                                 n7=f"{scale.small_count(args.quick):,}",
                                 n9=scale.large_clients(args.quick),
                                 obj16=f"{sizes.get(scale.LARGE_BASE, 0) // MiB} MiB object")
        if ph == "throttled":
            title += f" — upstream behind relay `{SLOW_MODE}` (40 MiB/s per connection, +20 ms)"
        out.append(table(title, res, order))
    if index_results:
        out.append(index_table(index_results))
    report = "\n".join(out)
    print(report)
    if notes:
        print("\n".join("- " + n for n in notes))
    if args.out and (results or index_results):
        cmdline = "/usr/bin/python3 bench/compare.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        md = [
            "# tusk side-by-side load comparison", "",
            f"Command: `{cmdline}` — {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min.", "",
            "Machine and versions:", *facts, "",
            "Contenders (all on 127.0.0.1, same radosgw, path-style `/bench/<key>`, anonymous "
            "public-read objects): tuskd (`workers: 0`, `chunk_size: 8MiB`, `signature: none`); "
            "Varnish (`-s malloc,4G`, ttl 1d on 200s, builtin Range handling, `timeout_idle` 120 s); "
            "nginx proxy_cache (cache lock, keepalive upstream, 16,384 worker connections); nginx slice (`slice 8m`, key `$uri$slice_range`); "
            "static = nginx serving the same bytes from local disk (page-cached): the physical "
            "limit, not a peer. Figures are medians over rounds (min–max in brackets). "
            "`tuskd / best peer` compares with the best of Varnish, nginx and nginx-slice. "
            "Upstream requests/bytes come from radosgw's beast log (bytes = sent + received, "
            "headers included); `background s` is how long radosgw kept sending after the "
            "client finished; `server CPU s` is user+sys CPU of the contender's processes during "
            "the run (2 cores shared by clients, servers and radosgw).", "",
            report,
        ]
        if notes:
            md += ["Notes:", *("- " + n for n in notes), ""]
        Path(args.out).write_text("\n".join(md) + "\n")
        log(f"wrote {args.out}")
    if args.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"done in {elapsed:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
