"""`tusk serve`, the registration service, against real services: radosgw for the uploads, tuskd
serving the images, the test EC2 endpoint (ec2_endpoint.py) checking every RegisterImage.
Covers the HTTP side (token, body limit, bad JSON), test mode (stable ids, no network, records
that survive a restart), one registration for 10 concurrent calls, the answer without any
transfer, 409 for other content, a single disk image with eki/eri, the download space, and a
kill -9 mid-registration followed by a retried POST that leaves no stray bundle.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import harness
from test_installer_bundle import tusk_cli_path
from test_installer_cloud import bucket_keys, cloud_env, ec2, keyfiles  # noqa: F401 (fixtures)

TOKEN = "serve-token-" + "x" * 20


class Service:
    """One `tusk serve` process on a free loopback port; its stderr goes to a file."""

    def __init__(self, tmp: Path, env: dict, *args: str, name: str = "serve"):
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        token = tmp / "token"
        token.write_text(TOKEN + "\n")
        self.log_path = tmp / f"{name}.log"
        self.cmd = [tusk_cli_path(), "serve", "--listen", f"127.0.0.1:{self.port}",
                    "--token-file", str(token), *args]
        self.env = dict(os.environ, **env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=log)
        harness.wait_until(self._up, 15, what="tusk serve to listen")
        return self

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log()
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, body, token=TOKEN, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(self.url + "/images", data=data, headers=headers, timeout=30, **kw)

    def get(self, guid: str, token=TOKEN) -> requests.Response:
        return requests.get(f"{self.url}/images/{guid}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def wait_done(self, guid: str, timeout: float = 60) -> dict:
        last = {}

        def finished():
            nonlocal last
            last = self.get(guid).json()
            return last["state"] in ("done", "failed")

        harness.wait_until(finished, timeout, interval=0.1, what=f"{guid} to finish")
        return last


@pytest.fixture
def services(tmp):
    started: list[Service] = []

    def make(env: dict, *args: str, name: str = "serve") -> Service:
        s = Service(tmp, env, *args, name=f"{name}{len(started)}").start()
        started.append(s)
        return s

    yield make
    for s in started:
        rc = s.stop()
        log = s.log()
        assert rc in (0, -9), f"tusk serve exited {rc}:\n{log[-3000:]}"
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert marker not in log, log
        assert TOKEN not in log, "the token is never logged"


@pytest.fixture
def store(rgw, bucket, make_tuskd, tmp):
    """tuskd serving an eustore tarball and a raw disk image from a radosgw bucket."""
    b = bucket("store")
    tb = harness.make_image_tarball(tmp / "store" / "demo-image.tgz", "demo-image",
                                    single_kernel=True, size_mb=3)
    disk = random.Random(7).randbytes(2 << 20)
    s3 = rgw.s3("tusk")
    s3.put_object(Bucket=b, Key="demo-image.tgz", Body=tb.path.read_bytes())
    s3.put_object(Bucket=b, Key="disk.img", Body=disk)
    tuskd = make_tuskd(b)
    s3.put_object(Bucket=b, Key="tarball-without-extension", Body=tb.path.read_bytes())
    return dict(tuskd=tuskd, tarball=tuskd.url + "/images/demo-image.tgz",
                tarball_noext=tuskd.url + "/images/tarball-without-extension",
                tarball_size=tb.path.stat().st_size,
                disk=tuskd.url + "/images/disk.img", disk_bytes=disk)


# -- the HTTP side and test mode (no network) ---------------------------------------------------


def test_token_limits_and_test_mode(services, tmp):
    env = {"TUSK_REGISTRY": str(tmp / "registry")}
    # No cloud settings at all: test mode needs none and touches no network.
    svc = services(env, "--test-mode")
    body = {"url": "http://images.invalid/a.img", "guid": "site:guid-1"}

    r = svc.post(body, token=None)
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
    assert svc.post(body, token="wrong").status_code == 403
    assert svc.get("site:guid-1", token="wrong").status_code == 403
    r = svc.post(b"x" * (70 << 10))
    assert r.status_code == 413
    for bad, what in [(b"{not json", "not JSON"), (b"[]", "JSON object"),
                      ({"url": "ftp://h/x", "guid": "g"}, "http://"),
                      ({"url": "http://h/x", "guid": "a/b"}, "guid"),
                      ({"url": "http://h/x", "guid": "g", "size": -1}, "size"),
                      ({"url": "http://h/x", "guid": "g", "extra": 1}, "unknown key")]:
        r = svc.post(bad)
        assert r.status_code == 400 and what in r.json()["error"], (bad, r.text)
    assert svc.get("no-such-guid").status_code == 404
    assert requests.get(svc.url + "/elsewhere", timeout=5).status_code == 404
    # An over-long head is refused, and the service goes on.
    r = requests.get(svc.url + "/images/x", headers={"X-Big": "y" * (20 << 10)}, timeout=5)
    assert r.status_code in (400, 413, 431)

    first = svc.post(body)
    assert first.status_code == 202 and first.headers["Location"] == "/images/site:guid-1"
    done = svc.wait_done("site:guid-1", 10)
    assert done["state"] == "done"
    assert done["emi"].startswith("emi-") and done["eki"].startswith("eki-")
    again = svc.post(body)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("emi", "eki", "eri")} == {
        k: done[k] for k in ("emi", "eki", "eri")}
    conflict = svc.post(dict(body, url="http://images.invalid/b.img"))
    assert conflict.status_code == 409
    assert conflict.json()["registered_url"] == "http://images.invalid/a.img"
    assert "http://images.invalid/a.img" in conflict.json()["error"]
    assert svc.post(dict(body, sha512="ab" * 64)).status_code == 409, "other checksum"
    given = svc.post({"url": "http://images.invalid/d.img", "guid": "g2", "eki": "eki-0000000a",
                      "eri": "eri-0000000b"})
    assert given.status_code == 202
    assert svc.wait_done("g2", 10)["eki"] == "eki-0000000a"
    # Credentials in a URL (userinfo, a presigned query) never reach the log.
    assert svc.post({"url": "http://user:pw-secret@images.invalid/c.img?sig=q-secret",
                     "guid": "g3"}).status_code == 202
    assert svc.wait_done("g3", 10)["state"] == "done"
    assert "g3: queued http://***@images.invalid/c.img?***" in svc.log()
    assert "pw-secret" not in svc.log() and "q-secret" not in svc.log()

    # Recorded: a restarted service (another registry client) answers the same ids.
    assert svc.stop() == 0
    assert "SIGTERM" in svc.log() and "stopped" in svc.log()
    svc2 = services(env, "--test-mode")
    assert svc2.get("site:guid-1").json()["emi"] == done["emi"]
    assert svc2.post(body).json()["emi"] == done["emi"]
    listed = json.loads(subprocess.run([tusk_cli_path(), "images", "--format", "json"],
                                       env=dict(os.environ, **env), capture_output=True,
                                       text=True, check=True).stdout)
    assert {r["emi"] for r in listed} >= {done["emi"]}


def test_connection_limit(services, tmp):
    svc = services({"TUSK_REGISTRY": str(tmp / "registry")}, "--test-mode",
                   "--max-connections", "2")
    held = [requests.Session() for _ in range(2)]
    for s in held:  # keep-alive: both stay open
        assert s.get(svc.url + "/healthz", timeout=5).status_code == 200
    third = requests.get(svc.url + "/healthz", timeout=5)
    assert third.status_code == 503 and "too many connections" in third.json()["error"]
    held[0].close()
    harness.wait_until(
        lambda: requests.get(svc.url + "/healthz", timeout=5).status_code == 200, 5,
        what="a closed connection to free its place")
    held[1].close()


def test_config_file_and_its_errors(services, tmp):
    env = {"TUSK_REGISTRY": str(tmp / "registry")}
    conf = tmp / "tusk-serve.yaml"
    conf.write_text("serve:\n  test_mode: true\n  parallel: 1\n  download_space: 1G\n")
    # test_mode comes from the file: no bucket or credentials are needed.
    svc = services(env, "--config", str(conf))
    assert svc.post({"url": "http://images.invalid/a.img", "guid": "cfg"}).status_code == 202
    assert svc.wait_done("cfg", 10)["emi"].startswith("emi-")
    conf.write_text("serve:\n  paralel: 2\n")
    p = subprocess.run([tusk_cli_path(), "serve", "--config", str(conf), "--listen",
                        "127.0.0.1:1", "--token-file", str(tmp / "token")],
                       env=dict(os.environ, **env), capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and f"{conf}:2:3: unknown key serve.paralel" in p.stderr, p.stderr


# -- real registrations ---------------------------------------------------------------------------


def test_concurrent_calls_register_once_then_answer_without_transfer(
        rgw, bucket, ec2, cloud_env, store, services, tmp):
    b = bucket()
    svc = services(cloud_env, "-b", b, "--acl", "private", "--parallel", "2")
    body = {"url": store["tarball"], "guid": "site-a:demo", "architecture": "x86_64"}
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: svc.post(body), range(10)))
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    assert {a.json()["guid"] for a in answers} == {"site-a:demo"}
    done = svc.wait_done("site-a:demo", 60)
    assert done["state"] == "done", (done, svc.log()[-3000:])
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        views = list(pool.map(lambda _: svc.get("site-a:demo").json(), range(10)))
    assert all(v == done for v in views)
    machine = [c for c in ec2.registered() if c.params.get("KernelId")]
    assert len(machine) == 1 and machine[0].image_id == done["emi"]
    assert len(ec2.registered()) == 3, "kernel, ramdisk, machine: once"
    assert svc.log().count("site-a:demo: queued") == 1

    # Again: 200 at once, same ids, nothing transferred (radosgw sees no request).
    keys = bucket_keys(rgw, b)
    offset = rgw.log_offset()
    again = svc.post(body)
    assert again.status_code == 200 and again.json() == done
    assert rgw.requests(offset) == []
    assert bucket_keys(rgw, b) == keys and len(ec2.registered()) == 3

    # Another URL for the GUID: 409 naming the registered one.
    other = svc.post(dict(body, url=store["disk"]))
    assert other.status_code == 409 and other.json()["registered_url"] == store["tarball"]

    # A single raw disk image with the kernel and ramdisk given.
    disk = {"url": store["disk"], "guid": "site-a:disk", "eki": done["eki"], "eri": done["eri"],
            "size": len(store["disk_bytes"])}
    assert svc.post(disk).status_code == 202
    d = svc.wait_done("site-a:disk", 60)
    assert d["state"] == "done", (d, svc.log()[-3000:])
    m = ec2.registered()[-1].params
    assert d["emi"] not in (done["emi"], "") and m["KernelId"] == done["eki"]
    assert m["RamdiskId"] == done["eri"]

    # A download that cannot fit the download space fails clearly, before any transfer.
    huge = {"url": store["disk"], "guid": "site-a:huge", "size": 1 << 50}
    assert svc.post(huge).status_code == 202
    h = svc.wait_done("site-a:huge", 20)
    assert h["state"] == "failed" and "does not fit in the download space" in h["error"], h


def test_progress_and_download_space_removes_the_oldest_finished_download(
        rgw, bucket, make_relay, ec2, cloud_env, store, services, tmp):
    b = bucket()
    dl = tmp / "downloads"
    svc = services(cloud_env, "-b", b, "--acl", "private", "--download-dir", str(dl),
                   "--download-space", "4M")
    slow = make_relay("slow:1000000", upstream=store["tuskd"].url)  # about 2 s for the tarball
    first = {"url": slow.url + "/images/demo-image.tgz", "guid": "space-1",
             "architecture": "x86_64"}
    svc.post(first)
    seen = []

    def downloading():
        v = svc.get("space-1").json()
        seen.append(v)
        return v["state"] == "downloading" and 0 < v["bytes_done"] < v["bytes_total"]

    harness.wait_until(downloading, 20, what="progress while downloading")
    assert seen[-1]["bytes_total"] == store["tarball_size"]
    one = svc.wait_done("space-1", 60)
    assert one["state"] == "done", (one, svc.log()[-3000:])
    kept = [p for p in dl.iterdir()]
    assert len(kept) == 1 and any(kept[0].iterdir()), "the finished download is kept"
    svc.post({"url": store["disk"], "guid": "space-2", "eki": one["eki"], "eri": one["eri"]})
    two = svc.wait_done("space-2", 60)
    assert two["state"] == "done", (two, svc.log()[-3000:])
    left = [p.name for p in dl.iterdir()]
    assert kept[0].name not in left and len(left) == 1, left
    assert "removed the finished download" in svc.log()


def test_kill_9_mid_registration_then_retry_leaves_no_stray_bundle(
        rgw, bucket, make_relay, ec2, cloud_env, store, services, tmp):
    b = bucket()
    slow = make_relay("slow:100000000:700")  # each S3 request waits 0.7 s
    svc = services(dict(cloud_env, S3_URL=slow.url), "-b", b, "--acl", "private")
    body = {"url": store["tarball"], "guid": "crash-1", "architecture": "x86_64"}
    assert svc.post(body).status_code == 202
    # Killed while the ramdisk is being uploaded: the kernel is registered by then.
    harness.wait_until(lambda: any("ramdisk.part.00" in r.target for r in slow.requests), 60,
                       what="the ramdisk upload to start")
    assert svc.get("crash-1").json()["state"] in ("uploading", "registering", "bundling")
    svc.stop(signal.SIGKILL)
    assert len(ec2.registered()) == 1

    svc2 = services(cloud_env, "-b", b, "--acl", "private")
    # The restart alone cleans up: only the registered kernel's bundle is left, before any POST.
    assert "crash-1: cleaned up an interrupted registration" in svc2.log(), svc2.log()[-3000:]
    kernel = [c.params["Name"] for c in ec2.registered()]
    assert bucket_keys(rgw, b) == sorted(f"{n}.{s}" for n in kernel
                                         for s in ("manifest.xml", "part.00"))
    interrupted = svc2.get("crash-1").json()
    assert interrupted["state"] == "failed" and "interrupted" in interrupted["error"]
    assert svc2.post(body).status_code == 202
    done = svc2.wait_done("crash-1", 60)
    assert done["state"] == "done", (done, svc2.log()[-3000:])
    assert "Cleaning up an interrupted install" in svc2.log()  # the failed record resumed
    # The download finished before the crash: the retry finds it whole and fetches nothing more.
    size = store["tarball_size"]
    assert f"Downloaded {size} bytes (resumed at byte {size})" in svc2.log(), svc2.log()[-3000:]
    names = [c.params["Name"] for c in ec2.registered()]
    assert names == ["eustore-demo-image-kernel", "eustore-demo-image-ramdisk",
                     "eustore-demo-image"], names
    # Only the registered images' bundles are left.
    assert bucket_keys(rgw, b) == sorted(f"{n}.{s}" for n in names
                                         for s in ("manifest.xml", "part.00"))
    assert svc2.post(body).json()["emi"] == done["emi"]


@pytest.mark.parametrize("drain", ["60", "0"])
def test_sigterm_lets_a_running_registration_finish_up_to_a_bound(
        rgw, bucket, make_relay, ec2, cloud_env, store, services, tmp, drain):
    b = bucket()
    slow = make_relay("slow:100000000:250")
    svc = services(dict(cloud_env, S3_URL=slow.url), "-b", b, "--acl", "private",
                   "--drain-timeout", drain)
    assert svc.post({"url": store["tarball"], "guid": "term-1", "architecture": "x86_64"}).ok
    harness.wait_until(lambda: any("part.00" in r.target for r in slow.requests), 60,
                       what="the first upload")
    svc.proc.send_signal(signal.SIGTERM)
    harness.wait_until(lambda: "stopped accepting" in svc.log(), 5, what="the stop to begin")
    with pytest.raises(requests.ConnectionError):
        requests.get(svc.url + "/healthz", timeout=2)
    assert svc.proc.wait(60) == 0
    if drain == "60":
        assert "term-1: done emi-" in svc.log()
        assert len(ec2.registered()) == 3
    else:
        assert "still running after the drain bound" in svc.log()
        assert "term-1: done" not in svc.log()
        after = services(cloud_env, "-b", b, "--acl", "private").get("term-1").json()
        assert after["state"] == "failed" and "interrupted" in after["error"]


def test_failures_never_show_credentials_and_test_mode_never_answers_for_real(
        ec2, cloud_env, services, tmp, bucket):
    b = bucket()
    # Test mode records a GUID; the real service on the same registry does not take its ids.
    svc = services(cloud_env, "--test-mode", "-b", b)
    body = {"url": "http://user:pw-secret@127.0.0.1:9/a.img?X-Amz-Signature=q-secret",
            "guid": "g-secret"}
    assert svc.post(body).status_code in (200, 202)
    assert svc.wait_done("g-secret", 30)["state"] == "done"
    # A 409 names the registered URL without its secrets.
    other = svc.post(dict(body, url="http://127.0.0.1:9/other.img"))
    assert other.status_code == 409, other.text
    assert "127.0.0.1:9/a.img" in other.text
    assert "pw-secret" not in other.text and "q-secret" not in other.text
    svc.stop()
    real = services(cloud_env, "-b", b, "--acl", "private")
    r = real.post(body)
    assert r.status_code == 202, r.text  # not answered from the test-mode record
    failed = real.wait_done("g-secret", 60)
    assert failed["state"] == "failed" and "127.0.0.1:9" in failed["error"], failed
    for secret in ("pw-secret", "q-secret"):
        assert secret not in failed["error"], failed
        assert secret not in real.log(), real.log()[-2000:]


def test_the_default_kernel_is_for_disk_images_only(bucket, ec2, cloud_env, store, services):
    b = bucket()
    svc = services(cloud_env, "-b", b, "--acl", "private", "--kernel", "eki-DEADBEEF")
    # A tarball (told by its bytes: the URL has no extension) boots with its own kernel.
    assert svc.post({"url": store["tarball_noext"], "guid": "tb-1",
                     "architecture": "x86_64"}).status_code == 202
    done = svc.wait_done("tb-1", 60)
    assert done["state"] == "done", (done, svc.log()[-2000:])
    machine = [c for c in ec2.registered() if c.params["Name"].endswith("tarball-without-extension")]
    assert len(machine) == 1 and machine[0].params["KernelId"] == done["eki"] != "eki-DEADBEEF"
