"""Hostile clients against a running tuskd over real sockets (issue 8): pipelining without
reading, descriptor exhaustion, slow heads, smuggling primitives, odd methods and versions,
connection limits, clients that stop reading, and a bounded random-request fuzzer. Each test
reproduces one attack (scaled down where the point survives) and shows the edge holds: memory
and CPU bounded, clear framed answers, normal clients still served."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import threading
import time

import pytest

from harness import Tuskd, wait_until
from util import raw_request, read_until_close


def put(rgw, bucket, key, data, **extra):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data, **extra)


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def head_of(data: bytes) -> tuple[str, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return head[0], headers


def read_response(s: socket.socket) -> bytes:
    """Reads one response with a Content-Length body from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before a response head"
        data += chunk
    _, headers = head_of(data)
    want = data.index(b"\r\n\r\n") + 4 + int(headers.get("content-length", "0"))
    while len(data) < want:
        chunk = s.recv(65536)
        assert chunk, "closed inside a response body"
        data += chunk
    return data


def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Sends `request`, returns everything until the server closes (asserts it does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return read_until_close(s)


@pytest.fixture
def edge(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "catalog.json", b'{"images": []}\n', ContentType="application/json")
    put(rgw, b, "big.img", blob(32 << 20, seed=3))
    return make_tuskd(b, env=Tuskd.rss_env(),
                      server={"listen": [f"127.0.0.1:{_port()}"], "workers": 1,
                              "idle_timeout": "5s", "header_timeout": "2s",
                              "send_timeout": "2s"})


def _port() -> int:
    from harness import free_port
    return free_port()


def assert_serves(t: Tuskd) -> None:
    r = t.get("/catalog.json", timeout=10)
    assert r.status_code == 200 and r.content == b'{"images": []}\n'


# ---------------------------------------------------------------- 1. pipelining, backpressure


def test_pipelining_without_reading_is_bounded(edge):
    """Three connections pipeline GET /catalog.json for 4 s and never read. tuskd stops reading
    them (only socket buffers fill): RSS stays under 100 MB; before, 600 MiB sent → 710 MB."""
    t = edge
    assert_serves(t)
    base = t.rss_baseline_kb()
    one = b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
    sent = [0, 0, 0]
    socks = []

    def flood(i):
        s = socket.create_connection(("127.0.0.1", t.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(s)
        s.settimeout(0.2)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                sent[i] += s.send(one)
            except socket.timeout:
                continue  # the server stopped reading: backpressure
            except OSError:
                break

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    peak = 0
    while any(th.is_alive() for th in threads):
        peak = max(peak, t.rss_kb() - base)
        time.sleep(0.1)
    for th in threads:
        th.join()
    peak = max(peak, t.rss_kb() - base)
    # Without backpressure every byte sent is read into memory: tens of MB per second each.
    assert sum(sent) < 48 << 20, f"tuskd kept reading: {sum(sent) >> 20} MiB taken"
    assert peak < 100 * 1024, f"RSS {peak} kB"
    # Held open and still unread, the connections cost no CPU (no busy loop on full input).
    cpu0 = cpu_seconds(t.pid)
    time.sleep(2)
    assert cpu_seconds(t.pid) - cpu0 < 0.3
    for s in socks:
        s.close()
    assert_serves(t)


# ---------------------------------------------------------------- 2. descriptors


def test_out_of_descriptors_pauses_accepting_instead_of_spinning(edge):
    """tuskd's descriptor limit is cut to 256 while it runs and 300 connections are held open:
    it must not spin on accept() (was 130 % CPU and 17 MB/s of log), and serves again after."""
    t = edge
    assert_serves(t)
    subprocess.run(["prlimit", f"--pid={t.pid}", "--nofile=256:256"], check=True)
    held = []
    try:
        for _ in range(300):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", t.port))
            except OSError:
                s.close()
                break
            held.append(s)
        log_before = len(t.log())
        cpu0 = cpu_seconds(t.pid)
        time.sleep(3)
        cpu = cpu_seconds(t.pid) - cpu0
        logged = t.log()[log_before:]
        assert cpu < 0.6, f"tuskd used {cpu:.2f} s of CPU in 3 s while out of descriptors"
        assert logged.count("accept on") <= 2, logged[-2000:]
        assert len(logged) < 20000
        assert t.metric("tusk_accept_errors_total") > 0
    finally:
        for s in held:
            s.close()
    wait_until(lambda: t.get("/catalog.json", timeout=5).status_code == 200, 10,
               what="tuskd serving again")


def test_refuses_to_start_when_the_hard_limit_is_too_low(tmp, tuskd_bin):
    cfg = tmp / "t.yaml"
    cfg.write_text(f"server: {{ listen: ['127.0.0.1:{_port()}'], max_connections: 10000 }}\n"
                   f"admin: {{ listen: '' }}\ncache: {{ dir: {tmp}/c, max_size: 1GiB }}\n"
                   "upstreams: { u: { endpoint: 'http://127.0.0.1:1', signature: none } }\n"
                   "routes: [ { prefix: /x/, upstream: u, bucket: b } ]\n")
    out = subprocess.run(["prlimit", "--nofile=512:512", tuskd_bin, "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "max_connections 10000" in out.stdout + out.stderr
    assert "hard limit is 512" in out.stdout + out.stderr


def test_raises_the_soft_descriptor_limit(tmp, tuskd_bin, make_tuskd, rgw, bucket):
    t = make_tuskd(bucket(), start=False)
    t.config["server"]["max_connections"] = 3000
    t.write_config()
    proc = subprocess.Popen(["prlimit", "--nofile=1024:20000", tuskd_bin, "--config",
                             str(t.config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def soft():
            for line in open(f"/proc/{proc.pid}/limits"):
                if line.startswith("Max open files"):
                    return int(line.split()[3])
            return 0
        wait_until(lambda: soft() >= 4024, 10, what="soft limit raised")
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- 3. deadlines


def test_slow_head_is_cut_at_header_timeout(edge):
    """One header byte per 0.3 s: before, still open after 17 s with idle_timeout 5 s. With
    header_timeout 2 s the connection is answered 408 and closed within ~2 s."""
    t = edge
    s = socket.create_connection(("127.0.0.1", t.port))
    start = time.monotonic()
    closed_at = None
    data = b""
    try:
        for byte in b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            s.sendall(bytes([byte]))
            time.sleep(0.3)
            s.setblocking(False)
            try:
                got = s.recv(4096)
                data += got
                if not got:
                    closed_at = time.monotonic()
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_at = time.monotonic()
                break
            finally:
                s.setblocking(True)
            if time.monotonic() - start > 8:
                break
    finally:
        s.close()
    assert closed_at is not None, "slow head still open after 8 s"
    assert closed_at - start < 4
    assert data.startswith(b"HTTP/1.1 408")
    assert t.metric("tusk_connections_total", event="header_timeout") >= 1
    assert_serves(t)


def test_silent_connection_is_closed_at_header_timeout(edge):
    t = edge
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        start = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - start < 4


def test_keep_alive_connection_lives_idle_timeout_not_header_timeout(edge):
    t = edge
    with socket.create_connection(("127.0.0.1", t.port), timeout=20) as s:
        s.sendall(b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        time.sleep(3)  # longer than header_timeout, shorter than idle_timeout
        s.sendall(b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert s.recv(100) == b""
        assert 3 < time.monotonic() - start < 8


def test_client_that_stops_reading_is_closed_and_the_fill_goes_on(edge):
    t = edge
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", t.port))
    s.sendall(b"GET /images/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(1024)  # the head and a little of the body, then nothing more
    time.sleep(5)  # send_timeout is 2 s
    s.settimeout(5)
    total = 0
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    except OSError:
        pass
    s.close()
    assert total < 32 << 20, "the stalled client was not cut off"
    wait_until(lambda: t.metric("tusk_connections_total", event="send_timeout") >= 1, 5,
               what="send timeout counted")
    t.wait_fills_settled()
    r = t.get("/images/big.img")
    assert r.status_code == 200 and r.headers["X-Cache"] == "HIT"
    assert r.content == blob(32 << 20, seed=3)


# ---------------------------------------------------------------- 4. the admin listener


def test_admin_listener_has_limits(edge):
    t = edge
    port = t.admin_port
    base = t.rss_baseline_kb()
    # Oversized head: refused without reading it all.
    big = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (1 << 20) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(big)
        except OSError:
            pass  # reset after the answer: fine
        status, headers = head_of(read_until_close(s))
    assert status.startswith("HTTP/1.1 431"), status
    # A body beyond the JSON bound.
    data = exchange(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413")
    # Methods are checked.
    for method in (b"POST", b"DELETE", b"PURGE"):
        status, headers, _ = raw_request(
            port, method + b" /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
        assert status == 405 and headers["allow"] == "GET, HEAD"
    # A half-sent request is cut at header_timeout.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        start = time.monotonic()
        read_until_close(s)
        assert time.monotonic() - start < 4
    assert t.rss_kb() - base < 100 * 1024
    assert t.get("/catalog.json").status_code == 200
    assert requests_get(t.admin_url + "/healthz") == 200


def requests_get(url: str) -> int:
    import requests
    return requests.get(url, timeout=5).status_code


# ---------------------------------------------------------------- 5. smuggling


SMUGGLING = [
    ("two_content_lengths",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 78\r\n\r\n"),
    ("space_before_colon",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nContent-Length : 41\r\n\r\n"
     b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("te_and_cl",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te_unknown",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("te_obfuscated",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"),
    ("obs_fold",
     b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n"),
    ("no_host", b"GET /catalog.json HTTP/1.1\r\n\r\n"),
    ("two_hosts", b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
    ("bare_cr", b"GET /catalog.json HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"),
]


@pytest.mark.parametrize("name,request_bytes", SMUGGLING, ids=[n for n, _ in SMUGGLING])
def test_ambiguous_framing_is_400_and_closes(edge, name, request_bytes):
    data = exchange(edge.port, request_bytes)
    status, headers = head_of(data)
    assert status.startswith("HTTP/1.1 400"), (name, data[:300])
    assert headers["connection"] == "close"
    body = data.split(b"\r\n\r\n", 1)[1]
    # Framed, and nothing after it: the smuggled request was never answered.
    assert int(headers["content-length"]) == len(body)
    # In the access log like any answer, with our reason and no client bytes.
    wait_until(lambda: re.search(r'"- -" 400 0 "-" "-" ERROR .* reason="', edge.log()), 5,
               what="access log line")


def test_chunked_body_lines_need_crlf(edge):
    """A bare LF inside a chunked body is where a front proxy and tuskd could end the body in
    different places: refused, and nothing after it is answered."""
    data = exchange(edge.port, b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n"
                               b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers = head_of(data)
    assert status.startswith("HTTP/1.1 400"), data[:200]
    assert int(headers["content-length"]) == len(data.split(b"\r\n\r\n", 1)[1])


def test_empty_chunked_body_and_small_bodies_are_accepted(edge):
    for req in (b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n0\r\n\r\n",
                b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Connection: close\r\n\r\nhello"):
        status, _, body = raw_request(edge.port, req)
        assert status == 200 and body == b'{"images": []}\n'


def test_half_closed_client_gets_the_whole_answer(edge):
    """`printf 'GET ...' | nc -N`: the client shuts its sending side after the request and
    still reads; the answer (a 32 MiB cold miss, then a hit) arrives whole."""
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as s:
            s.sendall(b"GET /images/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            data = read_until_close(s)
        status, headers = head_of(data)
        assert status.startswith("HTTP/1.1 200")
        assert data.split(b"\r\n\r\n", 1)[1] == blob(32 << 20, seed=3)


def test_absolute_form_target_is_served(edge):
    status, _, body = raw_request(edge.port, b"GET http://edge.example/catalog.json HTTP/1.1\r\n"
                                             b"Host: other\r\nConnection: close\r\n\r\n")
    assert status == 200 and body == b'{"images": []}\n'


# ---------------------------------------------------------------- 6. methods and versions


@pytest.mark.parametrize("method", [b"PURGE", b"FOO", b"POST", b"DELETE", b"OPTIONS", b"PUT"])
def test_other_methods_are_framed_405(edge, method):
    data = exchange(edge.port, method + b" /catalog.json HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    status, headers = head_of(data)
    assert status.startswith("HTTP/1.1 405"), data[:200]
    assert headers["allow"] == "GET, HEAD"
    assert headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) == len(data.split(b"\r\n\r\n", 1)[1])


def test_connect_is_405_and_connection_close_is_honoured(edge):
    start = time.monotonic()
    data = exchange(edge.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                               b"Connection: close\r\n\r\n")
    assert time.monotonic() - start < 2
    status, headers = head_of(data)
    assert status.startswith("HTTP/1.1 405") and "content-length" in headers


@pytest.mark.parametrize("version", [b"HTTP/1.9", b"HTTP/2.0", b"HTTP/3.0"])
def test_unsupported_version_is_505_in_our_version(edge, version):
    data = exchange(edge.port, b"GET /catalog.json " + version + b"\r\nHost: x\r\n\r\n")
    status, headers = head_of(data)
    assert status.startswith("HTTP/1.1 505"), status
    assert headers["connection"] == "close" and "content-length" in headers


def test_long_uri_is_414_before_any_upstream_request(edge, rgw):
    t = edge
    mark = rgw.log_offset()
    r = t.get("/images/" + "k" * 30000)
    assert r.status_code == 414
    r = t.get("/images/" + "k" * 2000)  # fits the request line, but no S3 key is that long
    assert r.status_code == 414
    assert rgw.request_count(mark) == 0


def test_client_bytes_are_escaped_in_logs(edge):
    """An upstream 404 logged the raw decoded key (30 KB, invalid UTF-8): now escaped and cut."""
    t = edge
    assert t.get("/images/%FF%00%1b[31mred" + "x" * 3000).status_code == 400
    r = t.get("/images/%ff%fe%22q%22" + "y" * 1000)
    assert r.status_code in (404, 502)  # radosgw refuses invalid UTF-8 names
    log = t.log_path.read_bytes()
    assert b"\xff" not in log and b"\x1b" not in log
    assert b"\\xff" in log.lower()  # escaped, not dropped
    for line in log.splitlines():
        assert len(line) < 2500, line[:200]


# ---------------------------------------------------------------- admission


def test_max_connections_reaps_idle_then_refuses(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "catalog.json", b"{}", ContentType="application/json")
    t = make_tuskd(b, server={"listen": [f"127.0.0.1:{_port()}"], "workers": 1,
                              "max_connections": 4, "header_timeout": "10s"})
    # Four idle keep-alive connections, oldest first.
    idle = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        s.sendall(b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        idle.append(s)
        time.sleep(0.05)
    # A fifth is admitted by closing the oldest idle one.
    status, _, body = raw_request(t.port, b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
    assert status == 200 and body == b"{}"
    assert idle[0].recv(10) == b""  # the oldest was closed
    idle[1].sendall(b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle[1]).startswith(b"HTTP/1.1 200")  # the others live
    # Now every connection is inside a request (a head begun): new ones are refused at once.
    busy = idle[1:]
    for s in busy:
        s.sendall(b"GET /catalog.json HTTP/1.1\r\n")
    extra = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    busy.append(extra)
    extra.sendall(b"GET /catalog.json HTTP/1.1\r\n")
    time.sleep(0.2)
    start = time.monotonic()
    status, headers, _ = raw_request(t.port, b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503 and time.monotonic() - start < 2
    assert t.metric("tusk_connections_total", event="refused") >= 1
    assert t.metric("tusk_connections_total", event="reaped") >= 1
    for s in busy:
        s.close()
    wait_until(lambda: t.get("/catalog.json", timeout=5).status_code == 200, 5,
               what="served after the busy connections left")
    with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
        s.sendall(b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        assert t.metric("tusk_connections_open") >= 1


# ---------------------------------------------------------------- the fuzzer


def _fuzz_request(rng: random.Random) -> bytes:
    methods = [b"GET", b"HEAD", b"POST", b"PURGE", b"G\x00T", b"", b"GET GET", b"\xff"]
    targets = [b"/catalog.json", b"/images/big.img", b"/", b"*", b"/images/../x", b"/%zz",
               b"http://x/catalog.json", b"/" + b"a" * rng.randrange(1, 20000), b"/\x7f"]
    versions = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.9", b"HTTP/0.9", b"HTTX/1.1", b"", b"HTTP/1.1 "]
    line = rng.choice(methods) + b" " + rng.choice(targets) + b" " + rng.choice(versions)
    fields = [b"Host: x", b"Host: y", b"Content-Length: 5", b"Content-Length: -1",
              b"Content-Length : 3", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
              b"Range: bytes=0-,0-,0-,1-2,-5", b"Range: bytes=" + b"0-1," * 300,
              b"If-None-Match: *", b" folded", b"X: \x01\x02", b"Connection: close",
              b"Expect: 100-continue", b"X-Big: " + b"b" * rng.randrange(0, 40000), b"NoColon"]
    head = line + b"\r\n" + b"\r\n".join(rng.choice(fields) for _ in range(rng.randrange(0, 8)))
    tail = rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n", b"", b"\r\n\r\n12345", b"\r\n\r\n0\r\n\r\n",
                       b"\r\n\r\nzz\r\n"])
    data = head + tail
    if rng.random() < 0.2:  # random corruption
        data = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    return data


def test_random_requests_never_hurt_the_edge(edge):
    """A bounded random-request generator: malformed request lines, fields, framing and
    pipelines, 20 batches of 40 connections. After each batch tuskd is up, its RSS bounded,
    and a normal request is answered."""
    t = edge
    base = t.rss_baseline_kb()
    rng = random.Random(int(os.environ.get("TUSK_FUZZ_SEED", "8")))
    deadline = time.monotonic() + 60
    for batch in range(20):
        for _ in range(40):
            payload = b"".join(_fuzz_request(rng) for _ in range(rng.randrange(1, 4)))
            try:
                with socket.create_connection(("127.0.0.1", t.port), timeout=3) as s:
                    s.sendall(payload)
                    if rng.random() < 0.5:
                        s.shutdown(socket.SHUT_WR)
                    s.settimeout(0.5 if rng.random() < 0.8 else 0.05)
                    try:
                        while s.recv(65536):
                            pass
                    except OSError:
                        pass
            except OSError:
                pass
        assert t.running(), f"tuskd died in batch {batch}"
        assert t.rss_kb() - base < 100 * 1024
        assert_serves(t)
        if time.monotonic() > deadline:
            break
