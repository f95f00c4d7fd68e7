"""Tests of the integration harness itself (no tuskd needed): radosgw really checks signatures
and ACLs, request counting from its log is exact, every relay mode does what it says, and the
eustore helpers match EUSTORE.md §1.5-1.7.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import botocore.exceptions
import pytest
import requests

import harness
from relay import Mode, Relay

HERE = Path(__file__).resolve().parent


def put(rgw, bucket, key, data, **kw):
    return rgw.s3().put_object(Bucket=bucket, Key=key, Body=data, **kw)


def raw_get(url_base: str, path: str, headers: dict | None = None, timeout: float = 5):
    """A GET on a fresh socket, read until the server closes (or timeout): returns
    (status, headers dict lowercased, body bytes, closed_by_server)."""
    host, port = url_base.split("//", 1)[1].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data, closed = b"", False
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    first, *hlines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in hlines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(first.split()[1]), hdrs, body, closed


@pytest.fixture
def public_object(rgw, bucket):
    """A public-read object of 100 KiB (so plain unsigned GETs through the relay work)."""
    b = bucket()
    data = bytes(range(256)) * 400
    etag = put(rgw, b, "obj.bin", data, ACL="public-read")["ETag"]
    return b, "obj.bin", data, etag


# -- radosgw -----------------------------------------------------------------------------------


def test_radosgw_answers_and_env(rgw):
    r = requests.get(rgw.endpoint + "/", timeout=5)
    assert r.status_code == 200 and "ListAllMyBucketsResult" in r.text
    assert rgw.endpoint.startswith("http://127.0.0.1:")
    # Signers must cope with '+' and '/' in secrets.
    assert "+" in rgw.secret_key and "/" in rgw.secret_key
    assert rgw.access_key != rgw.other_access_key


def test_private_object_acl(rgw, bucket):
    b = bucket()
    put(rgw, b, "secret.txt", b"only tusk")
    assert rgw.s3("tusk").get_object(Bucket=b, Key="secret.txt")["Body"].read() == b"only tusk"
    for user in (None, "other"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            rgw.s3(user).get_object(Bucket=b, Key="secret.txt")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, user
    assert requests.get(f"{rgw.endpoint}/{b}/secret.txt", timeout=5).status_code == 403


def test_wrong_secret_is_refused(rgw, bucket):
    b = bucket()
    put(rgw, b, "k", b"x")
    last = "A" if rgw.secret_key[-1] != "A" else "B"  # must differ from the real secret
    bad = harness.Rgw(dict(rgw.env, RGW_SECRET_KEY=rgw.secret_key[:-1] + last))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.s3().get_object(Bucket=b, Key="k")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_request_count_is_exact(rgw, bucket):
    b = bucket()
    key = "dir/a b+c.img"  # encoded in the log; the filter compares decoded keys
    put(rgw, b, key, b"0123456789")
    s3 = rgw.s3()
    off = rgw.log_offset()
    assert rgw.request_count(off) == 0
    s3.get_object(Bucket=b, Key=key)
    assert rgw.request_count(off) == 1
    s3.get_object(Bucket=b, Key=key, Range="bytes=2-5")
    s3.head_object(Bucket=b, Key=key)
    s3.list_objects(Bucket=b)  # bucket-level: not an object request
    assert rgw.request_count(off) == 3
    assert rgw.request_count(off, bucket=b, key=key, methods=("GET",)) == 2
    assert rgw.request_count(off, key="other") == 0
    reqs = rgw.object_requests(off)
    assert [r.method for r in reqs] == ["GET", "GET", "HEAD"]
    assert reqs[1].status == 206 and reqs[1].range == "bytes=2-5" and reqs[0].user == "tusk"


# -- eustore helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,name",
    [(b"", "1136548044"), (b"hello\n", "0222977072"), (b"eustore", "0127128318")],
)
def test_eustore_name_vectors(data, name, tmp):
    assert harness.eustore_name(data) == name
    f = tmp / "f"
    f.write_bytes(data)
    assert harness.eustore_name(f) == name


@pytest.mark.parametrize("single_kernel", [True, False])
def test_make_image_tarball(tmp, single_kernel):
    t = harness.make_image_tarball(tmp / "img.tgz", "demo", single_kernel=single_kernel, size_mb=1)
    again = harness.make_image_tarball(tmp / "again.tgz", "demo", single_kernel, size_mb=1)
    assert t.eustore_name == again.eustore_name == harness.eustore_name(t.path)  # deterministic
    with tarfile.open(t.path) as tar:
        names = tar.getnames()
        assert tar.getmember("demo/demo.img").size == 2**20
    kdirs = ["demo/"] if single_kernel else ["demo/xen-kernel/", "demo/kvm-kernel/"]
    for kd in kdirs:
        assert any(n.startswith(kd) and "vmlinu" in n.rsplit("/", 1)[1] for n in names)
        assert any(n.startswith(kd) and "initrd" in n.rsplit("/", 1)[1] for n in names)


def test_catalog_has_every_key(tmp):
    t = harness.make_image_tarball(tmp / "a.tgz", "a", single_kernel=False, size_mb=0.1)
    doc = harness.catalog([t, {"name": "0000000001", "url": "b/x.tgz", "os": "centos"}], "b/")
    doc = json.loads(json.dumps(doc))
    assert doc["version"] == "eustore-catalog-2011-12-29"
    keys = {"name", "description", "version", "architecture", "os", "url", "date", "recipe",
            "stamp", "contact", "single-kernel", "hypervisors-supported"}
    for img in doc["images"]:
        assert keys <= img.keys()
        assert img["single-kernel"] in ("True", "False")
        assert isinstance(img["hypervisors-supported"], list)
        assert len(img["date"]) == 14 and len(img["stamp"]) == 9 and img["stamp"][4] == "-"
    assert doc["images"][0]["name"] == t.eustore_name
    assert doc["images"][0]["url"] == "b/a.tgz" and doc["images"][0]["single-kernel"] == "False"
    assert doc["images"][1]["os"] == "centos" and doc["images"][1]["single-kernel"] == "True"


def test_parse_prometheus():
    text = (
        "# HELP x help\n# TYPE x counter\n"
        'tusk_requests_total{outcome="HIT",status="200"} 3\n'
        'tusk_requests_total{outcome="MISS",status="200"} 1.5e1\n'
        'odd{path="a\\"b,c"} 7\n'
        "tusk_up 1\n"
    )
    m = harness.parse_prometheus(text)
    assert m[("tusk_requests_total", frozenset({("outcome", "HIT"), ("status", "200")}))] == 3
    assert m[("tusk_requests_total", frozenset({("outcome", "MISS"), ("status", "200")}))] == 15
    assert m[("odd", frozenset({("path", 'a"b,c')}))] == 7
    assert m[("tusk_up", frozenset())] == 1


# -- relay ------------------------------------------------------------------------------------


def test_mode_parsing():
    assert str(Mode.parse("slow:1000")) == "slow:1000:0"
    assert Mode.parse("truncate:10").n == 10
    for bad in ("nope", "truncate", "truncate:x", "pass:1"):
        with pytest.raises(ValueError):
            Mode.parse(bad)


def test_relay_pass_and_recorded_headers(rgw, bucket, make_relay):
    relay = make_relay("pass")
    b = bucket()
    via = rgw.s3(endpoint=relay.url)  # the relay keeps Host, so SigV4 stays valid
    etag = via.put_object(Bucket=b, Key="k", Body=b"hello relay", ACL="public-read")["ETag"]
    got = via.get_object(Bucket=b, Key="k", IfMatch=etag)
    assert got["Body"].read() == b"hello relay"
    put_req, get_req = relay.requests[-2:]
    assert put_req.method == "PUT" and put_req.target == f"/{b}/k"
    assert put_req.header("x-amz-acl") == "public-read" and put_req.status == 200
    assert get_req.request_line == f"GET /{b}/k HTTP/1.1"
    assert get_req.header("If-Match") == etag and get_req.header("connection") == "close"
    assert get_req.header("authorization").startswith("AWS4-HMAC-SHA256 ")


def test_relay_walrus_range(rgw, public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("walrus-range")
    r = requests.get(f"{relay.url}/{b}/{key}", headers={"Range": "bytes=2-5"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Range"] == f"2-5/{len(data)}"  # no `bytes ` unit, as Walrus
    assert r.content == data[2:6]
    direct = requests.get(f"{rgw.endpoint}/{b}/{key}", headers={"Range": "bytes=2-5"}, timeout=5)
    assert direct.status_code == 206 and direct.headers["Content-Range"] == f"bytes 2-5/{len(data)}"


def test_relay_ignore_range(public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("ignore-range")
    r = requests.get(f"{relay.url}/{b}/{key}", headers={"Range": "bytes=2-5"}, timeout=5)
    assert r.status_code == 200 and r.content == data
    req = relay.requests[-1]
    assert req.header("range") is None and req.client_headers and dict(req.client_headers)["Range"]


def test_relay_truncate(public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("truncate:1000")
    status, hdrs, body, closed = raw_get(relay.url, f"/{b}/{key}")
    assert status == 200 and int(hdrs["content-length"]) == len(data)
    assert closed and body == data[:1000]


def test_relay_lie_length(public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("lie-length:500")
    status, hdrs, body, closed = raw_get(relay.url, f"/{b}/{key}")
    assert int(hdrs["content-length"]) == len(data) + 500
    assert closed and body == data


def test_relay_change_etag(public_object, make_relay):
    b, key, _, etag = public_object
    relay = make_relay("change-etag")
    r = requests.get(f"{relay.url}/{b}/{key}", timeout=5)
    assert r.status_code == 200 and r.headers["ETag"] != etag and len(r.headers["ETag"]) == 34
    relay.set_mode('change-etag:"fixed"')
    assert requests.head(f"{relay.url}/{b}/{key}", timeout=5).headers["ETag"] == '"fixed"'


def test_relay_stall(public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("stall")
    t0 = time.monotonic()
    status, hdrs, body, closed = raw_get(relay.url, f"/{b}/{key}", timeout=1.0)
    assert status == 200 and int(hdrs["content-length"]) == len(data)
    assert body == b"" and not closed and time.monotonic() - t0 >= 0.9


def test_relay_down_refuse_and_back(public_object, make_relay):
    b, key, data, _ = public_object
    relay = make_relay("down")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{relay.url}/{b}/{key}", timeout=5)
    relay.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()
    relay.set_mode("pass")  # listens again on the same port
    assert requests.get(f"{relay.url}/{b}/{key}", timeout=5).content == data


def test_relay_slow(public_object, make_relay):
    b, key, data, _ = public_object  # 100 KiB
    relay = make_relay("slow:200000:300")
    t0 = time.monotonic()
    r = requests.get(f"{relay.url}/{b}/{key}", timeout=10)
    took = time.monotonic() - t0
    assert r.content == data
    assert 0.3 + len(data) / 200000 * 0.8 <= took < 5, took


def test_relay_streams_big_bodies(rgw, bucket, make_relay):
    b = bucket()
    data = harness._pseudo_random(__import__("random").Random(1), 48 << 20)
    put(rgw, b, "big", data)
    relay = make_relay("pass")
    url = rgw.s3(endpoint=relay.url).generate_presigned_url(
        "get_object", Params={"Bucket": b, "Key": "big"}, ExpiresIn=300
    )
    md5 = hashlib.md5()
    with requests.get(url, stream=True, timeout=30) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1 << 20):
            md5.update(chunk)
    assert md5.hexdigest() == hashlib.md5(data).hexdigest()


def test_relay_script_mode_with_control(public_object, rgw):
    b, key, data, _ = public_object
    port, ctl = harness.free_port(), harness.free_port()
    p = subprocess.Popen(
        [sys.executable, str(HERE / "relay.py"), "--listen", str(port), "--upstream",
         rgw.endpoint, "--mode", "ignore-range", "--control", str(ctl)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert "relay: http://127.0.0.1:" in p.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        r = requests.get(f"{base}/{b}/{key}", headers={"Range": "bytes=0-0"}, timeout=5)
        assert r.status_code == 200 and r.content == data
        assert requests.get(f"http://127.0.0.1:{ctl}/mode?set=pass", timeout=5).text == "pass\n"
        r = requests.get(f"{base}/{b}/{key}", headers={"Range": "bytes=0-0"}, timeout=5)
        assert r.status_code == 206
        seen = requests.get(f"http://127.0.0.1:{ctl}/requests", timeout=5).json()
        assert [s["mode"] for s in seen] == ["ignore-range", "pass"]
    finally:
        p.terminate()
        p.wait(10)


# -- Tuskd class, against a stand-in daemon (the real tuskd is tested elsewhere) -----------------

FAKE_TUSKD = r'''#!/usr/bin/python3
# Stand-in for tuskd: reads --config (JSON is YAML), answers /readyz and /metrics on the admin port.
import json, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
host, port = cfg["admin"]["listen"].rsplit(":", 1)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"/readyz": b"ready\n",
                "/metrics": b'# TYPE tusk_requests_total counter\ntusk_requests_total{outcome="HIT"} 2\n'
                }.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")
    def log_message(self, *a): pass
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("fake tuskd up, upstream", cfg["upstreams"]["rgw"]["endpoint"], flush=True)
HTTPServer((host, int(port)), H).serve_forever()
'''


def test_tuskd_class_with_stand_in(tmp, rgw):
    fake = tmp / "fake-tuskd"
    fake.write_text(FAKE_TUSKD)
    fake.chmod(0o755)
    cfg = harness.Tuskd.make_config(tmp / "d", rgw.endpoint, rgw.access_key, rgw.secret_key, "bkt")
    up = cfg["upstreams"]["rgw"]
    assert Path(up["secret_key_file"]).read_text().strip() == rgw.secret_key
    assert Path(up["secret_key_file"]).stat().st_mode & 0o077 == 0
    assert cfg["routes"][1] == {"prefix": "/images/", "upstream": "rgw", "bucket": "bkt",
                                "ttl": "1h", "prefetch": "whole"}
    t = harness.Tuskd(fake, tmp / "d", cfg).start()
    try:
        assert json.loads(t.config_path.read_text()) == cfg
        assert t.metric("tusk_requests_total", outcome="HIT") == 2
        assert t.metrics()[("tusk_requests_total", frozenset({("outcome", "HIT")}))] == 2
        assert t.rss_kb() > 1000
        assert t.stop() == 0 and not t.running()
        t.start()
        t.kill9()
        assert t.proc.returncode == -9
        assert t.log().count("fake tuskd up") == 2
    finally:
        t.stop()


def test_tuskd_start_failure_shows_log(tmp):
    bad = tmp / "bad-tuskd"
    bad.write_text("#!/bin/sh\necho 'config error: routes[0]: no upstream' >&2\nexit 3\n")
    bad.chmod(0o755)
    cfg = harness.Tuskd.make_config(tmp, "http://127.0.0.1:1", None, None, "bkt")
    with pytest.raises(RuntimeError, match="no upstream"):
        harness.Tuskd(bad, tmp, cfg).start(timeout=5)


def test_free_port_never_hands_out_the_same_port_twice():
    ports = [harness.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
