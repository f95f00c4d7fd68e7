"""The admin API (issue 10) against radosgw: the token rules, listing, purge (also while a client
reads and while a fill runs), warming a catalog, integrity (a corrupted upstream byte is never
served as a complete response; POST /verify finds a body damaged on disk), GET /stats, and live
reload (routes and keys, with a download in flight; an invalid file refused)."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time

import requests

import harness
from harness import wait_until
from util import raw_request

MiB = 1 << 20
TOKEN = "s3cr3t-admin-token-for-tests"


def put(rgw, bucket, key, data, user="tusk"):
    rgw.s3(user).put_object(Bucket=bucket, Key=key, Body=data)


def with_token(make_tuskd, b, **kw):
    """A tuskd whose admin API takes TOKEN."""
    t = make_tuskd(b, start=False, **kw)
    token_file = t.workdir / "admin.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    t.config["admin"]["token_file"] = str(token_file)
    t.start()
    return t


def admin(t, method, path, token=TOKEN, **kw):
    headers = kw.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kw.setdefault("timeout", 30)
    return requests.request(method, t.admin_url + path, headers=headers, **kw)


def wait_job(t, kind, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        r = admin(t, "GET", f"/{kind}/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["done"]:
            return job
        assert time.monotonic() < deadline, f"job {job_id} not done: {job}"
        time.sleep(0.1)


def raw_get(port, path, rate=None, headers=""):
    """GET on a raw socket, reading at most `rate` bytes/s; returns (status, headers, body,
    complete) where complete says whether Content-Length bytes arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
    data = bytearray()
    while True:
        try:
            chunk = s.recv(64 * 1024)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if rate:
            time.sleep(len(chunk) / rate)
    s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    complete = "content-length" in fields and int(fields["content-length"]) == len(body)
    return status, fields, body, complete


# ---------------------------------------------------------------- tokens


def test_token_rules(rgw, bucket, make_tuskd):
    b = bucket()
    t = with_token(make_tuskd, b)
    # The three open calls need no token.
    for p in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(t.admin_url + p, timeout=5).status_code == 200, p
    r = admin(t, "GET", "/objects", token=None)
    assert r.status_code == 401 and "Bearer" in r.headers.get("WWW-Authenticate", "")
    assert "error" in r.json()
    assert admin(t, "GET", "/objects", headers={"Authorization": "Basic dXNlcjpwYXNz"},
                 token=None).status_code == 401
    r = admin(t, "GET", "/objects", token="wrong-token")
    assert r.status_code == 403 and "wrong" in r.json()["error"]
    assert admin(t, "GET", "/objects", token=TOKEN[:-1]).status_code == 403  # a prefix is wrong
    assert admin(t, "GET", "/objects", token=TOKEN + "x").status_code == 403
    assert admin(t, "DELETE", "/objects?prefix=/images/", token=None).status_code == 401
    assert admin(t, "GET", "/objects").status_code == 200
    assert admin(t, "GET", "/stats").status_code == 200
    r = admin(t, "PUT", "/objects")
    assert r.status_code == 405 and "DELETE" in r.headers["Allow"]
    assert admin(t, "GET", "/nope").status_code == 404
    assert TOKEN not in t.log()


def test_bad_admin_inputs_get_clear_errors(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "catalog.json", b"this is not json")
    t = with_token(make_tuskd, b)
    # A malformed escape, sent raw (requests would re-encode it).
    status, _, body = raw_request(
        t.admin_port, f"GET /objects?prefix=%zz HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode())
    assert status == 400 and b"percent-escape" in body
    for path, code in (("/objects?limit=abc", 400),
                       ("/objects?limit=1001", 400), ("/warm/../../etc", 404),
                       ("/verify/v0", 404)):
        r = admin(t, "GET", path)
        assert r.status_code == code and r.json()["error"], (path, r.status_code, r.text)
    for body in (b"[1, 2]", b"{\"paths\": []}", b"{\"paths\": [1]}", b"{\"catalog\": 5}",
                 b"\xff\xfe", b"{" * 10000):
        r = admin(t, "POST", "/warm", data=body)
        assert r.status_code == 400 and r.json()["error"], (body[:20], r.text)
    r = admin(t, "POST", "/warm", data=b"x" * (70 * 1024))
    assert r.status_code == 413
    # A catalog that is not a catalog fails the job, clearly.
    job = wait_job(t, "warm", admin(t, "POST", "/warm", json={"catalog": "/catalog.json"})
                   .json()["id"])
    assert "not a eustore catalog" in job["error"] and job["errors"] == 1
    job = wait_job(t, "warm", admin(t, "POST", "/warm", json={"catalog": "/nowhere.json"})
                   .json()["id"])
    assert job["error"] and job["errors"] >= 1
    assert requests.get(t.admin_url + "/readyz", timeout=5).status_code == 200


def test_an_unreadable_token_file_stops_tuskd_from_starting(rgw, bucket, make_tuskd):
    t = make_tuskd(bucket(), start=False)
    t.config["admin"]["token_file"] = str(t.workdir / "no-such.token")
    t.expected_rc = 1
    t.start(wait=None)
    assert t.proc.wait(timeout=20) == 1
    assert "cannot read admin.token_file" in t.log()


def test_without_a_token_file_mutating_calls_are_refused(rgw, bucket, make_tuskd):
    b = bucket()
    t = make_tuskd(b)
    assert admin(t, "GET", "/objects", token=None).status_code == 200
    assert admin(t, "GET", "/stats", token=None).status_code == 200
    for method, path in (("DELETE", "/objects?prefix=/images/"), ("POST", "/verify"),
                         ("POST", "/reload")):
        r = admin(t, method, path, token="anything")
        assert r.status_code == 403, (method, path, r.text)
        assert "admin.token_file is not configured" in r.json()["error"]


# ---------------------------------------------------------------- listing and purge


def test_list_paginates_and_describes_each_object(rgw, bucket, make_tuskd):
    b = bucket()
    bodies = {f"obj{i}.img": random.Random(i).randbytes(1000 + i) for i in range(7)}
    for k, v in bodies.items():
        put(rgw, b, k, v)
    put(rgw, b, "other.bin", b"x" * 10)
    t = with_token(make_tuskd, b, routes=[
        {"prefix": "/images/", "upstream": "rgw", "bucket": b, "ttl": "1h"},
        {"prefix": "/else/", "upstream": "rgw", "bucket": b, "key_prefix": "other", "ttl": "1h"},
    ])
    for k, v in bodies.items():
        assert t.get(f"/images/{k}").content == v
    assert t.get("/else/.bin").content == b"x" * 10
    t.wait_fills_settled()

    seen = []
    after = None
    pages = 0
    while True:
        q = "/objects?prefix=/images/&limit=3" + (f"&after={after}" if after else "")
        r = admin(t, "GET", q)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["objects"]) <= 3
        seen += page["objects"]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages >= 3
    assert sorted(o["path"] for o in seen) == sorted(f"/images/{k}" for k in bodies)
    for o in seen:
        body = bodies[o["key"]]
        assert o["bucket"] == b and o["upstream"] == "rgw"
        assert o["size"] == len(body) and o["cached_bytes"] == len(body) and o["complete"]
        assert o["etag"].strip('"') == hashlib.md5(body).hexdigest()
        assert o["integrity"] == "verified", o  # single-part MD5 ETag, checked while filling
        assert o["stored_at"] > 0 and o["expires_at"] > o["stored_at"] and o["accessed_at"] > 0
    everything = admin(t, "GET", "/objects?limit=1000").json()["objects"]
    assert "/else/.bin" in [o["path"] for o in everything]
    assert admin(t, "GET", "/objects?limit=0").status_code == 400
    assert admin(t, "GET", "/objects?after=zz").status_code == 400


def test_purge_one_and_by_prefix_while_a_client_reads(rgw, bucket, make_tuskd):
    b = bucket()
    big = random.Random(1).randbytes(24 * MiB)
    put(rgw, b, "big.img", big)
    small = {f"s{i}": bytes([i]) * 100 for i in range(3)}
    for k, v in small.items():
        put(rgw, b, f"dir/{k}", v)
    t = with_token(make_tuskd, b)
    assert t.get("/images/big.img").content == big
    for k, v in small.items():
        assert t.get(f"/images/dir/{k}").content == v
    t.wait_fills_settled()

    got = []
    reader = threading.Thread(target=lambda: got.append(raw_get(t.port, "/images/big.img",
                                                                rate=8 * MiB)))
    reader.start()
    time.sleep(0.5)
    r = admin(t, "DELETE", "/objects?path=/images/big.img")
    assert r.status_code == 200 and r.json() == {"purged": 1}, r.text
    assert admin(t, "DELETE", "/objects?path=/images/big.img").json() == {"purged": 0}
    reader.join(timeout=60)
    status, fields, body, complete = got[0]
    assert status == 200 and complete and body == big, "a client reading the old body finishes"

    offset = rgw.log_offset()
    r = t.get("/images/big.img")
    assert r.content == big and r.headers["X-Cache"] == "MISS"
    assert rgw.request_count(offset, bucket=b, key="big.img") >= 1
    # The listing reads the index: a new object is published there by the disk thread with its
    # first durable batch, which may come just after a client got every byte.
    t.wait_fills_settled()

    r = admin(t, "DELETE", "/objects?prefix=/images/dir/")
    assert r.json() == {"purged": 3}, r.text
    listed = [o["path"] for o in admin(t, "GET", "/objects").json()["objects"]]
    assert listed == ["/images/big.img"]
    assert t.metric("tusk_purged_objects_total") == 4
    assert admin(t, "DELETE", "/objects").status_code == 400
    assert admin(t, "DELETE", "/objects?path=/nowhere/x").status_code == 404


def test_purge_abandons_a_fill_in_progress(rgw, bucket, make_tuskd, make_relay):
    b = bucket()
    body = random.Random(2).randbytes(32 * MiB)
    put(rgw, b, "cold.img", body)
    relay = make_relay("slow:4194304")  # 4 MiB/s: the fill takes ~8 s (fill.parallel 1)
    t = with_token(make_tuskd, b, endpoint=relay.url, fill={"parallel": 1})
    got = []
    reader = threading.Thread(target=lambda: got.append(raw_get(t.port, "/images/cold.img")))
    reader.start()
    wait_until(lambda: t.metric("tusk_fills_active") == 1, timeout=10, what="the fill to start")
    time.sleep(1)
    assert admin(t, "DELETE", "/objects?path=/images/cold.img").json() == {"purged": 1}
    reader.join(timeout=30)
    status, _, partial, complete = got[0]
    assert status == 200 and not complete, "the abandoned fill's client is cut"
    assert partial == body[: len(partial)]
    wait_until(lambda: t.metric("tusk_fills_active") == 0, timeout=10, what="the fill to leave")
    time.sleep(0.5)  # its last marks would land within the disk thread's batch window
    assert admin(t, "GET", "/objects").json()["objects"] == [], "nothing left behind"
    relay.set_mode("pass")
    r = t.get("/images/cold.img")
    assert r.content == body and r.headers["X-Cache"] == "MISS"


# ---------------------------------------------------------------- warm


def test_warm_a_catalog_then_every_image_is_a_hit(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    tarballs = [harness.make_image_tarball(tmp / f"img{i}.tgz", f"img{i}", size_mb=2 + i)
                for i in range(3)]
    for tb in tarballs:
        put(rgw, b, tb.path.name, tb.path.read_bytes())
    # One relative URL under the images prefix, one root-relative, both as eustore resolves them.
    cat = harness.catalog(tarballs, url_prefix="images/")
    cat["images"][1]["url"] = "/images/" + tarballs[1].path.name
    put(rgw, b, "catalog.json", json.dumps(cat).encode())
    t = with_token(make_tuskd, b)

    r = admin(t, "POST", "/warm", json={"catalog": "/catalog.json"})
    assert r.status_code == 202, r.text
    job = wait_job(t, "warm", r.json()["id"])
    assert job["errors"] == 0 and job["error"] is None, job
    assert job["objects_total"] == 4 and job["objects_done"] == 4  # the catalog and 3 images
    results = {o["path"]: o["result"] for o in job["objects"]}
    for tb in tarballs:
        assert results[f"/images/{tb.path.name}"] == "ok"
    assert job["bytes_done"] == job["bytes_total"] >= sum(tb.size for tb in tarballs)
    t.wait_fills_settled()

    offset = rgw.log_offset()
    for tb in tarballs:
        r = t.get(f"/images/{tb.path.name}")
        assert r.headers["X-Cache"] == "HIT" and r.content == tb.path.read_bytes()
    assert rgw.request_count(offset, bucket=b) == 0, "warmed images need no upstream request"

    # Warming again finds them cached; unknown paths and bad bodies are clear errors.
    r = admin(t, "POST", "/warm", json={"paths": [f"/images/{tarballs[0].path.name}",
                                                  "/nowhere/x", "/images/missing.tgz"]})
    job = wait_job(t, "warm", r.json()["id"])
    by_path = {o["path"]: o for o in job["objects"]}
    assert by_path[f"/images/{tarballs[0].path.name}"]["result"] == "cached"
    assert by_path["/nowhere/x"]["state"] == "failed"
    assert by_path["/images/missing.tgz"]["state"] == "failed"
    assert job["errors"] == 2
    assert admin(t, "POST", "/warm", data="not json").status_code == 400
    assert admin(t, "POST", "/warm", json={"paths": "x"}).status_code == 400
    assert admin(t, "GET", "/warm/w999").status_code == 404


def test_warm_checks_eustore_checksums_and_purges_a_mismatch(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    good = harness.make_image_tarball(tmp / "good.tgz", "good", size_mb=1)
    bad = harness.make_image_tarball(tmp / "bad.tgz", "bad", size_mb=1)
    for tb in (good, bad):
        put(rgw, b, tb.path.name, tb.path.read_bytes())
    cat = harness.catalog([good, bad], url_prefix="images/")
    cat["images"][1]["name"] = "0123456789"  # not bad.tgz's checksum
    put(rgw, b, "catalog.json", json.dumps(cat).encode())
    t = with_token(make_tuskd, b)
    job = wait_job(t, "warm", admin(t, "POST", "/warm", json={"catalog": "/catalog.json"})
                   .json()["id"])
    by_path = {o["path"]: o for o in job["objects"]}
    assert by_path["/images/good.tgz"]["result"] == "ok"
    assert by_path["/images/bad.tgz"]["result"] == "mismatch"
    assert job["errors"] == 1
    assert t.metric("tusk_integrity_failures_total", check="catalog") == 1
    listed = [o["path"] for o in admin(t, "GET", "/objects?prefix=/images/").json()["objects"]]
    assert listed == ["/images/good.tgz"]


# ---------------------------------------------------------------- integrity


def test_a_corrupted_upstream_byte_is_never_served_complete(rgw, bucket, make_tuskd, make_relay):
    b = bucket()
    body = random.Random(3).randbytes(20 * MiB)  # three 8 MiB chunks
    put(rgw, b, "x.img", body)
    relay = make_relay(f"flip:{9 * MiB + 5}")
    t = with_token(make_tuskd, b, endpoint=relay.url)

    status, fields, got, complete = raw_get(t.port, "/images/x.img")
    assert status == 200 and not complete, "the last byte is held back, then the cut"
    assert len(got) < len(body)
    assert t.metric("tusk_integrity_failures_total", check="fill") == 1
    assert "integrity" in t.log() and "x.img" in t.log()
    wait_until(lambda: t.metric("tusk_fills_active") == 0, timeout=10, what="the fill to leave")
    time.sleep(0.5)
    assert admin(t, "GET", "/objects").json()["objects"] == [], "the bad body was purged"

    # A range to the end (what wget -c and aria2c's last segment ask) is cut the same way.
    status, _, _, complete = raw_get(t.port, "/images/x.img", headers="Range: bytes=-100\r\n")
    assert status == 206 and not complete
    assert t.metric("tusk_integrity_failures_total", check="fill") == 2

    relay.set_mode("pass")
    wait_until(lambda: t.metric("tusk_fills_active") == 0, timeout=10, what="the fill to leave")
    r = t.get("/images/x.img")
    assert r.content == body
    t.wait_fills_settled()
    [obj] = admin(t, "GET", "/objects").json()["objects"]
    assert obj["integrity"] == "verified" and obj["complete"]
    assert t.metric("tusk_integrity_verified_total") >= 1


def test_verify_finds_a_body_damaged_on_disk_and_purges_it(rgw, bucket, make_tuskd):
    b = bucket()
    bodies = {f"v{i}.img": random.Random(10 + i).randbytes(3 * MiB) for i in range(3)}
    for k, v in bodies.items():
        put(rgw, b, k, v)
    # A multipart upload: its ETag is not an MD5, so it is unverifiable, not a failure.
    s3 = rgw.s3()
    mp = s3.create_multipart_upload(Bucket=b, Key="multi.img")
    part = random.Random(9).randbytes(5 * MiB)
    etag = s3.upload_part(Bucket=b, Key="multi.img", UploadId=mp["UploadId"], PartNumber=1,
                          Body=part)["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="multi.img", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    t = with_token(make_tuskd, b)
    for k in list(bodies) + ["multi.img"]:
        assert t.get(f"/images/{k}").status_code == 200
    t.wait_fills_settled()
    listing = {o["path"]: o for o in admin(t, "GET", "/objects").json()["objects"]}
    assert listing["/images/multi.img"]["integrity"] == "unverifiable"

    # Damage one byte of v1.img's body file on disk.
    victim = hashlib.md5(bodies["v1.img"]).hexdigest()
    files = [p for p in (t.workdir / "cache" / "objects").rglob("*") if p.is_file()]
    damaged = None
    for p in files:
        data = p.read_bytes()
        if len(data) == 3 * MiB and hashlib.md5(data).hexdigest() == victim:
            with open(p, "r+b") as f:
                f.seek(12345)
                f.write(bytes([data[12345] ^ 0xFF]))
            damaged = p
    assert damaged is not None

    r = admin(t, "POST", "/verify?prefix=/images/")
    assert r.status_code == 202, r.text
    job = wait_job(t, "verify", r.json()["id"])
    results = {o["path"]: o["result"] for o in job["objects"]}
    assert results == {"/images/v0.img": "ok", "/images/v1.img": "mismatch",
                       "/images/v2.img": "ok", "/images/multi.img": "unverifiable"}, job
    assert job["errors"] == 1 and job["bytes_done"] == 9 * MiB
    assert t.metric("tusk_integrity_failures_total", check="verify") == 1
    paths = [o["path"] for o in admin(t, "GET", "/objects").json()["objects"]]
    assert "/images/v1.img" not in paths
    r = t.get("/images/v1.img")
    assert r.content == bodies["v1.img"] and r.headers["X-Cache"] == "MISS"


def test_stats(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "a.img", b"a" * 1000)
    t = with_token(make_tuskd, b)
    t.get("/images/a.img")
    t.wait_fills_settled()
    t.get("/images/a.img")
    t.get("/images/a.img")
    s = admin(t, "GET", "/stats").json()
    assert s["objects"] == 1 and s["bytes"] == 1000 and s["max_bytes"] == 1 << 30
    assert s["hits"] == 2 and s["misses"] == 1 and abs(s["hit_ratio"] - 2 / 3) < 1e-9
    assert s["requests"] == 3 and s["fills_in_flight"] == 0
    assert s["bytes_sent"] == 3000 and s["upstream_bytes"] == 1000
    assert s["integrity_verified"] == 1


# ---------------------------------------------------------------- reload


def test_reload_routes_and_keys_with_a_download_in_flight(rgw, bucket, make_tuskd, make_relay):
    mine = bucket()
    theirs = bucket(user="other")
    body = random.Random(4).randbytes(24 * MiB)
    put(rgw, mine, "long.img", body)
    put(rgw, theirs, "new.img", b"new bytes", user="other")
    relay = make_relay("slow:4194304")  # the download takes ~6 s
    t = with_token(make_tuskd, mine, endpoint=relay.url, fill={"parallel": 1})

    got = []
    reader = threading.Thread(target=lambda: got.append(raw_get(t.port, "/images/long.img")))
    reader.start()
    wait_until(lambda: t.metric("tusk_fills_active") == 1, timeout=10, what="the fill to start")

    # Rotate to the other user's keys and route a new prefix to their bucket.
    a, s = harness.Tuskd.write_keys(t.workdir, *rgw.keys("other"), name="other")
    t.config["upstreams"]["rgw"].update(access_key_file=a, secret_key_file=s)
    t.config["routes"].append({"prefix": "/theirs/", "upstream": "rgw", "bucket": theirs,
                               "ttl": "1h"})
    t.config["fill"] = {"parallel": 2}
    t.config["server"]["idle_timeout"] = "30s"  # needs a restart: reported
    t.write_config()
    r = admin(t, "POST", "/reload")
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "ok" and r.json()["restart_needed"] == ["server.idle_timeout"]
    assert t.get("/theirs/new.img").content == b"new bytes"

    reader.join(timeout=60)
    status, _, got_body, complete = got[0]
    assert status == 200 and complete and got_body == body, "the download in flight completes"

    # An invalid file is refused; the running configuration stays.
    good = t.config_path.read_text()
    t.config_path.write_text(good.replace('"ttl": "1h"', '"ttl": "forever"', 1))
    r = admin(t, "POST", "/reload")
    assert r.status_code == 400 and r.json()["result"] == "failed"
    assert str(t.config_path) in r.json()["error"] and ":" in r.json()["error"]
    assert t.metric("tusk_config_reloads_total", result="failed") == 1
    assert t.metric("tusk_config_reloads_total", result="ok") == 1
    assert t.get("/theirs/new.img").status_code == 200

    # SIGHUP does the same as POST /reload.
    t.config_path.write_text(good)
    t.config["routes"] = [r for r in t.config["routes"] if r.get("prefix") != "/theirs/"]
    t.write_config()
    t.reload()
    wait_until(lambda: t.metric("tusk_config_reloads_total", result="ok") == 2, timeout=10,
               what="SIGHUP's reload")
    assert t.get("/theirs/new.img").status_code == 404
