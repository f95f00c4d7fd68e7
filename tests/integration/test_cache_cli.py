"""`tusk cache ls|purge|warm|verify|stats` (installer/cache_cmd.cc) against a real tuskd in front of
radosgw: the admin token rules as the CLI reports them, an unreachable admin URL, the `ls` table
and --json, purge by path and prefix, warming a catalog (then every image is a hit), verify finding
a body damaged on disk, the progress bar on a terminal, stats, paths with percent-escapes as `ls`
prints them, tuskd going away while a job is polled, and usage errors (exit 2, nothing sent).
Every `tusk` call has a 20 s timeout; objects are small so the file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import socket
import subprocess
import time
import tty
import urllib.parse

import requests

import harness
from harness import wait_until
from test_installer_bundle import tusk_cli_path

TOKEN = "cli-admin-token-0123456789abcdef"
CALL_TIMEOUT = 20
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
OBJECT_KEYS = {"path", "upstream", "bucket", "key", "size", "cached_bytes", "complete",
               "integrity", "etag", "stored_at", "expires_at", "accessed_at"}
TABLE_HEADER = ["PATH", "SIZE", "CACHED", "COMPLETE", "INTEGRITY", "AGE"]


# ---------------------------------------------------------------- helpers


def clean_env(extra: dict | None = None) -> dict:
    """The environment without any TUSK_ADMIN_* of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TUSK_ADMIN_URL", "TUSK_ADMIN_TOKEN_FILE")}
    env.update(extra or {})
    return env


def tusk(*args, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """Runs `tusk cache ARGS...` (stdout and stderr captured as text, 20 s timeout)."""
    p = subprocess.run([tusk_cli_path(), "cache", *map(str, args)], capture_output=True,
                       text=True, env=clean_env(env), timeout=CALL_TIMEOUT,
                       stdin=subprocess.DEVNULL, **kw)
    no_sanitizer_report(p.stderr)
    return p


def no_sanitizer_report(stderr: str) -> None:
    for marker in SANITIZER_MARKERS:
        assert marker not in stderr, stderr


def show(p: subprocess.CompletedProcess) -> str:
    return f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


def put(rgw, bucket, key, data):
    rgw.s3().put_object(Bucket=bucket, Key=key, Body=data)


def token_file(t: harness.Tuskd, name: str = "admin.token", value: str = TOKEN):
    f = t.workdir / name
    f.write_text(value + "\n")
    f.chmod(0o600)
    return f


def with_token(make_tuskd, b, **kw) -> harness.Tuskd:
    """A tuskd whose admin API takes TOKEN (its token file is <workdir>/admin.token)."""
    t = make_tuskd(b, start=False, **kw)
    t.config["admin"]["token_file"] = str(token_file(t))
    t.start()
    return t


def admin_get(t, path):
    r = requests.get(t.admin_url + path, headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def cached_paths(t) -> list[str]:
    return sorted(o["path"] for o in admin_get(t, "/objects?limit=1000")["objects"])


def table_rows(stdout: str) -> list[list[str]]:
    """The `ls` table as rows of cells (cells are separated by at least two spaces; the size
    column's "1.0 KiB" holds one)."""
    lines = stdout.splitlines()
    assert lines, "no table"
    return [re.split(r" {2,}", line.strip()) for line in lines]


def fill(t, paths):
    for p in paths:
        r = t.get(p)
        assert r.status_code == 200, (p, r.status_code)
    t.wait_fills_settled()


def setup_images(rgw, b, tmp, n=2, size_mb=0.25):
    """n small eustore tarballs and a catalog.json referencing them (urls images/<file>)."""
    tarballs = [harness.make_image_tarball(tmp / f"cli{i}.tgz", f"cli{i}", size_mb=size_mb)
                for i in range(n)]
    for tb in tarballs:
        put(rgw, b, tb.path.name, tb.path.read_bytes())
    put(rgw, b, "catalog.json", harness.catalog_bytes(tarballs, url_prefix="images/"))
    return tarballs


def wait_job_done(t, kind, job_id, timeout=20):
    return wait_until(lambda: admin_get(t, f"/{kind}/{job_id}")["done"], timeout=timeout,
                      interval=0.1, what=f"{kind} job {job_id}")


def closed_port() -> int:
    """A port nothing listens on (the kernel's pick, released)."""
    return harness.free_port()


# ---------------------------------------------------------------- auth


def test_without_a_token_file_reads_work_and_mutations_are_refused(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "a.img", b"a" * 1000)
    t = make_tuskd(b)
    fill(t, ["/images/a.img"])

    p = tusk("--admin", t.admin_url, "ls")
    assert p.returncode == 0, show(p)
    rows = table_rows(p.stdout)
    assert rows[0] == TABLE_HEADER
    assert [r[0] for r in rows[1:]] == ["/images/a.img"]

    p = tusk("--admin", t.admin_url, "purge", "/images/x")
    assert p.returncode == 1, show(p)
    assert p.stdout == ""
    assert p.stderr == ("tusk: error: 403: admin.token_file is not configured: "
                        "mutating calls are refused\n")
    # The URL may also come from TUSK_ADMIN_URL; a token file given anyway changes nothing.
    tf = token_file(t)
    p = tusk("purge", "/images/a.img", "--token-file", tf, env={"TUSK_ADMIN_URL": t.admin_url})
    assert p.returncode == 1 and "403: admin.token_file is not configured" in p.stderr, show(p)
    assert TOKEN not in p.stdout + p.stderr
    assert cached_paths(t) == ["/images/a.img"], "nothing was purged"


def test_token_rules_as_the_cli_reports_them(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "a.img", b"a" * 1000)
    t = with_token(make_tuskd, b)
    fill(t, ["/images/a.img"])
    right = t.workdir / "admin.token"
    wrong = token_file(t, "wrong.token", "not-the-token")
    outputs = []

    p = tusk("--admin", t.admin_url, "ls")
    outputs.append(p)
    assert p.returncode == 1 and p.stdout == "", show(p)
    assert p.stderr.startswith("tusk: error: 401: ") and p.stderr.endswith("\n"), show(p)
    assert p.stderr.count("\n") == 1

    for args in (("ls",), ("purge", "/images/a.img"), ("stats",)):
        p = tusk("--admin", t.admin_url, "--token-file", wrong, *args)
        outputs.append(p)
        assert p.returncode == 1 and p.stdout == "", (args, show(p))
        assert p.stderr.startswith("tusk: error: 403: "), (args, show(p))
        assert "not-the-token" not in p.stdout + p.stderr

    # The right token: via --token-file (before or after the verb) and via the environment.
    p = tusk("--admin", t.admin_url, "--token-file", right, "ls")
    outputs.append(p)
    assert p.returncode == 0, show(p)
    assert [r[0] for r in table_rows(p.stdout)[1:]] == ["/images/a.img"]
    p = tusk("ls", "--admin", t.admin_url, "--token-file", right)
    outputs.append(p)
    assert p.returncode == 0 and "/images/a.img" in p.stdout, show(p)
    p = tusk("--admin", t.admin_url, "purge", "/images/a.img",
             env={"TUSK_ADMIN_TOKEN_FILE": str(right)})
    outputs.append(p)
    assert p.returncode == 0 and p.stdout == "purged 1\n", show(p)
    assert cached_paths(t) == []

    # A token file that cannot be read is named (and nothing is sent).
    missing = t.workdir / "no-such.token"
    p = tusk("--admin", t.admin_url, "--token-file", missing, "ls")
    outputs.append(p)
    assert p.returncode == 1 and p.stdout == "", show(p)
    assert p.stderr == f"tusk: error: cannot read token file {missing}\n"

    for p in outputs:
        assert TOKEN not in p.stdout and TOKEN not in p.stderr, show(p)
    assert TOKEN not in t.log()


def test_an_unreachable_admin_url_is_named():
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    for args in (("ls",), ("stats",), ("purge", "/images/x"), ("warm", "/images/x")):
        p = tusk("--admin", url, *args)
        assert p.returncode == 1, (args, show(p))
        assert p.stdout == ""
        assert p.stderr.startswith(f"tusk: error: cannot reach tuskd's admin API at {url}: "), \
            (args, show(p))
        assert p.stderr.count("\n") == 1
    # A trailing slash is not part of the base.
    p = tusk("--admin", url + "/", "stats")
    assert p.returncode == 1 and f"admin API at {url}: " in p.stderr, show(p)


# ---------------------------------------------------------------- ls and purge


def test_ls_table_json_limit_and_prefix(rgw, bucket, make_tuskd):
    b = bucket()
    bodies = {"k0.img": b"0" * 1000, "k1.img": b"1" * 2000, "sub/k2.img": b"2" * 3000}
    for k, v in bodies.items():
        put(rgw, b, k, v)
    t = with_token(make_tuskd, b)
    fill(t, [f"/images/{k}" for k in bodies])
    tf = t.workdir / "admin.token"
    base = ("--admin", t.admin_url, "--token-file", tf)

    p = tusk(*base, "ls")
    assert p.returncode == 0 and p.stderr == "", show(p)
    rows = table_rows(p.stdout)
    assert rows[0] == TABLE_HEADER
    by_path = {r[0]: r for r in rows[1:]}
    assert sorted(by_path) == sorted(f"/images/{k}" for k in bodies), p.stdout
    for k, v in bodies.items():
        row = by_path[f"/images/{k}"]
        assert row[1:5] == [f"{len(v) / 1024:.1f} KiB" if len(v) >= 1024 else f"{len(v)} B",
                            "100%", "yes", "verified"], row
        assert re.fullmatch(r"\d+s", row[5]), row
    # Columns are aligned: every row's cells start where the header's do.
    lines = p.stdout.splitlines()
    starts = [lines[0].index(h) for h in ("COMPLETE", "INTEGRITY", "AGE")]
    for line in lines[1:]:
        for s in starts:
            assert line[s - 2:s] == "  " and line[s] != " ", (line, s)

    p = tusk(*base, "--json", "ls")
    assert p.returncode == 0, show(p)
    objects = json.loads(p.stdout)
    assert isinstance(objects, list) and len(objects) == 3
    for o in objects:
        assert set(o) == OBJECT_KEYS, o
        key = o["key"]
        assert o["path"] == f"/images/{key}" and o["bucket"] == b and o["upstream"] == "rgw"
        assert o["size"] == o["cached_bytes"] == len(bodies[key]) and o["complete"] is True
        assert o["etag"].strip('"') == hashlib.md5(bodies[key]).hexdigest()

    p = tusk(*base, "ls", "--limit", "2")
    assert p.returncode == 0, show(p)
    rows = table_rows(p.stdout)
    assert rows[0] == TABLE_HEADER and len(rows) == 3, p.stdout
    assert {r[0] for r in rows[1:]} < set(by_path)
    p = tusk(*base, "ls", "--limit", "2", "--json")
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 2, show(p)

    p = tusk(*base, "ls", "/images/sub/")
    assert p.returncode == 0, show(p)
    assert [r[0] for r in table_rows(p.stdout)[1:]] == ["/images/sub/k2.img"]
    p = tusk(*base, "--json", "ls", "/nowhere/")
    assert p.returncode == 0 and json.loads(p.stdout) == [], show(p)
    p = tusk(*base, "ls", "/nowhere/")
    assert p.returncode == 0 and table_rows(p.stdout) == [TABLE_HEADER], show(p)


def test_purge_by_path_and_by_prefix(rgw, bucket, make_tuskd):
    b = bucket()
    bodies = {"p0.img": b"x" * 1500, "p1.img": b"y" * 1500, "d/p2.img": b"z" * 1500}
    for k, v in bodies.items():
        put(rgw, b, k, v)
    t = with_token(make_tuskd, b)
    fill(t, [f"/images/{k}" for k in bodies])
    base = ("--admin", t.admin_url, "--token-file", t.workdir / "admin.token")

    p = tusk(*base, "purge", "/images/p0.img")
    assert p.returncode == 0 and p.stdout == "purged 1\n" and p.stderr == "", show(p)
    p = tusk(*base, "purge", "/images/p0.img")
    assert p.returncode == 0 and p.stdout == "purged 0\n", show(p)
    assert cached_paths(t) == ["/images/d/p2.img", "/images/p1.img"]

    offset = rgw.log_offset()
    r = t.get("/images/p0.img")
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS" and r.content == bodies["p0.img"]
    assert rgw.request_count(offset, bucket=b, key="p0.img") >= 1
    t.wait_fills_settled()

    p = tusk(*base, "--json", "purge", "--prefix", "/images/d/")
    assert p.returncode == 0 and json.loads(p.stdout) == {"purged": 1}, show(p)
    p = tusk(*base, "purge", "--prefix", "/images/")
    assert p.returncode == 0 and p.stdout == "purged 2\n", show(p)
    assert cached_paths(t) == []
    # A path no route maps to is the server's 404, reported as such.
    p = tusk(*base, "purge", "/nowhere/x")
    assert p.returncode == 1 and p.stdout == "" and p.stderr.startswith("tusk: error: 404: "), \
        show(p)


def test_paths_as_ls_prints_them_round_trip(rgw, bucket, make_tuskd):
    """Keys whose public paths hold percent-escapes: each path `ls` prints, given back to
    ls, warm, verify and purge, names exactly that object (the CLI encodes '%', '&', '+', ...
    in its query strings)."""
    b = bucket()
    keys = ["sp ace+plus.img", "pct%41.img", "amp&x=1.img", "uni-\u00e9.img", "q?mark.img",
            "hash#h.img"]
    for k in keys:
        put(rgw, b, k, k.encode())
    t = with_token(make_tuskd, b)
    fill(t, ["/images/" + urllib.parse.quote(k) for k in keys])
    base = ("--admin", t.admin_url, "--token-file", t.workdir / "admin.token")
    p = tusk(*base, "--json", "ls")
    assert p.returncode == 0, show(p)
    by_path = {o["path"]: o["key"] for o in json.loads(p.stdout)}
    assert sorted(by_path.values()) == sorted(keys)
    assert {r[0] for r in table_rows(tusk(*base, "ls").stdout)[1:]} == set(by_path)

    for path, key in by_path.items():
        p = tusk(*base, "--json", "ls", path)
        assert p.returncode == 0 and [o["key"] for o in json.loads(p.stdout)] == [key], \
            (path, show(p))
    p = tusk(*base, "warm", *by_path)
    assert p.returncode == 0, show(p)
    assert re.fullmatch(r"warm w\d+: 6 objects, \d+ B: 6 cached\n", p.stdout), show(p)
    for path in by_path:
        assert f"done {path} " in p.stderr, (path, show(p))
    p = tusk(*base, "verify", "/images/pct%25")
    assert p.returncode == 0, show(p)
    assert p.stderr == "done /images/pct%2541.img 10 B ok\n", show(p)
    for path in by_path:
        p = tusk(*base, "purge", path)
        assert p.returncode == 0 and p.stdout == "purged 1\n", (path, show(p))
    assert cached_paths(t) == []


def test_losing_tuskd_while_a_job_is_polled(rgw, bucket, make_tuskd, make_relay):
    b = bucket()
    put(rgw, b, "slow.img", bytes(range(256)) * (24 * 1024))  # 6 MiB
    relay = make_relay("slow:2097152")  # 2 MiB/s: the warm takes ~3 s
    t = with_token(make_tuskd, b, endpoint=relay.url)
    proc = subprocess.Popen(
        [tusk_cli_path(), "cache", "--admin", t.admin_url, "--token-file",
         t.workdir / "admin.token", "warm", "/images/slow.img"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=clean_env())
    try:
        wait_until(lambda: t.metric("tusk_fills_active") == 1, timeout=10,
                   what="the warm's fill to start")
        t.stop()
        out, err = proc.communicate(timeout=CALL_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    no_sanitizer_report(err)
    assert proc.returncode == 1, (out, err)
    assert out == ""
    assert re.fullmatch(rf"tusk: error: cannot reach tuskd's admin API at "
                        rf"{re.escape(t.admin_url)}: .* \(the warm job w1 goes on in tuskd\)\n",
                        err), err


# ---------------------------------------------------------------- warm and verify


def test_warm_a_catalog_then_every_image_is_a_hit(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    tarballs = setup_images(rgw, b, tmp)
    t = with_token(make_tuskd, b)
    base = ("--admin", t.admin_url, "--token-file", t.workdir / "admin.token")

    p = tusk(*base, "warm", "--catalog", "/catalog.json")
    assert p.returncode == 0, show(p)
    # Not a terminal: one line per finished object on stderr, the summary on stdout.
    for tb in tarballs:
        assert re.search(rf"^done /images/{re.escape(tb.path.name)} \S+ KiB ok$", p.stderr,
                         re.M), show(p)
    assert "\r" not in p.stderr and "[#" not in p.stderr
    m = re.fullmatch(r"warm (w\d+): (\d+) objects, [0-9.]+ (?:KiB|MiB): (\d+) ok\n", p.stdout)
    assert m, show(p)
    job = admin_get(t, f"/warm/{m[1]}")
    assert job["done"] and job["errors"] == 0
    assert int(m[2]) == job["objects_total"] == len(tarballs) + 1  # the catalog and the images
    assert int(m[3]) == sum(o["result"] == "ok" for o in job["objects"])
    t.wait_fills_settled()

    offset = rgw.log_offset()
    for tb in tarballs:
        r = t.get(f"/images/{tb.path.name}")
        assert r.headers["X-Cache"] == "HIT" and r.content == tb.path.read_bytes()
    assert rgw.request_count(offset, bucket=b) == 0, "warmed images need no upstream request"

    # Warming again: already cached, exit 0.
    p = tusk(*base, "warm", f"/images/{tarballs[0].path.name}")
    assert p.returncode == 0, show(p)
    assert re.fullmatch(r"warm w\d+: 1 object, [0-9.]+ \S+: 1 cached\n", p.stdout), show(p)

    # A missing object: exit 1, its path named on stderr, counted in the summary.
    p = tusk(*base, "warm", "/images/missing.tgz", f"/images/{tarballs[1].path.name}")
    assert p.returncode == 1, show(p)
    assert re.search(r"^failed /images/missing\.tgz: \S", p.stderr, re.M), show(p)
    assert re.fullmatch(r"warm w\d+: 2 objects, [0-9.]+ \S+: 1 cached, 1 failed; 1 error\n",
                        p.stdout), show(p)

    # --json: the finished job as the server gave it (the per-object lines still on stderr).
    p = tusk(*base, "--json", "warm", f"/images/{tarballs[1].path.name}")
    assert p.returncode == 0, show(p)
    job = json.loads(p.stdout)
    assert job["done"] is True and job["kind"] == "warm" and job["errors"] == 0
    assert [(o["path"], o["result"]) for o in job["objects"]] == [
        (f"/images/{tarballs[1].path.name}", "cached")]
    assert re.search(r"^done /images/\S+ \S+ KiB cached$", p.stderr, re.M), show(p)

    # --no-wait prints the id only; the job runs on in tuskd.
    p = tusk(*base, "warm", "--no-wait", f"/images/{tarballs[0].path.name}")
    assert p.returncode == 0 and p.stderr == "", show(p)
    assert re.fullmatch(r"w\d+\n", p.stdout), show(p)
    assert wait_job_done(t, "warm", p.stdout.strip())
    p = tusk(*base, "--json", "warm", "--no-wait", "/images/missing.tgz")
    assert p.returncode == 0, show(p)
    started = json.loads(p.stdout)
    assert set(started) == {"id"} and re.fullmatch(r"w\d+", started["id"])
    wait_job_done(t, "warm", started["id"])


def test_verify_finds_a_body_damaged_on_disk(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    tarballs = setup_images(rgw, b, tmp)
    t = with_token(make_tuskd, b)
    base = ("--admin", t.admin_url, "--token-file", t.workdir / "admin.token")
    p = tusk(*base, "warm", "--catalog", "/catalog.json")
    assert p.returncode == 0, show(p)
    t.wait_fills_settled()

    p = tusk(*base, "verify", "/images/")
    assert p.returncode == 0, show(p)
    assert re.fullmatch(r"verify v\d+: 2 objects, [0-9.]+ KiB: 2 ok\n", p.stdout), show(p)
    for tb in tarballs:
        assert re.search(rf"^done /images/{re.escape(tb.path.name)} \S+ KiB ok$", p.stderr,
                         re.M), show(p)

    # Flip one byte of the second image's body file.
    victim = tarballs[1]
    damaged = None
    for f in (t.workdir / "cache" / "objects").rglob("*"):
        if not f.is_file() or f.stat().st_size != victim.size:
            continue
        data = f.read_bytes()
        if hashlib.md5(data).hexdigest() == victim.md5:
            with open(f, "r+b") as fh:
                fh.seek(1000)
                fh.write(bytes([data[1000] ^ 0xFF]))
            damaged = f
    assert damaged is not None, "the body file of the victim was not found"

    p = tusk(*base, "verify")
    assert p.returncode == 1, show(p)
    name = re.escape(f"/images/{victim.path.name}")
    assert re.search(rf"^done {name} \S+ KiB mismatch: MD5 [0-9a-f]{{32}}, the ETag says "
                     rf"{victim.md5}$", p.stderr, re.M), show(p)
    assert re.search(r": \d+ ok, 1 mismatch; 1 error\n$", p.stdout), show(p)
    assert p.stdout.startswith("verify v")

    p = tusk(*base, "--json", "ls")
    assert p.returncode == 0, show(p)
    listed = sorted(o["path"] for o in json.loads(p.stdout))
    assert f"/images/{victim.path.name}" not in listed
    assert f"/images/{tarballs[0].path.name}" in listed
    r = t.get(f"/images/{victim.path.name}")
    assert r.headers["X-Cache"] == "MISS" and r.content == victim.path.read_bytes()

    p = tusk(*base, "verify", "--no-wait")
    assert p.returncode == 0 and re.fullmatch(r"v\d+\n", p.stdout), show(p)
    wait_job_done(t, "verify", p.stdout.strip())


def run_on_a_terminal(args, timeout=CALL_TIMEOUT):
    """Runs `tusk cache ARGS` with stderr on a raw pseudo-terminal (no output processing, so the
    bytes are what tusk wrote); returns (rc, stdout, the terminal's bytes)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        proc = subprocess.Popen([tusk_cli_path(), "cache", *map(str, args)],
                                stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                                env=clean_env())
    finally:
        os.close(slave)
    term = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "tusk did not finish in time"
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                term += chunk
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode()
        rc = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        os.close(master)
    text = term.decode()
    no_sanitizer_report(text)
    return rc, out, text


def test_progress_bar_on_a_terminal(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    tarballs = setup_images(rgw, b, tmp, n=2, size_mb=1)
    t = with_token(make_tuskd, b)
    rc, out, term = run_on_a_terminal(
        ["--admin", t.admin_url, "--token-file", t.workdir / "admin.token", "warm",
         "--catalog", "/catalog.json"])
    assert rc == 0, (out, term)
    assert re.fullmatch(r"warm w\d+: 3 objects, [0-9.]+ MiB: 3 ok\n", out), (out, term)
    assert term.startswith("\r"), repr(term)
    assert term.endswith("\n") and term.count("\n") == 1, repr(term)
    # On a terminal: no line per object (all were ok), only the redrawn bar, last at 100 %.
    assert "done /images/" not in term, repr(term)
    last = term.rsplit("\r", 1)[1]
    assert re.fullmatch(r"warm w\d+ \[#{30}\] 100%  3/3 objects  ([0-9.]+ MiB) / \1 *\n", last), \
        repr(term)
    for frame in term.split("\r")[1:]:
        assert frame.startswith("warm w"), repr(term)

    # A problem is printed on its own line even on a terminal, the bar then redrawn below it.
    rc, out, term = run_on_a_terminal(
        ["--admin", t.admin_url, "--token-file", t.workdir / "admin.token", "warm",
         "/images/missing.tgz", f"/images/{tarballs[0].path.name}"])
    assert rc == 1, (out, term)
    assert re.search(r"\r *\rfailed /images/missing\.tgz: [^\r\n]+\n", term) or \
        term.startswith("failed /images/missing.tgz: "), repr(term)
    assert term.endswith("\n") and re.search(r"\rwarm w\d+ \[#{30}\] 100%  2/2 objects", term), \
        repr(term)


def test_stats_text_and_json(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "s.img", b"s" * 4096)
    t = make_tuskd(b)  # stats is a read: no token needed without a token file
    fill(t, ["/images/s.img"])
    assert t.get("/images/s.img").headers["X-Cache"] == "HIT"

    p = tusk("--admin", t.admin_url, "stats")
    assert p.returncode == 0 and p.stderr == "", show(p)
    lines = p.stdout.splitlines()
    for want in ("objects: 1", "bytes: 4.0 KiB of 1.0 GiB (0.0%)", "fills in flight: 0",
                 "requests: 2", "hits: 1", "misses: 1", "hit ratio: 50.0%",
                 "bytes sent: 8.0 KiB", "upstream bytes: 4.0 KiB", "evictions: 0",
                 "integrity failures: 0", "config reloads: 0 ok, 0 failed"):
        assert want in lines, (want, p.stdout)
    assert all(re.fullmatch(r"[a-z_ ]+: \S.*", line) for line in lines), p.stdout

    p = tusk("--admin", t.admin_url, "stats", "--json")
    assert p.returncode == 0, show(p)
    s = json.loads(p.stdout)
    assert s["hit_ratio"] == 0.5 and s["objects"] == 1 and s["bytes"] == 4096
    assert s["hits"] == 1 and s["misses"] == 1 and s["max_bytes"] == 1 << 30


# ---------------------------------------------------------------- usage errors


def test_usage_errors_exit_2_and_send_nothing(tmp):
    # A listener standing in for tuskd: any connection to it would be a request sent.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        srv.setblocking(False)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        blank = tmp / "blank.token"
        blank.write_text("\n")
        two_lines = tmp / "two-lines.token"
        two_lines.write_text("abc\ndef\n")
        cases = [
            (),
            ("--admin", url),
            ("--admin", url, "frobnicate"),
            ("--admin", url, "stats", "extra"),
            ("--admin", url, "ls", "/a", "/b"),
            ("--admin", url, "purge"),
            ("--admin", url, "purge", "/a", "--prefix", "/b"),
            ("--admin", url, "purge", "images/x"),
            ("--admin", url, "ls", "--limit", "0"),
            ("--admin", url, "ls", "--limit", "x"),
            ("--admin", url, "ls", "images/"),
            ("--admin", url, "warm"),
            ("--admin", url, "warm", "--catalog", "/catalog.json", "/a"),
            ("--admin", url, "verify", "images/"),
            ("--admin", "ftp://127.0.0.1:1", "ls"),
            ("--admin", url, "--token-file", blank, "ls"),
            ("--admin", url, "--token-file", two_lines, "stats"),
        ]
        for args in cases:
            p = tusk(*args)
            assert p.returncode == 2, (args, show(p))
            assert p.stdout == "", (args, show(p))
            assert p.stderr.strip(), (args, show(p))
            assert "abc" not in p.stderr and "def" not in p.stderr, (args, show(p))
            try:
                conn, _ = srv.accept()
                conn.close()
                raise AssertionError(f"tusk cache {args} connected to the admin URL")
            except BlockingIOError:
                pass
        # The same listener does get a connection from a valid command (the check above can
        # fail): accept it, close it unanswered, and tusk reports the failure.
        proc = subprocess.Popen([tusk_cli_path(), "cache", "--admin", url, "stats"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=clean_env())
        try:
            srv.setblocking(True)
            srv.settimeout(10)
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                raise AssertionError("a valid command did not connect") from None
            conn.close()
            _, err = proc.communicate(timeout=CALL_TIMEOUT)
            assert proc.returncode == 1, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_empty_token_file_is_a_usage_error(tmp):
    """cache_cmd.h: read_admin_token's errors are those of parse_token, which calls an empty
    file a usage error naming it (exit 2), like a file holding only a newline."""
    empty = tmp / "empty.token"
    empty.write_text("")
    p = tusk("--admin", f"http://127.0.0.1:{closed_port()}", "--token-file", empty, "ls")
    assert (p.returncode, p.stdout, p.stderr) == (
        2, "", f"tusk: error: token file {empty} is empty\n"), show(p)
    # A token file is read bounded: /dev/zero is refused, not read forever.
    p = tusk("--admin", f"http://127.0.0.1:{closed_port()}", "--token-file", "/dev/zero", "ls")
    assert p.returncode == 2 and "longer than 4 KiB" in p.stderr, show(p)
