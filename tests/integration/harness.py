"""Reusable helpers for tusk's integration tests: a real radosgw (Rgw), the tuskd process (Tuskd),
eustore-style image tarballs, eustore checksum names and catalog.json documents.

Only the standard library plus boto3/botocore/requests (Debian packages; run /usr/bin/python3).
Tricky: radosgw writes its log asynchronously, so Rgw.requests() first sends a marker request and
waits until it shows up in the log; everything logged before the marker is then complete.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterable

import boto3
import requests
from botocore import UNSIGNED
from botocore.config import Config

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("TUSK_SOURCE_DIR", HERE.parent.parent)).resolve()
RADOSGW_SH = SOURCE_DIR / "scripts" / "radosgw.sh"


_HANDED_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (picked by the kernel, then released), never one
    this process handed out before: two picks in a row may otherwise get the same port back
    (it happened: a tuskd whose admin port equalled its server port refused to start)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_PORTS:
            _HANDED_PORTS.add(port)
            return port


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls predicate() until it returns a truthy value (returned) or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """Parses a shell-sourceable KEY='value' file (as written by scripts/radosgw.sh)."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        parts = shlex.split(v)
        env[k.strip()] = parts[0] if parts else ""
    return env


# ---------------------------------------------------------------------------------------------
# radosgw


@dataclasses.dataclass(frozen=True)
class RgwRequest:
    """One request as radosgw's beast frontend logged it (`debug rgw = 1`)."""

    user: str  # "anonymous" or the uid
    method: str
    path: str  # as sent, URL-encoded, without the query
    query: str  # without the '?', "" if none
    status: int
    range: str  # the Range header value, "" when none

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        """The URL-encoded object key, "" for bucket- or service-level requests."""
        parts = self.path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""


# The one line per request that carries method, path and status, e.g.
#   ... 1 beast: 0x7f..: 127.0.0.1 - tusk [23/Nov/2026:10:41:44.780 +0000]
#       "GET /bkt1/dir/a%20b%2Bc.txt HTTP/1.1" 200 5 - "curl/7.88.1" bytes=1-2 latency=0.0s
BEAST_LINE = re.compile(
    r' beast: \S+ \S+ - (?P<user>\S+) \[[^\]]*\] "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+"'
    r' (?P<status>\d{3}) \S+ \S+ "(?:[^"\\]|\\.)*" (?P<range>\S+) latency='
)
MARKER_PREFIX = "/tusk-log-marker-"


class Rgw:
    """A radosgw instance: started here (start/stop via scripts/radosgw.sh) or already running
    (from_env_file). Attributes: endpoint, port, access_key, secret_key, other_access_key,
    other_secret_key, dir, log_path."""

    def __init__(self, env: dict[str, str] | None = None, owned: bool = False):
        self.env: dict[str, str] = {}
        self.dir: Path | None = None
        self._owned = owned
        if env:
            self._load(env)

    def _load(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        self.endpoint = env["RGW_ENDPOINT"]
        self.port = int(self.endpoint.rsplit(":", 1)[1].split("/")[0])
        self.access_key = env["RGW_ACCESS_KEY"]
        self.secret_key = env["RGW_SECRET_KEY"]
        self.other_access_key = env["RGW_OTHER_ACCESS_KEY"]
        self.other_secret_key = env["RGW_OTHER_SECRET_KEY"]
        self.dir = Path(env["RGW_DIR"]) if env.get("RGW_DIR") else None
        log = env.get("RGW_LOG") or (str(self.dir / "radosgw.log") if self.dir else "")
        self.log_path = Path(log) if log else None

    @classmethod
    def from_env_file(cls, path: str | os.PathLike) -> "Rgw":
        """Uses an instance somebody else started (we will not stop it)."""
        return cls(read_env_file(path), owned=False)

    def start(self, tmpdir: str | os.PathLike, timeout: float = 120) -> "Rgw":
        """Starts a fresh single-node cluster + radosgw inside tmpdir; raises with the script's
        output when it fails."""
        d = Path(tmpdir)
        d.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            ["bash", str(RADOSGW_SH), "start", str(d)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if p.returncode != 0:
            # stdout holds the env (secrets) only on success; stderr has the failing log's tail.
            raise RuntimeError(f"radosgw.sh start failed ({p.returncode}):\n{p.stderr}")
        self._owned = True
        self._load(read_env_file(d / "env"))
        self.dir = d.resolve()
        self.start_message = p.stderr.strip()
        return self

    def stop(self, purge: bool = False) -> None:
        """Stops the daemons if this object started them (by their recorded PIDs). purge=True
        then deletes the monitor and OSD data (the memstore dump is as big as what was stored)
        and keeps the logs."""
        if self._owned and self.dir is not None:
            subprocess.run(["bash", str(RADOSGW_SH), "stop", str(self.dir)], check=True, timeout=120)
            self._owned = False
            if purge:
                for sub in ("osd.0", "mon.a"):
                    shutil.rmtree(self.dir / sub, ignore_errors=True)

    # -- clients ---------------------------------------------------------------------------

    def keys(self, user: str | None = "tusk") -> tuple[str, str] | None:
        if user is None:
            return None
        if user == "tusk":
            return self.access_key, self.secret_key
        if user == "other":
            return self.other_access_key, self.other_secret_key
        raise ValueError(f"unknown user {user!r} (tusk, other or None)")

    def s3(self, user: str | None = "tusk", endpoint: str | None = None, **config_kw):
        """A boto3 S3 client: path-style, SigV4, us-east-1. user None = anonymous (unsigned).
        endpoint overrides radosgw's (e.g. a relay in front of it: the relay keeps Host)."""
        keys = self.keys(user)
        cfg = Config(
            signature_version=UNSIGNED if keys is None else "s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            **config_kw,
        )
        kw: dict[str, Any] = dict(
            endpoint_url=endpoint or self.endpoint, region_name="us-east-1", config=cfg
        )
        if keys is not None:
            kw.update(aws_access_key_id=keys[0], aws_secret_access_key=keys[1])
        return boto3.session.Session().client("s3", **kw)

    def make_bucket(self, name: str, user: str = "tusk", acl: str = "private") -> str:
        self.s3(user).create_bucket(Bucket=name, ACL=acl)
        return name

    def delete_bucket(self, name: str, user: str = "tusk") -> None:
        """Deletes every object and the bucket (frees the memstore OSD's RAM)."""
        s3 = self.s3(user)
        for page in s3.get_paginator("list_objects").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)

    # -- request counting --------------------------------------------------------------------

    def log_offset(self) -> int:
        """The current size of radosgw.log: pass it to requests()/request_count() later."""
        self.flush_log()
        return self.log_path.stat().st_size

    def flush_log(self, timeout: float = 5.0) -> None:
        """Waits until everything radosgw handled before now is in its log: sends an anonymous
        marker request (a service-level path, never counted) and waits for its line."""
        marker = MARKER_PREFIX + uuid.uuid4().hex
        try:
            requests.get(self.endpoint + marker, timeout=5)
        except requests.RequestException:
            time.sleep(0.3)  # radosgw unreachable: best effort
            return
        needle = ('"GET ' + marker).encode()
        deadline = time.monotonic() + timeout
        with open(self.log_path, "rb") as f:
            # The marker is recent: search from a little before the end is enough, but the log
            # may have grown by a lot meanwhile, so scan forward from a safe point.
            f.seek(max(0, self.log_path.stat().st_size - (1 << 20)))
            buf = b""
            while True:
                chunk = f.read()
                buf = (buf + chunk)[-(1 << 21):]
                if needle in buf:
                    return
                if time.monotonic() > deadline:
                    return  # leave the counting to what is there
                time.sleep(0.01)

    def requests(self, since_offset: int = 0, flush: bool = True) -> list[RgwRequest]:
        """Every request radosgw logged after since_offset (marker requests left out)."""
        if flush:
            self.flush_log()
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(since_offset)
            for raw in f:
                line = raw.decode("utf-8", "replace")
                m = BEAST_LINE.search(line)
                if not m:
                    continue
                target = m["target"]
                path, _, query = target.partition("?")
                if path.startswith(MARKER_PREFIX):
                    continue
                rng = m["range"]
                out.append(
                    RgwRequest(
                        user=m["user"],
                        method=m["method"],
                        path=path,
                        query=query,
                        status=int(m["status"]),
                        range="" if rng == "-" else rng,
                    )
                )
        return out

    def object_requests(
        self,
        since_offset: int = 0,
        bucket: str | None = None,
        key: str | None = None,
        methods: Iterable[str] = ("GET", "HEAD"),
    ) -> list[RgwRequest]:
        """Object-level GET/HEAD requests (path /bucket/key) after since_offset, optionally for
        one bucket and one key (key given unencoded; compared after URL-decoding)."""
        from urllib.parse import unquote

        methods = set(methods)
        return [
            r
            for r in self.requests(since_offset)
            if r.method in methods
            and r.key
            and (bucket is None or r.bucket == bucket)
            and (key is None or unquote(r.key) == key)
        ]

    def request_count(self, since_offset: int = 0, **filters) -> int:
        """How many object GET/HEAD requests radosgw served after since_offset; the filters are
        those of object_requests (bucket=, key=, methods=)."""
        return len(self.object_requests(since_offset, **filters))


# ---------------------------------------------------------------------------------------------
# tuskd


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format → {(name, frozenset({(label, value), ...})): value}."""
    out: dict[tuple[str, frozenset], float] = {}
    label_re = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            body, _, value_part = rest.rpartition("}")
            pos = 0
            while pos < len(body):
                m = label_re.match(body, pos)
                if not m:
                    break
                v = m[2].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                labels[m[1]] = v
                pos = m.end()
        else:
            name, _, value_part = line.partition(" ")
        fields = value_part.split()
        if not fields:
            continue
        out[(name.strip(), frozenset(labels.items()))] = float(fields[0])
    return out


class Tuskd:
    """One tuskd process. config is the full YAML config as a dict (written as JSON, which is
    YAML 1.2 flow). Use Tuskd.make_config() for a default one. Attributes: url, admin_url,
    port, admin_port, workdir, config_path, log_path, pid."""

    def __init__(
        self,
        binary: str | os.PathLike | None,
        workdir: str | os.PathLike,
        config: dict,
        extra_args: Iterable[str] = (),
        env: dict[str, str] | None = None,
    ):
        self.binary = str(binary or os.environ.get("TUSKD", ""))
        if not self.binary:
            raise ValueError("no tuskd binary: pass one or set TUSKD")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.extra_args = list(extra_args)
        self.env = env
        self.config_path = self.workdir / "tusk.yaml"
        self.log_path = self.workdir / "tuskd.log"
        self.proc: subprocess.Popen | None = None
        listen = config["server"]["listen"]
        first = listen[0] if isinstance(listen, list) else listen
        self.port = int(first.rsplit(":", 1)[1])
        self.admin_port = int(config["admin"]["listen"].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    @staticmethod
    def write_keys(workdir: str | os.PathLike, access_key: str, secret_key: str, name="rgw"):
        """Writes the key files (mode 0600) and returns their paths (access, secret)."""
        d = Path(workdir)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, value in (("access", access_key), ("secret", secret_key)):
            p = d / f"{name}.{suffix}"
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            paths.append(str(p))
        return paths[0], paths[1]

    @staticmethod
    def make_config(
        workdir: str | os.PathLike,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        bucket: str,
        routes: list[dict] | None = None,
        upstream: dict | None = None,
        **sections,
    ) -> dict:
        """A complete default config for one upstream `rgw` and bucket: free ports, cache under
        workdir/cache, keys in files, routes /catalog.json and /images/. Keyword arguments
        replace or extend whole top-level sections (e.g. cache={...}, fill={...}); upstream={...}
        is merged into the rgw upstream (signature: none drops the key files)."""
        workdir = Path(workdir)
        up: dict[str, Any] = {
            "endpoint": endpoint,
            "signature": "v4",
            "region": "us-east-1",
            "connect_timeout": "2s",
            "stall_timeout": "5s",
            "retries": 1,
        }
        if access_key is not None and secret_key is not None:
            a, s = Tuskd.write_keys(workdir, access_key, secret_key)
            up.update(access_key_file=a, secret_key_file=s)
        up.update(upstream or {})
        if up.get("signature") == "none":
            up.pop("access_key_file", None)
            up.pop("secret_key_file", None)
        cfg = {
            "server": {"listen": [f"127.0.0.1:{free_port()}"], "workers": 1},
            "admin": {"listen": f"127.0.0.1:{free_port()}"},
            "cache": {"dir": str(workdir / "cache"), "max_size": "1GiB", "chunk_size": "8MiB"},
            "upstreams": {"rgw": up},
            "routes": routes
            if routes is not None
            else [
                {"path": "/catalog.json", "upstream": "rgw", "bucket": bucket,
                 "key": "catalog.json", "ttl": "60s"},
                {"prefix": "/images/", "upstream": "rgw", "bucket": bucket, "ttl": "1h",
                 "prefetch": "whole"},
            ],
        }
        cfg.update(sections)
        return cfg

    def write_config(self) -> None:
        # Tests stop tuskd with SIGTERM: no drain delay unless a test asks for one.
        if isinstance(self.config.get("server"), dict):
            self.config["server"].setdefault("drain_delay", "0s")
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")

    def start(self, wait: str | None = "readyz", timeout: float = 20) -> "Tuskd":
        """Writes the config and starts tuskd; waits for admin GET /<wait> → 200 (readyz,
        healthz, or None for no wait). Raises RuntimeError with the log tail on failure."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.write_config()
        log = open(self.log_path, "ab")
        log.write(f"=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.config_path), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        if wait:
            self.wait_ready(wait, timeout)
        return self

    def wait_ready(self, path: str = "readyz", timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tuskd exited with {self.proc.returncode} during start-up; log:\n"
                    + _tail(self.log_path)
                )
            try:
                r = requests.get(f"{self.admin_url}/{path}", timeout=1)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]!r}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        raise RuntimeError(
            f"tuskd /{path} not 200 after {timeout}s (last: {last}); log:\n" + _tail(self.log_path)
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status (None if never
        started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, **start_kw) -> "Tuskd":
        """Clean stop, then start with the same config, ports and cache dir."""
        self.stop()
        return self.start(**start_kw)

    def reload(self) -> None:
        """SIGHUP: re-read the config file (call write_config() after changing self.config)."""
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kw) -> requests.Response:
        """GET url+path (no retries, 30 s timeout unless given)."""
        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        r = requests.get(self.admin_url + "/metrics", timeout=5)
        r.raise_for_status()
        return parse_prometheus(r.text)

    def metric(self, name: str, **labels) -> float:
        """Sum of the samples of `name` whose labels include the given ones (0 if none)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)

    def wait_fills_settled(self, timeout: float = 20) -> None:
        """Waits until no fill is in flight: every completed fill's chunks are durable in the
        index (a completed fill stays in tuskd's table until then)."""
        deadline = time.monotonic() + timeout
        while self.metric("tusk_fills_active") > 0:
            if time.monotonic() > deadline:
                raise AssertionError("fills still active after %ss" % timeout)
            time.sleep(0.02)

    def rss_baseline_kb(self) -> int:
        """What memory limits are measured from: 0 for a plain build (the limit is absolute),
        the idle RSS for a sanitizer build (whose shadow memory and quarantine say nothing
        about tuskd's own use; there the limit bounds the growth)."""
        return self.rss_kb() if os.environ.get("TUSK_SANITIZER") else 0

    @staticmethod
    def rss_env() -> dict:
        """Environment for a tuskd whose RSS a test bounds. Under ASan, freed memory sits in
        its quarantine (256 MB by default) and counts as resident, so a few hundred freed
        512 KiB curl buffers of a 1 GiB fill read as growth; capped at 16 MB the growth is
        tuskd's own again. Other tests keep ASan's full quarantine."""
        if os.environ.get("TUSK_SANITIZER") != "asan":
            return {}
        opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
        return {"ASAN_OPTIONS": ":".join(opts + ["quarantine_size_mb=16"])}

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS (process gone?)")


# ---------------------------------------------------------------------------------------------
# eustore images and catalogs


def eustore_name(data_or_path: bytes | str | os.PathLike) -> str:
    """EUSTORE §1.7: 10-digit zero-padded decimal CRC-32 of the lowercase hex MD5 of the file
    (bytes are hashed directly; a str or path names a file)."""
    md5 = hashlib.md5()
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        md5.update(data_or_path)
    else:
        with open(data_or_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                md5.update(block)
    return "%010d" % (zlib.crc32(md5.hexdigest().encode("ascii")) & 0xFFFFFFFF)


def _pseudo_random(rng: random.Random, size: int) -> bytes:
    """Bytes that look like a file system: random blocks mixed with zero runs (compresses
    somewhat, as real images do, without costing much gzip time)."""
    out = bytearray()
    block = 64 * 1024
    while len(out) < size:
        n = min(block, size - len(out))
        out += bytes(n) if rng.random() < 0.25 else rng.randbytes(n)
    return bytes(out)


@dataclasses.dataclass
class Tarball:
    path: Path
    name: str  # the image name (top directory and <name>.img)
    single_kernel: bool
    size: int  # bytes of the .tgz
    md5: str
    eustore_name: str
    members: list[str]


def make_image_tarball(
    path: str | os.PathLike,
    name: str,
    single_kernel: bool = True,
    size_mb: float = 4,
    seed: int | None = None,
) -> Tarball:
    """Writes a eustore-style .tgz (EUSTORE §2.3) at path: `<name>/<name>.img` of size_mb MiB,
    plus kernel and ramdisk at the root (single-kernel) or in `xen-kernel/` and `kvm-kernel/`.
    Deterministic for a given (name, seed): same bytes, same eustore name."""
    rng = random.Random(seed if seed is not None else name)
    kver = "2.6.32-tusk"
    files: list[tuple[str, bytes]] = [(f"{name}/{name}.img", _pseudo_random(rng, int(size_mb * 2**20)))]
    if single_kernel:
        kdirs = [""]
    else:
        kdirs = ["xen-kernel/", "kvm-kernel/"]
    for kd in kdirs:
        flavour = kd.split("-")[0] or "generic"
        files.append((f"{name}/{kd}vmlinuz-{kver}-{flavour}", rng.randbytes(96 * 1024)))
        files.append((f"{name}/{kd}initrd.img-{kver}-{flavour}", rng.randbytes(64 * 1024)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({f"{name}/"} | {f"{name}/{kd}" for kd in kdirs if kd})
        for d in dirs:
            ti = tarfile.TarInfo(d.rstrip("/"))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1300000000
            tar.addfile(ti)
        for member, data in files:
            ti = tarfile.TarInfo(member)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1300000000
            tar.addfile(ti, io.BytesIO(data))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return Tarball(
        path=path,
        name=name,
        single_kernel=single_kernel,
        size=path.stat().st_size,
        md5=md5,
        eustore_name=eustore_name(path),
        members=[f[0] for f in files],
    )


CATALOG_VERSION = "eustore-catalog-2011-12-29"


def catalog_image(
    name: str,
    url: str,
    single_kernel: bool = True,
    description: str = "",
    version: str = "starter",
    architecture: str = "x86_64",
    os_name: str = "debian",
    created: int | None = None,
    recipe: str = "tusk-test",
    contact: str = "images@example.com",
    hypervisors: list[str] | None = None,
) -> dict:
    """One image entry with every key of EUSTORE §1.5 (strings, except hypervisors-supported)."""
    created = int(time.time()) if created is None else created
    stamp_hex = hashlib.md5(str(created).encode()).hexdigest()[:8]
    return {
        "name": name,
        "description": description or f"test image {name}",
        "version": version,
        "architecture": architecture,
        "os": os_name,
        "url": url,
        "date": time.strftime("%Y%m%d%H%M%S", time.gmtime(created)),
        "recipe": recipe,
        "stamp": f"{stamp_hex[:4]}-{stamp_hex[4:]}",
        "contact": contact,
        "single-kernel": "True" if single_kernel else "False",
        "hypervisors-supported": list(hypervisors or ["xen", "kvm"]),
    }


def catalog(images: Iterable[dict | Tarball], url_prefix: str = "") -> dict:
    """A catalog.json document (EUSTORE §1.5). Each item is either a dict of catalog keys (name
    and url required; the others default as in catalog_image()) or a Tarball, whose url becomes
    url_prefix + file name and whose name is its eustore checksum."""
    entries = []
    for img in images:
        if isinstance(img, Tarball):
            entries.append(
                catalog_image(
                    name=img.eustore_name,
                    url=url_prefix + img.path.name,
                    single_kernel=img.single_kernel,
                    description=f"{img.name}, "
                    + ("Single Kernel" if img.single_kernel else "Hypervisor-Specific Kernels"),
                )
            )
        else:
            # A dict in catalog spelling ("single-kernel", "os", ...): defaults for what it lacks.
            img = dict(img)
            sk = img.pop("single-kernel", img.pop("single_kernel", True))
            if isinstance(sk, str):
                sk = sk == "True"
            entry = catalog_image(name=img["name"], url=img["url"], single_kernel=sk)
            entry.update(img)
            entries.append(entry)
    return {"version": CATALOG_VERSION, "images": entries}


def catalog_bytes(images: Iterable[dict | Tarball], url_prefix: str = "") -> bytes:
    return (json.dumps(catalog(images, url_prefix), indent=2) + "\n").encode()
