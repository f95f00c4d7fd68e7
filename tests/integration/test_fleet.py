"""A fleet (issue 11): HAProxy (Debian's, with packaging/haproxy/haproxy.cfg) in front of three
tuskd that know each other as peers, and one radosgw. What is shown:
- objects fetched twice through HAProxy are exact, and radosgw is asked for each byte once for
  the whole fleet (the edge HAProxy picks fills from the owner, the owner from radosgw);
- the same cold object asked of all three edges directly, at once, leaves radosgw once;
- an edge killed with kill -9 during downloads: clients that resume through HAProxy get exact
  bytes from the others (peers of a dead owner fall back to radosgw); restarted, it serves its
  objects again from its disk, and the fleet asks radosgw for none of them;
- an edge that drains (SIGTERM) leaves HAProxy's pool while it still serves, no client request
  fails, and only its objects move (consistent hashing).
Counting is done on radosgw's own log (every byte range it was asked for), not on tuskd's word."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from harness import free_port, wait_until

MiB = 1 << 20
SHIPPED = Path(os.environ.get("TUSK_SOURCE_DIR", Path(__file__).parents[2])) / (
    "packaging/haproxy/haproxy.cfg"
)


class HAProxy:
    """Debian's haproxy running the shipped configuration's defaults, frontend and backend
    sections, with the bind address and servers replaced by loopback ones (and a global
    section of our own: no syslog, an admin socket to read server states)."""

    def __init__(self, workdir: Path, edges: dict[str, "object"]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # HAProxy refuses a socket path over 97 bytes, and a CI checkout's pytest folder can be
        # deeper than that: the admin socket lives in a short folder of its own.
        self.sockdir = Path(tempfile.mkdtemp(prefix="tusk-ha-", dir="/tmp"))
        self.sock = self.sockdir / "haproxy.sock"
        shipped = SHIPPED.read_text()
        body = shipped[shipped.index("\ndefaults") :]
        body = re.sub(r"^\s*log .*\n|^\s*option httplog\n", "", body, flags=re.M)
        body, n = re.subn(r"^(\s*)bind .*$", rf"\1bind 127.0.0.1:{self.port}", body, flags=re.M)
        assert n == 1, "the shipped haproxy.cfg has one frontend bind line"
        body, n = re.subn(r"^\s*server .*\n", "", body, flags=re.M)
        assert n >= 1, "the shipped haproxy.cfg lists example servers"
        assert "balance uri" in body and "hash-type consistent" in body
        assert re.search(r"option httpchk GET /readyz", body)
        for name, t in edges.items():
            body += f"    server {name} 127.0.0.1:{t.port} port {t.admin_port}\n"
        self.cfg = workdir / "haproxy.cfg"
        self.cfg.write_text(
            "global\n    maxconn 4096\n"
            f"    stats socket {self.sock} mode 600 level admin\n" + body
        )
        check = subprocess.run(
            ["haproxy", "-c", "-f", str(self.cfg)], capture_output=True, text=True
        )
        assert check.returncode == 0, f"haproxy -c refused the configuration:\n{check.stderr}"
        self.log = open(workdir / "haproxy.log", "wb")
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.cfg)], stdout=self.log, stderr=subprocess.STDOUT
        )

    def states(self) -> dict[str, str]:
        """server name → UP / DOWN / ... from the admin socket's `show stat`."""
        return {name: f["status"].split()[0] for name, f in self.stat().items()}

    def sessions(self) -> dict[str, int]:
        """server name → client sessions it is serving now (`scur`; idle pooled connections to
        the server are not sessions)."""
        return {name: int(f["scur"] or 0) for name, f in self.stat().items()}

    def stat(self) -> dict[str, dict[str, str]]:
        """server name → its `show stat` fields."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(str(self.sock))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        out = {}
        lines = data.decode().splitlines()
        cols = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            f = dict(zip(cols, line.split(",")))
            if f.get("pxname") == "edges" and f.get("svname") not in ("BACKEND", None):
                out[f["svname"]] = f
        return out

    def wait_states(self, want: dict[str, str], timeout: float = 20) -> None:
        def ok():
            try:
                st = self.states()
            except OSError:
                return False
            return all(st.get(k) == v for k, v in want.items())

        wait_until(ok, timeout, 0.1, f"haproxy server states {want}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)


@pytest.fixture
def fleet(rgw, bucket, make_tuskd, tmp):
    """(bucket, {name: Tuskd}, HAProxy): three edges with 1 MiB chunks, peers of each other."""
    b = bucket()
    edges = {}
    for i in (1, 2, 3):
        t = make_tuskd(b, start=False, name=f"edge{i}")
        t.config["cache"]["chunk_size"] = "1MiB"
        edges[f"edge{i}"] = t
    members = {name: t.url for name, t in edges.items()}
    for name, t in edges.items():
        t.config["peers"] = {
            "self": name,
            "members": members,
            "connect_timeout": "500ms",
            "down_for": "5s",
        }
        t.start()
    ha = HAProxy(tmp, edges)
    try:
        ha.wait_states({name: "UP" for name in edges})
        yield b, edges, ha
    finally:
        ha.stop()


def put_objects(rgw, b, sizes: dict[str, int], seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    s3 = rgw.s3("tusk")
    out = {}
    for key, size in sizes.items():
        out[key] = rng.randbytes(size)
        s3.put_object(Bucket=b, Key=key, Body=out[key])
    return out


def ranges_asked(rgw, since: int, b: str) -> dict[str, list[tuple[int, int] | None]]:
    """key → the byte ranges radosgw was asked for by GETs after `since` (None: the whole)."""
    out: dict[str, list] = {}
    for r in rgw.object_requests(since, bucket=b, methods=("GET",)):
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", r.range or "")
        out.setdefault(r.key, []).append((int(m[1]), int(m[2])) if m else None)
    return out


def assert_each_byte_once(asked: dict[str, list], objects: dict[str, bytes]) -> None:
    """Every byte of every object was asked of radosgw exactly once: one whole GET, or ranges
    that tile the object without overlapping."""
    for key, data in objects.items():
        got = asked.get(key)
        assert got, f"{key} was never asked of radosgw"
        if None in got:
            assert got == [None], f"{key}: a whole GET and more: {got}"
            continue
        pos = 0
        for first, last in sorted(got):
            assert first == pos, f"{key}: asked {sorted(got)} (gap or overlap at {pos})"
            pos = min(last, len(data) - 1) + 1  # a probe may ask past the end of a small object
        assert pos == len(data), f"{key}: asked up to byte {pos} of {len(data)}"


def test_objects_through_haproxy_leave_the_upstream_once(rgw, fleet):
    b, edges, ha = fleet
    rng = random.Random(11)
    sizes = {f"obj{i:02d}.img": rng.randrange(100 * 1024, 5 * MiB) for i in range(20)}
    objects = put_objects(rgw, b, sizes, seed=12)
    since = rgw.log_offset()
    for round_ in (1, 2):
        for key, data in objects.items():
            r = requests.get(f"{ha.url}/images/{key}", timeout=30)
            assert r.status_code == 200, (round_, key, r.status_code)
            assert r.content == data, (round_, key)
        if round_ == 1:
            for t in edges.values():
                t.wait_fills_settled()
    assert_each_byte_once(ranges_asked(rgw, since, b), objects)
    # The fleet as a whole received each object's bytes once from radosgw; the edges HAProxy
    # picked that do not own an object got it from its owner.
    upstream = sum(t.metric("tusk_upstream_bytes_total") for t in edges.values())
    assert upstream == sum(sizes.values())
    from_peers = sum(t.metric("tusk_peer_bytes_total") for t in edges.values())
    assert from_peers > 0, "no edge filled from a peer: peers are not in use"
    served_by = {n: t.metric("tusk_requests_total") for n, t in edges.items()}
    assert sum(1 for v in served_by.values() if v > 0) >= 2, f"HAProxy used one edge: {served_by}"


def test_one_cold_object_asked_of_every_edge_at_once_leaves_the_upstream_once(rgw, fleet):
    b, edges, _ = fleet
    objects = put_objects(rgw, b, {"big.img": 24 * MiB}, seed=21)
    data = objects["big.img"]
    since = rgw.log_offset()
    results: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def fetch(name, t):
        start.wait()
        r = requests.get(f"{t.url}/images/big.img", timeout=60)
        with lock:
            results.append((name, r.status_code, r.content))

    threads = [
        threading.Thread(target=fetch, args=(n, t)) for n, t in edges.items() for _ in range(2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert len(results) == 6
    for name, status, body in results:
        assert status == 200, name
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), name
    for t in edges.values():
        t.wait_fills_settled()
    assert_each_byte_once(ranges_asked(rgw, since, b), objects)
    # One edge (the owner) filled from radosgw; the two others from it.
    up = {n: t.metric("tusk_upstream_bytes_total") for n, t in edges.items()}
    owners = [n for n, v in up.items() if v == len(data)]
    assert len(owners) == 1 and sum(up.values()) == len(data), up
    for n, t in edges.items():
        if n != owners[0]:
            assert t.metric("tusk_peer_bytes_total", peer=owners[0]) == len(data), n
            assert t.metric("tusk_peer_requests_total", peer=owners[0], result="ok") > 0, n


def resuming_download(url: str, size: int, out: dict, key: str, rate: int) -> None:
    """Downloads `url` reading at most `rate` bytes/s; when the connection breaks, resumes with
    Range from the bytes it has (as wget -c does), up to 8 times. out[key] = (bytes, resumes)."""
    got = bytearray()
    resumes = 0
    deadline = time.monotonic() + 90
    while len(got) < size and time.monotonic() < deadline:
        headers = {"Range": f"bytes={len(got)}-"} if got else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=20) as r:
                if got:
                    assert r.status_code == 206, r.status_code
                    assert r.headers["Content-Range"] == f"bytes {len(got)}-{size - 1}/{size}"
                else:
                    assert r.status_code == 200, r.status_code
                for chunk in r.iter_content(256 * 1024):
                    got += chunk
                    time.sleep(len(chunk) / rate)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.Timeout):
            pass
        if len(got) < size:
            resumes += 1
            if resumes > 8:
                break
            time.sleep(0.2)
    out[key] = (bytes(got), resumes)


def test_edge_killed_during_downloads_then_restarted(rgw, fleet):
    b, edges, ha = fleet
    rng = random.Random(31)
    warm = put_objects(rgw, b, {f"w{i:02d}.img": rng.randrange(64 * 1024, 2 * MiB)
                                for i in range(12)}, seed=32)
    for key, data in warm.items():
        assert requests.get(f"{ha.url}/images/{key}", timeout=30).content == data
    for t in edges.values():
        t.wait_fills_settled()

    # Slow downloads of cold objects through HAProxy, then the busiest edge dies. The objects
    # are much larger than what the sockets between tuskd, HAProxy and the client can hold (a
    # killed process's socket still delivers what its send buffer holds, up to 4 MiB here), so
    # each download is still being sent by its edge when the kill comes.
    cold = put_objects(rgw, b, {f"c{i}.img": 40 * MiB for i in range(4)}, seed=33)
    out: dict[str, tuple[bytes, int]] = {}
    threads = [
        threading.Thread(
            target=resuming_download,
            args=(f"{ha.url}/images/{k}", len(d), out, k, 5 * MiB),
        )
        for k, d in cold.items()
    ]
    for th in threads:
        th.start()
    # The victim is the edge HAProxy has the most downloads on (its open connections would also
    # count HAProxy's idle pooled ones).
    time.sleep(1.5)
    sessions = ha.sessions()
    victim = max(sessions, key=sessions.get)
    assert sessions[victim] >= 1, sessions
    edges[victim].kill9()
    for th in threads:
        th.join(120)
    assert set(out) == set(cold)
    resumed = 0
    for k, d in cold.items():
        body, resumes = out[k]
        assert len(body) == len(d), f"{k}: {len(body)} of {len(d)} bytes after {resumes} resumes"
        assert body == d, k
        resumed += resumes
    assert resumed >= 1, "no download was cut: the kill did not hit a download"
    ha.wait_states({victim: "DOWN"}, timeout=20)

    # Restarted, the edge serves its objects again from its own disk: every warm object through
    # HAProxy comes from some edge's cache, and radosgw is asked for nothing.
    edges[victim].restart()
    ha.wait_states({n: "UP" for n in edges}, timeout=30)
    before = edges[victim].metric("tusk_requests_total")
    since = rgw.log_offset()
    for key, data in warm.items():
        r = requests.get(f"{ha.url}/images/{key}", timeout=30)
        assert r.status_code == 200 and r.content == data, key
        assert r.headers.get("X-Cache") == "HIT", (key, r.headers.get("X-Cache"))
    assert rgw.object_requests(since, bucket=b) == []
    assert edges[victim].metric("tusk_requests_total") > before, "HAProxy never used it again"


def serving_edge(edges: dict, url: str) -> tuple[str, bytes]:
    """GETs `url` and tells which edge answered (the one whose request count moved). For cached
    objects only: a miss also moves the count of the owner it fills from."""
    before = {n: t.metric("tusk_requests_total") for n, t in edges.items() if t.running()}
    body = requests.get(url, timeout=30).content
    after = {n: t.metric("tusk_requests_total") for n, t in edges.items() if t.running()}
    moved = [n for n in after if after[n] > before.get(n, 0)]
    assert len(moved) == 1, f"{url}: request counts moved on {moved}"
    return moved[0], body


def test_a_draining_edge_leaves_the_pool_without_a_failed_request(rgw, fleet):
    b, edges, ha = fleet
    rng = random.Random(41)
    objects = put_objects(rgw, b, {f"d{i:02d}.img": rng.randrange(64 * 1024, 1 * MiB)
                                   for i in range(15)}, seed=42)
    for key, data in objects.items():
        assert requests.get(f"{ha.url}/images/{key}", timeout=30).content == data, key
    for t in edges.values():
        t.wait_fills_settled()
    where = {}
    for key, data in objects.items():
        where[key], body = serving_edge(edges, f"{ha.url}/images/{key}")
        assert body == data, key
    # The edge that serves the most objects drains: /readyz turns 503 at once while it keeps
    # serving for drain_delay (longer than HAProxy's inter 2s x fall 2), so HAProxy takes it out
    # of the pool before its port closes.
    counts = {n: list(where.values()).count(n) for n in edges}
    victim = max(counts, key=counts.get)
    assert counts[victim] >= 1
    t = edges[victim]
    t.stop()
    t.config["server"]["drain_delay"] = "8s"
    t.start()
    ha.wait_states({n: "UP" for n in edges}, timeout=30)

    failures: list[str] = []
    stop = threading.Event()

    def clients():
        keys = list(objects)
        i = 0
        while not stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            try:
                r = requests.get(f"{ha.url}/images/{key}", timeout=10)
                if r.status_code != 200 or r.content != objects[key]:
                    failures.append(f"{key}: {r.status_code}")
            except requests.RequestException as e:
                failures.append(f"{key}: {e}")

    th = threading.Thread(target=clients)
    th.start()
    try:
        time.sleep(0.5)
        t.proc.send_signal(15)
        ha.wait_states({victim: "DOWN"}, timeout=8)
        assert t.proc.poll() is None, "HAProxy saw the edge go only when it had exited"
        t.proc.wait(30)
        time.sleep(1)  # requests after the port closed, too
    finally:
        stop.set()
        th.join(30)
    assert failures == [], failures[:5]
    # Only the drained edge's objects moved, each to one of the others; the rest stayed put.
    for t2 in edges.values():
        if t2.running():
            t2.wait_fills_settled()
    for key, data in objects.items():
        now, body = serving_edge(edges, f"{ha.url}/images/{key}")
        assert body == data, key
        if where[key] == victim:
            assert now != victim, key
        else:
            assert now == where[key], f"{key} moved from {where[key]} to {now}"
