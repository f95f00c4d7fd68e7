"""tuskd against a real radosgw: hit, miss, HEAD, signatures (v2 and v4, private objects only
readable with a correct signature), headers, ranges byte-for-byte, conditionals, catalog paths,
keys with awkward characters. Every "hit" is proven by the upstream seeing no request."""
from __future__ import annotations

import hashlib
import os
import random

import pytest
import requests

import socket

from util import parse_multipart, raw_request, read_until_close, split_responses


def put(rgw, bucket, key, data, **extra):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data, **extra)


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("signature", ["v2", "v4"])
def test_miss_then_hit_of_a_private_object(rgw, bucket, make_tuskd, signature):
    b = bucket()
    data = blob(300_000)
    put(rgw, b, "dir/img.tgz", data, ContentType="application/x-gzip")
    # Private: anonymous and another user are refused, so only a correct signature works.
    assert requests.get(f"{rgw.endpoint}/{b}/dir/img.tgz").status_code == 403
    t = make_tuskd(b, upstream={"signature": signature})

    off = rgw.log_offset()
    r = t.get("/images/dir/img.tgz")
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["X-Cache"] == "MISS"
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    assert r.headers["Content-Type"] == "application/x-gzip"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in r.headers and "Age" in r.headers
    assert "Content-Encoding" not in r.headers
    assert "Transfer-Encoding" not in r.headers
    assert rgw.request_count(off, bucket=b) == 1

    off = rgw.log_offset()
    r2 = t.get("/images/dir/img.tgz")
    assert r2.status_code == 200 and r2.content == data
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.headers["ETag"] == r.headers["ETag"]
    h = requests.head(t.url + "/images/dir/img.tgz")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["X-Cache"] == "HIT"
    assert rgw.request_count(off, bucket=b) == 0, "a hit must not reach the upstream"
    # The cache's gauges count what the index holds: the disk thread publishes a new object
    # with its first durable batch, which may come after clients were served from the fill.
    t.wait_fills_settled()

    m = t.metrics()
    assert t.metric("tusk_requests_total", outcome="HIT", status="200") >= 2
    assert t.metric("tusk_requests_total", outcome="MISS", status="200") == 1
    assert t.metric("tusk_served_bytes_total", source="cache") >= len(data)
    assert t.metric("tusk_served_bytes_total", source="upstream") == len(data)
    assert t.metric("tusk_upstream_requests_total", upstream="rgw") == 1
    assert t.metric("tusk_cache_objects") == 1
    assert t.metric("tusk_cache_bytes") == len(data)
    assert m  # parsed


@pytest.mark.parametrize("signature", ["v2", "v4"])
def test_wrong_secret_is_a_502_and_never_logged(rgw, bucket, make_tuskd, tmp, signature):
    b = bucket()
    put(rgw, b, "x.tgz", b"abc")
    secret = "Wrong+Secret/With Spaces@" + os.urandom(4).hex()
    from harness import Tuskd

    cfg = Tuskd.make_config(tmp / "w", rgw.endpoint, rgw.access_key, secret, b,
                            upstream={"signature": signature})
    t = make_tuskd(config=cfg)
    r = t.get("/images/x.tgz")
    assert r.status_code == 502
    assert "credentials" in r.text
    assert secret not in r.text
    assert secret not in t.log()
    assert t.metric("tusk_upstream_errors_total", kind="auth") == 1
    r = requests.get(t.admin_url + "/metrics")
    assert secret not in r.text


def test_missing_object_is_404_and_unmapped_paths_send_nothing_upstream(rgw, bucket, make_tuskd):
    b = bucket()
    t = make_tuskd(b)
    r = t.get("/images/nope.tgz")
    assert r.status_code == 404
    off = rgw.log_offset()
    for path in ["/", "/nope", "/images/", "/catalog.json.bak", "/imagesx/a"]:
        r = t.get(path)
        assert r.status_code == 404, path
        assert r.headers["X-Cache"] == "ERROR"
    assert rgw.request_count(off) == 0


@pytest.mark.parametrize(
    "target",
    [
        b"/images/../etc/passwd",
        b"/images/%2e%2e/etc/passwd",
        b"/images/%2E%2E%2Fetc%2Fpasswd",
        b"/images/a/%2e%2e/%2e%2e/x",
        b"/images/a%00b",
        b"/images/a%5c..%5cb",
        b"/images/a%zz",
        b"/images/./a",
        b"http://169.254.169.254/images/../a",
    ],
)
def test_traversal_and_hostile_paths_are_400_with_no_upstream_request(rgw, bucket, make_tuskd,
                                                                       target):
    b = bucket()
    t = make_tuskd(b)
    off = rgw.log_offset()
    status, headers, body = raw_request(t.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    assert status == 400, (target, status, body)
    assert rgw.request_count(off) == 0


def test_absolute_form_names_no_upstream(rgw, bucket, make_tuskd):
    """RFC 9112 §3.2.2: an origin server accepts absolute-form targets, taking the authority as
    the host. The authority never becomes an upstream: only the route's bucket is asked."""
    b = bucket()
    put(rgw, b, "a", b"A")
    t = make_tuskd(b)
    status, _, body = raw_request(t.port, b"GET http://169.254.169.254/images/a HTTP/1.1\r\n"
                                          b"Host: x\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"A")
    status, _, body = raw_request(t.port, b"GET http://169.254.169.254/images/missing HTTP/1.1"
                                          b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404 and b"not found in bucket " + b.encode() in body


def test_other_methods_are_405_with_allow(rgw, bucket, make_tuskd):
    b = bucket()
    t = make_tuskd(b)
    off = rgw.log_offset()
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]:
        r = requests.request(method, t.url + "/images/x.tgz", data=b"")
        assert r.status_code == 405, method
        assert r.headers["Allow"] == "GET, HEAD"
    assert rgw.request_count(off) == 0


def test_get_with_empty_body_and_eustore_headers_is_accepted(rgw, bucket, make_tuskd):
    """euca2ools 3.0 sends the catalog GET with an explicit empty body (EUSTORE.md §1.3)."""
    b = bucket()
    put(rgw, b, "catalog.json", b'{"images": []}', ContentType="application/json")
    t = make_tuskd(b)
    for extra in [b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"]:
        body = b"0\r\n\r\n" if b"chunked" in extra else b""
        status, headers, got = raw_request(
            t.port, b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nUser-Agent: euca2ools/eustore\r\n"
            b"eustore-version: eustore-catalog-2011-12-29\r\nConnection: close\r\n" + extra +
            b"\r\n" + body)
        assert status == 200 and got == b'{"images": []}', (extra, status)


def test_catalog_served_at_both_paths(rgw, bucket, make_tuskd):
    b = bucket()
    cat = b'{"version": "eustore-catalog-2011-12-29", "images": []}'
    put(rgw, b, "catalog.json", cat, ContentType="application/json")
    routes = [
        {"path": "/catalog.json", "upstream": "rgw", "bucket": b, "key": "catalog.json",
         "ttl": "60s"},
        {"path": "/catalog", "upstream": "rgw", "bucket": b, "key": "catalog.json", "ttl": "60s"},
    ]
    t = make_tuskd(b, routes=routes)
    off = rgw.log_offset()
    a = t.get("/catalog.json")
    c = t.get("/catalog")
    assert a.status_code == c.status_code == 200
    assert a.content == c.content == cat
    assert a.headers["Content-Type"] == "application/json"
    assert c.headers["X-Cache"] == "HIT", "both paths are one cached object"
    assert rgw.request_count(off, bucket=b) == 1


@pytest.mark.parametrize("signature", ["v2", "v4"])
def test_keys_with_spaces_plus_at_and_unicode(rgw, bucket, make_tuskd, signature):
    b = bucket()
    keys = ["with space.tgz", "plus+sign.tgz", "at@sign.tgz", "unicodé/日本.tgz", "a=b&c;d.tgz",
            "tilde~x.tgz"]
    for i, k in enumerate(keys):
        put(rgw, b, k, blob(1000 + i, seed=i))
    t = make_tuskd(b, upstream={"signature": signature})
    from urllib.parse import quote

    for i, k in enumerate(keys):
        r = t.get("/images/" + quote(k))
        assert r.status_code == 200, (k, r.text)
        assert r.content == blob(1000 + i, seed=i), k


# ---------------------------------------------------------------- ranges

SIZE = 10_000


@pytest.fixture
def ranged(rgw, bucket, make_tuskd):
    b = bucket()
    data = blob(SIZE, seed=7)
    put(rgw, b, "r.bin", data, ContentType="application/octet-stream")
    t = make_tuskd(b)
    assert t.get("/images/r.bin").content == data  # warm
    return t, data


RANGE_TABLE = [
    # header, status, Content-Range, slice
    ("bytes=0-0", 206, f"bytes 0-0/{SIZE}", (0, 1)),
    ("bytes=0-99", 206, f"bytes 0-99/{SIZE}", (0, 100)),
    ("bytes=9990-", 206, f"bytes 9990-9999/{SIZE}", (9990, SIZE)),
    ("bytes=-10", 206, f"bytes 9990-9999/{SIZE}", (9990, SIZE)),
    ("bytes=-20000", 206, f"bytes 0-9999/{SIZE}", (0, SIZE)),
    ("bytes=5000-20000", 206, f"bytes 5000-9999/{SIZE}", (5000, SIZE)),
    ("bytes=9999-9999", 206, f"bytes 9999-9999/{SIZE}", (9999, SIZE)),
    ("bytes=10000-", 416, f"bytes */{SIZE}", None),
    ("bytes=20000-30000", 416, f"bytes */{SIZE}", None),
    ("bytes=-0", 416, f"bytes */{SIZE}", None),
    ("bytes=5-1", 200, None, (0, SIZE)),      # malformed: ignored
    ("bytes=abc", 200, None, (0, SIZE)),
    ("items=0-5", 200, None, (0, SIZE)),
    ("bytes=", 200, None, (0, SIZE)),
    ("bytes=0-1,,", 206, f"bytes 0-1/{SIZE}", (0, 2)),
]


@pytest.mark.parametrize("header,status,content_range,sl", RANGE_TABLE)
def test_range_table_on_a_cached_object(ranged, header, status, content_range, sl):
    t, data = ranged
    r = t.get("/images/r.bin", headers={"Range": header})
    assert r.status_code == status, header
    assert r.headers.get("Content-Range") == content_range
    if sl is not None:
        assert r.content == data[sl[0]:sl[1]], header
        assert r.headers["Content-Length"] == str(sl[1] - sl[0])
    assert r.headers["X-Cache"] == ("ERROR" if status == 416 else "HIT")


def test_multiple_ranges_are_multipart_byteranges(ranged):
    t, data = ranged
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-9, 100-199, -5"})
    assert r.status_code == 206
    ct = r.headers["Content-Type"]
    assert ct.startswith("multipart/byteranges; boundary=")
    assert r.headers["Content-Length"] == str(len(r.content))
    parts = parse_multipart(ct, r.content)
    assert parts == [
        (f"bytes 0-9/{SIZE}", data[0:10]),
        (f"bytes 100-199/{SIZE}", data[100:200]),
        (f"bytes 9995-9999/{SIZE}", data[9995:]),
    ]


def test_multiple_ranges_with_one_satisfiable_is_a_single_part(ranged):
    t, data = ranged
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-4, 50000-60000"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 0-4/{SIZE}"
    assert r.content == data[:5]


def test_if_range(ranged):
    t, data = ranged
    head = t.get("/images/r.bin")
    etag, lm = head.headers["ETag"], head.headers["Last-Modified"]
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[:10]
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-9", "If-Range": lm})
    assert r.status_code == 206 and r.content == data[:10]
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == data
    r = t.get("/images/r.bin", headers={"Range": "bytes=0-9",
                                        "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status_code == 200 and r.content == data


def test_conditionals_give_304(ranged):
    t, data = ranged
    first = t.get("/images/r.bin")
    etag, lm = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in [{"If-None-Match": etag}, {"If-None-Match": f'"x", {etag}'},
                    {"If-None-Match": "*"}, {"If-Modified-Since": lm},
                    {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}]:
        r = t.get("/images/r.bin", headers=headers)
        assert r.status_code == 304, headers
        assert r.content == b""
        assert r.headers["ETag"] == etag
    for headers in [{"If-None-Match": '"nope"'},
                    {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
                    {"If-Modified-Since": "not a date"}]:
        r = t.get("/images/r.bin", headers=headers)
        assert r.status_code == 200 and r.content == data, headers
    r = t.get("/images/r.bin", headers={"If-Match": '"nope"'})
    assert r.status_code == 412


def test_ranges_on_a_cold_object(rgw, bucket, make_tuskd):
    b = bucket()
    data = blob(3 * 1024 * 1024 + 17, seed=3)
    put(rgw, b, "cold.bin", data)
    t = make_tuskd(b)
    r = t.get("/images/cold.bin", headers={"Range": "bytes=-1000"})
    assert r.status_code == 206
    assert r.content == data[-1000:]
    assert r.headers["Content-Range"] == f"bytes {len(data) - 1000}-{len(data) - 1}/{len(data)}"
    r = t.get("/images/cold.bin", headers={"Range": "bytes=1-2,5-6"})
    assert r.status_code == 206
    assert [p for _, p in parse_multipart(r.headers["Content-Type"], r.content)] == \
        [data[1:3], data[5:7]]


def test_head_of_a_cold_object(rgw, bucket, make_tuskd):
    b = bucket()
    data = blob(5000, seed=4)
    put(rgw, b, "h.bin", data)
    t = make_tuskd(b)
    h = requests.head(t.url + "/images/h.bin")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == "5000"
    assert h.content == b""
    assert t.get("/images/h.bin").content == data


def test_keep_alive_connections_under_load(rgw, bucket, make_tuskd):
    """Many requests on persistent connections: hits, misses, HEAD, ranges, 304s and errors
    interleaved on one connection, then wrk with 20 connections. tuskd must answer every one
    and stay up (a reply that touched a freed request once corrupted its heap here)."""
    import http.client
    import subprocess

    b = bucket()
    data = blob(4096, seed=8)
    put(rgw, b, "catalog.json", data, ContentType="application/json")
    put(rgw, b, "x.bin", blob(100_000, seed=9))
    t = make_tuskd(b)
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    etag = None
    for i in range(300):
        kind = i % 6
        headers = {}
        path, method = "/catalog.json", "GET"
        if kind == 1:
            method = "HEAD"
        elif kind == 2:
            headers["Range"] = "bytes=10-19"
        elif kind == 3 and etag:
            headers["If-None-Match"] = etag
        elif kind == 4:
            path = "/nope"
        elif kind == 5:
            path = "/images/x.bin"
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        etag = r.getheader("ETag") or etag
        expect = {0: 200, 1: 200, 2: 206, 3: 304 if etag else 200, 4: 404, 5: 200}[kind]
        assert r.status == expect, (i, kind, r.status)
        if kind == 0:
            assert body == data
        if kind == 2:
            assert body == data[10:20]
    conn.close()
    out = subprocess.run(["wrk", "-t2", "-c20", "-d3s", t.url + "/catalog.json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Non-2xx" not in out.stdout and "Socket errors" not in out.stdout, out.stdout
    assert t.running(), "tuskd died under keep-alive load:\n" + t.log()[-3000:]
    assert t.get("/catalog.json").content == data


def test_pipelined_requests_are_answered_in_order_and_connection_close_is_honoured(
        rgw, bucket, make_tuskd):
    """Small answers are written straight from the handler (server write-through): requests
    pipelined in one packet must still come back complete and in order, a HEAD without a body,
    errors in between, and the connection must close right after the `Connection: close` one."""
    b = bucket()
    cat = blob(4096, seed=5)
    put(rgw, b, "catalog.json", cat, ContentType="application/json")
    t = make_tuskd(b)
    assert t.get("/catalog.json").content == cat  # warm: the rest are in-memory hits
    reqs = [b"GET /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /catalog.json HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nRange: bytes=100-199\r\n\r\n",
            b"GET /catalog.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"".join(reqs))
        got = split_responses(read_until_close(s), [False, True, False, False, False])
    assert [g[0] for g in got] == [200, 200, 404, 206, 200]
    assert got[0][2] == cat and got[4][2] == cat and got[3][2] == cat[100:200]
    assert got[1][1]["content-length"] == "4096"
    assert got[4][1].get("connection", "").lower() == "close"

    # HTTP/1.0 without keep-alive: one answer, then the server closes.
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"GET /catalog.json HTTP/1.0\r\n\r\n")
        (status, _, body), = split_responses(read_until_close(s), [False])
    assert status == 200 and body == cat
    # HTTP/1.0 with keep-alive: the connection stays usable for a second request.
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"GET /catalog.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = b""
        while len(first) < 4096 or b"\r\n\r\n" not in first:
            first += s.recv(65536)
        s.sendall(b"GET /catalog.json HTTP/1.0\r\n\r\n")
        got = split_responses(first + read_until_close(s), [False, False])
    assert [g[0] for g in got] == [200, 200] and got[1][2] == cat
    assert t.running()


@pytest.mark.parametrize("sendfile", [True, False])
def test_sendfile_off_reads_and_writes_the_same_bytes(rgw, bucket, make_tuskd, sendfile):
    """server.sendfile: false reads body files into memory (256 KiB per connection at a time)
    instead of sendfile: a fill followed live, a whole hit, a range across windows and a
    multipart answer all carry the same bytes, and the counters say which way they went."""
    from harness import free_port
    b = bucket()
    data = blob(3 * 1024 * 1024 + 17, seed=11)  # past the 64 KiB inline limit: a file hit
    put(rgw, b, "sf.bin", data)
    t = make_tuskd(b, server={"listen": [f"127.0.0.1:{free_port()}"], "workers": 1,
                              "sendfile": sendfile},
                   cache={"dir": "cache", "max_size": "1GiB", "chunk_size": "1MiB"})
    assert t.get("/images/sf.bin").content == data  # the miss, streamed along the fill
    t.wait_fills_settled()
    r = t.get("/images/sf.bin")
    assert r.headers["X-Cache"] == "HIT" and r.content == data
    r = t.get("/images/sf.bin", headers={"Range": "bytes=200000-2900000"})
    assert r.status_code == 206 and r.content == data[200000:2900001]
    r = t.get("/images/sf.bin", headers={"Range": "bytes=0-9, 1048570-1048580, -5"})
    assert [p for _, p in parse_multipart(r.headers["Content-Type"], r.content)] == \
        [data[0:10], data[1048570:1048581], data[-5:]]
    by_sendfile = t.metric("tusk_served_file_bytes_total", by="sendfile")
    by_copy = t.metric("tusk_served_file_bytes_total", by="copy")
    # the miss (at least the part read back from its file), the hit, the range, the parts
    least = len(data) + 2700001 + 10 + 11 + 5
    if sendfile:
        assert by_copy == 0 and by_sendfile >= least
    else:
        assert by_sendfile == 0 and by_copy >= least
