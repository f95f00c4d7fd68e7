"""Readiness and drain (issue 10): /readyz says whether a balancer should send this edge traffic
(not while draining, not while the cache cannot be written; upstream health is only reported),
and SIGTERM drains: 503 at once, new connections still accepted for server.drain_delay, then the
port closes, requests in flight finish, and the process exits 0."""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import subprocess
import threading
import time

import requests

from harness import wait_until

MiB = 1 << 20


def put(rgw, bucket, key, data):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data)


def slow_get(port: int, path: str, got: list, rate: int = 2 * MiB) -> None:
    """GETs `path` on a raw socket and reads at most `rate` bytes per second; appends the whole
    response (head and body) to `got`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = bytearray()
    while True:
        chunk = s.recv(64 * 1024)
        if not chunk:
            break
        data += chunk
        time.sleep(len(chunk) / rate)
    s.close()
    got.append(bytes(data))


def test_sigterm_drains_in_flight_requests_and_readyz_turns_503_at_once(rgw, bucket, make_tuskd):
    b = bucket()
    body = random.Random(7).randbytes(8 * MiB)
    put(rgw, b, "big.img", body)
    t = make_tuskd(b, start=False)
    t.config["server"]["drain_delay"] = "2s"
    t.config["server"]["drain_timeout"] = "30s"
    t.start()
    assert requests.get(t.url + "/images/big.img").content == body  # warm

    got: list[bytes] = []
    reader = threading.Thread(target=slow_get, args=(t.port, "/images/big.img", got))
    reader.start()
    time.sleep(0.5)  # the slow client has begun; it needs ~4 s in all
    t.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    # tuskd's main thread takes the signal; until it has run, an admin request may still be
    # answered "ready" (seen once in CI, the answer a few ms ahead of the signal's handling).
    # "At once" is: 503 within 0.5 s, long before the 2 s drain delay ends.
    answers: list[requests.Response] = []

    def draining() -> bool:
        answers.append(requests.get(t.admin_url + "/readyz", timeout=2))
        return answers[-1].status_code == 503

    wait_until(draining, timeout=0.5, interval=0.01, what="/readyz to turn 503 after SIGTERM")
    assert "draining" in answers[-1].text, answers[-1].text
    # Within the drain delay a new connection is still served.
    fresh = requests.get(t.url + "/images/big.img", headers={"Range": "bytes=0-9"}, timeout=2)
    assert fresh.status_code == 206 and fresh.content == body[:10]
    assert time.monotonic() - signalled < 2, "the test was too slow to check the drain delay"

    # After it, the port is closed while the slow client still reads.
    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", t.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True

    wait_until(refused, timeout=5, what="the listening port to close after drain_delay")
    assert time.monotonic() - signalled >= 1.9
    assert reader.is_alive(), "the in-flight download should still be running"

    reader.join(timeout=30)
    assert got, "the slow client got nothing"
    head, _, rest = got[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert hashlib.sha256(rest).hexdigest() == hashlib.sha256(body).hexdigest()
    assert t.proc.wait(timeout=30) == 0
    assert "still in flight are cut off" not in t.log()


def test_second_signal_skips_the_drain_delay(rgw, bucket, make_tuskd):
    t = make_tuskd(bucket(), start=False)
    t.config["server"]["drain_delay"] = "60s"
    t.start()
    t.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: requests.get(t.admin_url + "/readyz", timeout=2).status_code == 503,
               timeout=5, what="/readyz 503")
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(timeout=10) == 0


def test_readyz_is_503_while_the_cache_cannot_be_written_and_reports_upstreams(
    rgw, bucket, make_tuskd
):
    t = make_tuskd(bucket())
    r = requests.get(t.admin_url + "/readyz", timeout=2)
    assert r.status_code == 200 and r.text.startswith("ready\n"), r.text
    assert "upstream rgw: " in r.text
    objects = t.workdir / "cache" / "objects"
    # Root may write anywhere; an immutable directory refuses even root.
    subprocess.run(["chattr", "+i", str(objects)], check=True)
    try:
        r = requests.get(t.admin_url + "/readyz", timeout=2)
        assert r.status_code == 503, r.text
        assert "not writable" in r.text and "objects" in r.text
        # A dead or failing upstream is reported, never a reason to leave the pool.
        assert "upstream rgw: " in r.text
    finally:
        subprocess.run(["chattr", "-i", str(objects)], check=True)
    assert requests.get(t.admin_url + "/readyz", timeout=2).status_code == 200
