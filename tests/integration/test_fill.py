"""Many clients, one fetch: chunked fills against radosgw. Proves with radosgw's own request log
that each byte of a cold object is fetched once however many clients ask, that a range on a
cold object fetches only the chunks it needs, that fills survive disconnecting clients and
broken streams, never mix two versions of an object, and cope with Walrus-style and
range-ignoring upstreams. Also: bounded memory with 200 slow readers of one 1 GiB object."""
from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import Tuskd
from util import parse_multipart

MiB = 1024 * 1024
CHUNK = 8 * MiB


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def put(rgw, bucket, key, data, **extra):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data, **extra)


def upstream_spans(rgw, off, bucket, key, size):
    """(first, last) byte spans radosgw served for bucket/key since `off` (GETs only)."""
    spans = []
    for r in rgw.object_requests(off, bucket=bucket, key=key, methods=("GET",)):
        if r.status == 206 and r.range.startswith("bytes="):
            a, b = r.range[6:].split("-")
            spans.append((int(a), min(int(b), size - 1)))
        elif r.status == 200:
            spans.append((0, size - 1))
    return sorted(spans)


def assert_each_byte_once(spans, size):
    pos = 0
    for a, b in spans:
        assert a == pos, f"gap or overlap at {pos}: {spans}"
        pos = b + 1
    assert pos == size, f"upstream served {pos} of {size} bytes: {spans}"


def chunked_tuskd(make_tuskd, b, prefetch="whole", parallel=4, workers=1, **kw):
    routes = [{"prefix": "/images/", "upstream": "rgw", "bucket": b, "ttl": "1h",
               "prefetch": prefetch}]
    t = make_tuskd(b, routes=routes, fill={"parallel": parallel}, start=False, **kw)
    t.config["server"]["workers"] = workers
    return t.start()


def test_fifty_clients_of_a_cold_object_cause_one_fetch_of_each_byte(rgw, bucket, make_tuskd):
    b = bucket()
    size = 64 * MiB + 12345
    data = blob(size, seed=31)
    want = hashlib.sha256(data).hexdigest()
    put(rgw, b, "herd.img", data)
    t = chunked_tuskd(make_tuskd, b, workers=2)
    off = rgw.log_offset()
    barrier = threading.Barrier(50)

    def client(i):
        barrier.wait()
        r = requests.get(t.url + "/images/herd.img", timeout=120)
        return r.status_code, r.headers["X-Cache"], hashlib.sha256(r.content).hexdigest()

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert all(s == 200 and h == want for s, _, h in results)
    outcomes = {x for _, x, _ in results}
    assert outcomes <= {"MISS", "COALESCED", "HIT"} and "MISS" in outcomes
    assert sum(1 for _, x, _ in results if x == "MISS") == 1
    assert_each_byte_once(upstream_spans(rgw, off, b, "herd.img", size), size)
    assert t.metric("tusk_upstream_bytes_total") == size


def test_concurrent_overlapping_ranges_on_a_cold_object_are_byte_exact(rgw, bucket, make_tuskd):
    b = bucket()
    size = 40 * MiB + 7
    data = blob(size, seed=32)
    put(rgw, b, "ranges.img", data)
    t = chunked_tuskd(make_tuskd, b)
    off = rgw.log_offset()
    rng = random.Random(5)
    asks = []
    for _ in range(24):
        a = rng.randrange(size)
        b2 = min(size - 1, a + rng.randrange(1, 12 * MiB))
        asks.append(f"bytes={a}-{b2}")
    asks += ["bytes=-100", f"bytes={size - 10}-", "bytes=0-0", "bytes=1-2,5000000-5000100,-3"]

    def client(h):
        return h, requests.get(t.url + "/images/ranges.img", headers={"Range": h}, timeout=120)

    with ThreadPoolExecutor(len(asks)) as pool:
        for h, r in pool.map(client, asks):
            assert r.status_code == 206, h
            if "," in h:
                parts = parse_multipart(r.headers["Content-Type"], r.content)
                assert [p for _, p in parts] == [data[1:3], data[5000000:5000101], data[-3:]]
                continue
            spec = h[6:]
            a, _, z = spec.partition("-")
            if a == "":
                first, last = size - int(z), size - 1
            else:
                first, last = int(a), (int(z) if z else size - 1)
            assert r.content == data[first:last + 1], h
            assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    time.sleep(1)
    spans = upstream_spans(rgw, off, b, "ranges.img", size)
    # A suffix range on an unknown object may cost one HEAD; bytes are still fetched once.
    assert_each_byte_once(spans, size)


def test_range_on_a_cold_object_fetches_only_its_chunks_with_prefetch_none(rgw, bucket,
                                                                          make_tuskd):
    b = bucket()
    size = 64 * MiB
    data = blob(size, seed=33)
    put(rgw, b, "big.img", data)
    t = chunked_tuskd(make_tuskd, b, prefetch="none")
    off = rgw.log_offset()
    first = size - 2 * MiB
    r = t.get("/images/big.img", headers={"Range": f"bytes={first}-{first + MiB - 1}"})
    assert r.status_code == 206 and r.content == data[first:first + MiB]
    time.sleep(0.5)
    spans = upstream_spans(rgw, off, b, "big.img", size)
    assert sum(z - a + 1 for a, z in spans) <= 2 * CHUNK, spans
    # Later, a whole GET fetches only what is missing, and the object is complete.
    off2 = rgw.log_offset()
    r = t.get("/images/big.img")
    assert r.content == data
    spans2 = upstream_spans(rgw, off2, b, "big.img", size)
    assert_each_byte_once(sorted(spans + spans2), size)
    time.sleep(0.5)
    assert t.get("/images/big.img").headers["X-Cache"] == "HIT"


def test_range_on_a_cold_object_with_prefetch_whole_fills_the_rest_behind(rgw, bucket,
                                                                         make_tuskd):
    b = bucket()
    size = 48 * MiB
    data = blob(size, seed=34)
    put(rgw, b, "pre.img", data)
    t = chunked_tuskd(make_tuskd, b, prefetch="whole")
    off = rgw.log_offset()
    r = t.get("/images/pre.img", headers={"Range": "bytes=-1000"})
    assert r.status_code == 206 and r.content == data[-1000:]

    def complete():
        return t.get("/images/pre.img", headers={"Range": "bytes=0-0"}).headers["X-Cache"] == "HIT"

    deadline = time.time() + 30
    while not complete():
        assert time.time() < deadline, "prefetch did not complete the object"
        time.sleep(0.2)
    spans = upstream_spans(rgw, off, b, "pre.img", size)
    assert_each_byte_once(spans, size)
    assert t.get("/images/pre.img").content == data


def test_disconnecting_clients_do_not_cancel_the_fill(rgw, bucket, make_tuskd):
    b = bucket()
    size = 64 * MiB
    data = blob(size, seed=35)
    put(rgw, b, "gone.img", data)
    t = chunked_tuskd(make_tuskd, b, parallel=1)
    off = rgw.log_offset()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", t.port))
        s.sendall(b"GET /images/gone.img HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1024 * 1024)
        s.close()
    deadline = time.time() + 60
    while True:
        r = t.get("/images/gone.img", headers={"Range": "bytes=0-0"})
        if r.headers["X-Cache"] == "HIT":
            break
        assert time.time() < deadline
        time.sleep(0.2)
    assert t.get("/images/gone.img").content == data
    assert_each_byte_once(upstream_spans(rgw, off, b, "gone.img", size), size)


def test_an_object_changed_mid_fill_is_never_mixed(rgw, bucket, make_tuskd, make_relay):
    b = bucket()
    size = 64 * MiB
    v1, v2 = blob(size, seed=36), blob(size, seed=37)
    put(rgw, b, "chg.img", v1)
    relay = make_relay("slow:16777216")  # 16 MiB/s per connection: the fill takes a while
    t = chunked_tuskd(make_tuskd, b, parallel=1, endpoint=relay.url,
                      upstream={"retries": 1, "stall_timeout": "5s"})
    got = {}

    def reader():
        try:
            r = requests.get(t.url + "/images/chg.img", timeout=60)
            got["body"] = r.content
        except requests.RequestException as e:
            got["error"] = e

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(1.0)
    put(rgw, b, "chg.img", v2)  # the object changes while tuskd is filling it
    th.join()
    # The client saw either all of v1 or a closed connection: never bytes of v2 after v1.
    if "body" in got:
        assert len(got["body"]) < size or got["body"] == v1
        assert got["body"] == v1[:len(got["body"])]
    relay.set_mode("pass")
    assert any(q.status == 412 for q in relay.requests if q.header("If-Match")), \
        "the changed object must be refused by If-Match"
    r = t.get("/images/chg.img")
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert r.content == v2
    assert t.get("/images/chg.img").content == v2


@pytest.mark.parametrize("mode", ["walrus-range", "ignore-range"])
def test_upstreams_that_answer_ranges_differently(rgw, bucket, make_tuskd, make_relay, mode):
    b = bucket()
    size = 20 * MiB + 3
    data = blob(size, seed=38)
    put(rgw, b, "w.img", data)
    put(rgw, b, "w2.img", data[::-1])
    relay = make_relay(mode)
    # SigV2 (Walrus' scheme) does not sign Range, so the relay may strip or rewrite it.
    t = chunked_tuskd(make_tuskd, b, endpoint=relay.url, upstream={"signature": "v2"})
    r = t.get("/images/w.img", headers={"Range": f"bytes={10 * MiB}-{10 * MiB + 99}"})
    assert r.status_code == 206 and r.content == data[10 * MiB:10 * MiB + 100]
    assert t.get("/images/w.img").content == data
    r = t.get("/images/w2.img", headers={"Range": "bytes=5-9"})
    assert r.content == data[::-1][5:10]
    assert t.get("/images/w2.img").content == data[::-1]
    if mode == "walrus-range":
        assert "Walrus way" in t.log()
        heads = [i for i, q in enumerate(relay.requests) if q.method == "HEAD"]
        assert heads, "the size of a Walrus object comes from a HEAD"
        # After that, ranged GETs (answered 200 + unit-less Content-Range) filled the chunks.
        assert any(q.header("Range") for q in relay.requests[heads[0] + 1:])
    else:
        assert "ignores Range" in t.log()
    up = t.metric("tusk_upstream_bytes_total")
    assert up <= 2 * size + CHUNK, f"{up} upstream bytes for two objects of {size}"


def test_two_hundred_slow_readers_of_a_one_gib_object_stay_under_150_mb(rgw, bucket, make_tuskd,
                                                                       tmp):
    b = bucket()
    size = 1024 * MiB
    block = random.Random(2).randbytes(MiB)
    src = tmp / "slow.img"
    with open(src, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 11:] + block[:i % 11])
    from boto3.s3.transfer import TransferConfig

    rgw.s3("tusk").upload_file(str(src), b, "slow.img",
                               Config=TransferConfig(multipart_chunksize=64 * MiB))
    src.unlink()
    t = chunked_tuskd(make_tuskd, b, cache={"dir": str(tmp / "slowcache"), "max_size": "2GiB",
                                            "chunk_size": "8MiB"}, env=Tuskd.rss_env())
    base = t.rss_baseline_kb()
    stop = threading.Event()
    received = [0] * 200
    socks = []

    def slow_reader(i):
        s = socket.create_connection(("127.0.0.1", t.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        socks.append(s)
        s.sendall(b"GET /images/slow.img HTTP/1.1\r\nHost: x\r\n\r\n")
        while not stop.is_set():
            d = s.recv(16 * 1024)
            if not d:
                break
            received[i] += len(d)
            time.sleep(0.05)

    threads = [threading.Thread(target=slow_reader, args=(i,), daemon=True) for i in range(200)]
    for th in threads:
        th.start()
    peak = 0
    end = time.time() + 12
    while time.time() < end:
        peak = max(peak, t.rss_kb())
        time.sleep(0.1)
    stop.set()
    for s in socks:
        s.close()
    assert sum(1 for n in received if n > 0) >= 190, "the readers were not being served"
    assert peak - base < 150 * 1024, f"RSS peaked at {peak} KiB (from {base}) with 200 slow readers"


def test_a_client_reading_along_a_slow_fill_gets_bytes_long_before_the_chunk_is_complete(
        rgw, bucket, make_tuskd, make_relay):
    """Each byte is served as soon as it is on disk, not when its chunk is complete: wake-ups of
    a client reading along are coalesced (256 KiB or 5 ms), never held for the chunk. One 8 MiB
    chunk arrives at 1 MiB/s; the client must see it trickle in steadily."""
    b = bucket()
    size = 4 * MiB
    data = blob(size, seed=41)
    put(rgw, b, "trickle.img", data)
    relay = make_relay("slow:1048576")
    t = chunked_tuskd(make_tuskd, b, parallel=1, endpoint=relay.url)
    s = socket.create_connection(("127.0.0.1", t.port), timeout=30)
    t0 = time.monotonic()
    s.sendall(b"GET /images/trickle.img HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    seen = []  # (seconds since request, bytes received so far incl. headers)
    while chunk := s.recv(65536):
        got += chunk
        seen.append((time.monotonic() - t0, len(got)))
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert body == data, head
    total = seen[-1][0]
    assert total > 3.0, f"the relay should have made this take ~4 s, took {total:.1f}s"
    # Half-way through the transfer the client holds roughly half the bytes, not none of them.
    half = max(n for ts, n in seen if ts <= total / 2)
    assert half >= size // 4, f"only {half} bytes after {total / 2:.1f}s of {total:.1f}s"
    # And no gap between deliveries is anywhere near the chunk's fill time.
    gaps = [b2[0] - a2[0] for a2, b2 in zip(seen, seen[1:])]
    assert max(gaps) < 1.0, f"a {max(gaps):.2f}s pause in delivery"
