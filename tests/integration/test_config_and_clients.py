"""`tuskd --check-config` on good and bad configurations (clear file:line:column errors, exit
1, nothing started), and real downloaders through tuskd: curl, wget -c resuming a partial file,
aria2c with parallel ranged connections."""
from __future__ import annotations

import hashlib
import json
import random
import subprocess

import pytest


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def check(tuskd_bin, path):
    return subprocess.run([tuskd_bin, "--check-config", str(path)], capture_output=True,
                          text=True, timeout=30)


GOOD = """\
server: { listen: ["127.0.0.1:18080"], workers: 2 }
admin: { listen: "127.0.0.1:18081" }
cache: { dir: ./cache, max_size: 10GiB, chunk_size: 8MiB }
upstreams:
  walrus:
    endpoint: http://walrus.example.com:8773/services/Walrus
    signature: v2
    access_key_file: walrus.access
    secret_key_file: walrus.secret
routes:
  - { path: /catalog.json, upstream: walrus, bucket: starter-emis, key: catalog.json, ttl: 60s }
  - { prefix: /starter-emis/, upstream: walrus, bucket: starter-emis, ttl: 30d }
"""

BAD = [
    # (yaml replacing GOOD's text, expected "line:column: message" fragment)
    (GOOD.replace("workers: 2", "workers: many"), ":1:"),
    (GOOD.replace("listen: [", "lisen: ["), "unknown key 'lisen'"),
    (GOOD.replace("max_size: 10GiB", "max_size: 10 potatoes"), ":3:"),
    (GOOD.replace("chunk_size: 8MiB", "chunk_size: 0"), "chunk_size"),
    (GOOD.replace("signature: v2", "signature: v3"), ":7:"),
    (GOOD.replace("upstream: walrus, bucket: starter-emis, ttl: 30d",
                  "upstream: nowhere, bucket: starter-emis, ttl: 30d"), "nowhere"),
    (GOOD.replace("ttl: 60s", "ttl: soon"), ":11:"),
    (GOOD.replace("key: catalog.json, ", ""), "key"),
    (GOOD.replace("{ prefix: /starter-emis/,", "{ path: /x, prefix: /starter-emis/,"), ":12:"),
    (GOOD.replace("127.0.0.1:18080", "127.0.0.1:99999"), "port"),
    (GOOD + "  - [unclosed\n", ":"),
    (GOOD.replace("walrus.secret", "missing.secret"), "missing.secret"),
]


def write_good(tmp):
    (tmp / "walrus.access").write_text("AKIDEXAMPLE\n")
    (tmp / "walrus.secret").write_text("s3cr3t+/with space\n")


def test_good_config_checks_ok(tuskd_bin, tmp):
    write_good(tmp)
    (tmp / "tusk.yaml").write_text(GOOD)
    out = check(tuskd_bin, tmp / "tusk.yaml")
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


@pytest.mark.parametrize("text,fragment", BAD)
def test_bad_configs_are_clear_errors(tuskd_bin, tmp, text, fragment):
    write_good(tmp)
    path = tmp / "tusk.yaml"
    path.write_text(text)
    out = check(tuskd_bin, path)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith(str(path) + ":"), out.stderr
    assert fragment in out.stderr, out.stderr
    assert "s3cr3t" not in out.stderr
    # Serving with it fails the same way, before binding anything.
    serve = subprocess.run([tuskd_bin, "--config", str(path)], capture_output=True, text=True,
                           timeout=30)
    assert serve.returncode == 1 and fragment in serve.stderr


def test_missing_config_file(tuskd_bin, tmp):
    out = check(tuskd_bin, tmp / "nope.yaml")
    assert out.returncode == 1 and "nope.yaml" in out.stderr


def test_port_in_use_is_a_clear_error(rgw, bucket, make_tuskd, tuskd_bin):
    b = bucket()
    t1 = make_tuskd(b)
    t2 = make_tuskd(b, start=False)
    t2.config["server"]["listen"] = [f"127.0.0.1:{t1.admin_port}"]  # taken, no SO_REUSEPORT
    t2.expected_rc = 1
    with pytest.raises(RuntimeError, match="cannot listen"):
        t2.start()


# ---------------------------------------------------------------- real downloaders


@pytest.fixture
def served(rgw, bucket, make_tuskd):
    b = bucket()
    data = blob(12 * 1024 * 1024 + 333, seed=21)
    rgw.s3("tusk").put_object(Bucket=b, Key="dl/image.tgz", Body=data,
                              ContentType="application/x-gzip")
    t = make_tuskd(b)
    return t, data


def test_wget_resumes_a_partial_download(served, tmp):
    t, data = served
    out = tmp / "image.tgz"
    out.write_bytes(data[:5_000_000])  # a previous, interrupted download
    r = subprocess.run(["wget", "-q", "-c", "-O", str(out), t.url + "/images/dl/image.tgz"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_aria2c_parallel_ranges(served, tmp):
    t, data = served
    r = subprocess.run(["aria2c", "-q", "-x8", "-s8", "-k1M", "--allow-overwrite=true",
                        "--file-allocation=none", "-d", str(tmp), "-o", "a.tgz",
                        t.url + "/images/dl/image.tgz"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert hashlib.sha256((tmp / "a.tgz").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_curl_range_and_head(served, tmp):
    t, data = served
    r = subprocess.run(["curl", "-sS", "-f", "-r", "100-199", t.url + "/images/dl/image.tgz"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == data[100:200]
    r = subprocess.run(["curl", "-sS", "-f", "-I", t.url + "/images/dl/image.tgz"],
                       capture_output=True, text=True, timeout=60)
    assert f"Content-Length: {len(data)}" in r.stdout
    assert "Accept-Ranges: bytes" in r.stdout


def test_admin_endpoints(served):
    import requests

    t, _ = served
    assert t.get("/images/dl/image.tgz").status_code == 200
    assert requests.get(t.admin_url + "/healthz").text == "ok\n"
    assert requests.get(t.admin_url + "/readyz").status_code == 200
    assert requests.get(t.admin_url + "/nope").status_code == 404
    text = requests.get(t.admin_url + "/metrics").text
    for name in ["tusk_requests_total", "tusk_served_bytes_total", "tusk_upstream_requests_total",
                 "tusk_cache_bytes", "tusk_cache_objects",
                 "tusk_cache_evictions_total"]:
        assert name in text, name
