"""Hostile and careless inputs outside the HTTP front (issue 8): Range headers built to amplify
the answer, object keys and upstream text that would forge or flood log lines, key files others
can read, and an upstream whose TLS certificate does not verify (never retried). Each runs the
real tuskd over real sockets."""
from __future__ import annotations

import os
import random
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from harness import wait_until
from util import parse_multipart

SIZE = 1024 * 1024 + 7


def put(rgw, bucket, key, data, **extra):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data, **extra)


@pytest.fixture
def served(rgw, bucket, make_tuskd):
    """A tuskd with /images/r.bin (SIZE bytes) already cached: (tuskd, data)."""
    b = bucket()
    data = random.Random(8).randbytes(SIZE)
    put(rgw, b, "r.bin", data)
    t = make_tuskd(b)
    assert t.get("/images/r.bin").content == data
    t.wait_fills_settled()
    return t, data


def get_range(t, header, **kw):
    return requests.get(t.url + "/images/r.bin", headers={"Range": header}, timeout=30, **kw)


# ---------------------------------------------------------------- ranges


def test_many_overlapping_ranges_answer_the_whole_object_once(served):
    t, data = served
    # Once answered 64 copies of the object as one multipart body.
    with get_range(t, "bytes=" + ",".join(["0-"] * 64), stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(SIZE)
        assert "Content-Range" not in r.headers
        body = r.raw.read(SIZE + 1)
    assert body == data


def test_overlapping_and_adjacent_ranges_merge_into_one_part(served):
    t, data = served
    r = get_range(t, "bytes=0-99,50-199,200-299")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 0-299/{SIZE}"
    assert not r.headers["Content-Type"].startswith("multipart/")
    assert r.content == data[:300]


def test_disjoint_ranges_stay_multipart_in_position_order(served):
    t, data = served
    r = get_range(t, "bytes=1000-1099,0-9")
    assert r.status_code == 206
    assert r.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert parse_multipart(r.headers["Content-Type"], r.content) == [
        (f"bytes 0-9/{SIZE}", data[0:10]),
        (f"bytes 1000-1099/{SIZE}", data[1000:1100]),
    ]


def test_more_than_sixteen_ranges_answer_the_whole_object(served):
    t, data = served
    sixteen = ",".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(16))
    r = get_range(t, "bytes=" + sixteen)
    assert r.status_code == 206
    assert len(parse_multipart(r.headers["Content-Type"], r.content)) == 16
    r = get_range(t, "bytes=" + sixteen + ",20000-20009")
    assert r.status_code == 200
    assert r.content == data


def test_oversized_range_headers_are_ignored(served):
    t, data = served
    for header in ["bytes=" + ",".join(["0-0"] * 300),  # more than 256 parts
                   "bytes=0-0," + " " * 5000 + "9-9",   # longer than 4 KiB
                   "bytes=0-0" + "," * 3000]:           # empty parts count too
        r = get_range(t, header)
        assert r.status_code == 200, header[:40]
        assert r.content == data


# ---------------------------------------------------------------- log lines


def test_a_long_invalid_utf8_key_is_logged_escaped_and_bounded(bucket, make_tuskd):
    b = bucket()
    t = make_tuskd(b)
    key = "%ff%c0%af" + "k" * 1000  # S3's limit is 1024 bytes: tuskd answers 414 above it
    r = t.get("/images/" + key)
    assert r.status_code == 502, r.status_code  # radosgw: 400 InvalidObjectName
    lines = [ln for ln in t.log_path.read_bytes().splitlines() if b"fill of " + b.encode() in ln]
    assert lines, t.log()
    for line in lines:
        assert b"\\xFF\\xC0\\xAFkkk" in line, line[:300]
        assert b"\xff" not in line and b"\xc0" not in line
        assert b"...(+" in line
        assert len(line) < 1000, len(line)


# ---------------------------------------------------------------- key file modes


def key_files(t):
    up = t.config["upstreams"]["rgw"]
    return up["access_key_file"], up["secret_key_file"]


def test_key_file_readable_by_others_warns_at_start(bucket, make_tuskd, rgw):
    b = bucket()
    t = make_tuskd(b, start=False)
    access, secret = key_files(t)
    os.chmod(secret, 0o644)
    t.start()
    log = t.log()
    assert f"key file '{secret}' is readable by others (mode 0644); chmod 600 it" in log, log
    assert "warn" in next(ln for ln in log.splitlines() if "is readable by others" in ln)
    assert access not in log
    for k in rgw.keys("tusk"):
        assert k not in log
    # Served all the same.
    put(rgw, b, "x", b"x")
    assert t.get("/images/x").content == b"x"
    # --check-config says it too, and still passes.
    out = subprocess.run([t.binary, "--check-config", str(t.config_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "warning: " in out.stderr and "chmod 600 it" in out.stderr, out.stderr


def test_private_key_files_give_no_warning(bucket, make_tuskd):
    t = make_tuskd(bucket())  # the harness writes key files with mode 0600
    for path in key_files(t):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert "key file" not in t.log()
    out = subprocess.run([t.binary, "--check-config", str(t.config_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stderr == "", out.stderr


# ---------------------------------------------------------------- TLS


class SelfSignedServer:
    """A TLS listener on 127.0.0.1 with a freshly made self-signed certificate. Counts accepted
    TCP connections and handshakes attempted; speaks no HTTP (no handshake can succeed against a
    verifying client)."""

    def __init__(self, workdir):
        self.cert = str(workdir / "cert.pem")
        key = str(workdir / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", self.cert], check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.handshake_errors: list[str] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError) as e:
                self.handshake_errors.append(str(e))

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def self_signed(tmp):
    d = tmp / "tls"
    d.mkdir()
    s = SelfSignedServer(d)
    yield s
    s.stop()


def test_tls_verification_failure_is_a_502_after_one_attempt(self_signed, make_tuskd):
    t = make_tuskd(endpoint=f"https://127.0.0.1:{self_signed.port}", user=None,
                   upstream={"retries": 3, "tls_verify": True})
    r = t.get("/images/anything.img")
    assert r.status_code == 502, r.text
    time.sleep(1)  # backoff would have retried within 100 + 200 + 400 ms
    assert self_signed.accepted == 1, (self_signed.accepted, self_signed.handshake_errors)
    assert t.metric("tusk_upstream_errors_total", kind="tls") == 1
    wait_until(lambda: "TLS certificate verification failed for 127.0.0.1:%d" % self_signed.port
               in t.log(), 5, what="the TLS failure in the log")
    assert "retrying" not in t.log()
