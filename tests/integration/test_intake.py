"""Endorsed image-list subscriptions and the worker, against real things: a CA and an endorser
made with the openssl CLI, lists signed with `openssl smime`, images served by tuskd from
radosgw, the EC2 test endpoint for registration, qemu-img for the conversion, and the embedded
queue or a real RabbitMQ server. Shows: a signed list is accepted and each image registered
once (a qcow2 image's bundle unbundles to its raw bytes); a sync after one image changed
enqueues exactly that one; tampered, expired, unsigned and wrongly signed lists are refused with
nothing enqueued; an event whose download fails stays queued, then is parked.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from test_installer_bundle import run_tusk
from test_installer_cloud import (  # noqa: F401  (fixtures)
    cloud_env,
    download_and_unbundle,
    ec2,
    keyfiles,
)

CA_DN = "/C=DE/O=Tusk Test/CN=Test CA"
ENDORSER_DN = "/C=DE/O=Tusk Test/CN=Endorser"


def openssl(*args, cwd=None):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=cwd)


def make_ca(d: Path, name: str, dn: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-subj", dn, "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def make_endorser(d: Path, name: str, dn: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, csr, cert, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                           d / f"{name}.ext")
    ext.write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", dn)
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca", CA_DN)
    ca_dir = d / "cas"
    ca_dir.mkdir()
    (ca_dir / "test-ca.pem").write_bytes(ca[1].read_bytes())
    other_ca = make_ca(d, "other-ca", "/C=DE/O=Elsewhere/CN=Other CA")
    return {
        "ca_dir": ca_dir,
        "endorser": make_endorser(d, "endorser", ENDORSER_DN, ca),
        "impostor": make_endorser(d, "impostor", "/C=DE/O=Tusk Test/CN=Impostor", ca),
        "stranger": make_endorser(d, "stranger", ENDORSER_DN, other_ca),
        "dir": d,
    }


def rfc3339(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_entry(identifier: str, uri: str, data: bytes, fmt: str) -> dict:
    return {"hv:image": {"dc:identifier": identifier, "hv:uri": uri, "hv:size": len(data),
                         "sl:checksum:sha512": hashlib.sha512(data).hexdigest(),
                         "hv:format": fmt, "dc:title": f"Test image {identifier}",
                         "sl:arch": "x86_64", "hv:version": "1"}}


def image_list(images: list[dict], expires=timedelta(days=1), dn=ENDORSER_DN) -> bytes:
    doc = {"hv:imagelist": {
        "dc:identifier": "5e4ec4b5-test-list", "hv:version": "1",
        "dc:title": "tusk test list",
        "dc:date:created": rfc3339(timedelta(hours=-1)),
        "dc:date:expires": rfc3339(expires),
        "hv:endorser": {"hv:x509": {"hv:dn": dn, "hv:ca": CA_DN, "dc:creator": "Tusk Test",
                                    "hv:email": "endorser@example.org"}},
        "hv:images": images}}
    return json.dumps(doc, indent=1).encode()


def sign(pki, content: bytes, signer="endorser") -> bytes:
    d = pki["dir"]
    src, out = d / "list.json", d / "list.smime"
    src.write_bytes(content)
    key, cert = pki[signer]
    openssl("smime", "-sign", "-in", src, "-signer", cert, "-inkey", key, "-out", out)
    return out.read_bytes()


@pytest.fixture
def site(rgw, bucket, make_tuskd, cloud_env, pki, tmp):
    """A bucket of images served by tuskd, a target bucket, and the CLI environment."""
    src = bucket()
    target = bucket()
    # Lists are revalidated on every fetch (ttl 0), images cached: as a site would set it.
    t = make_tuskd(src, routes=[
        {"prefix": "/lists/", "upstream": "rgw", "bucket": src, "ttl": "0s"},
        {"prefix": "/images/", "upstream": "rgw", "bucket": src, "ttl": "1h"}])
    s3 = rgw.s3("tusk")

    def put(key: str, data: bytes) -> str:
        s3.put_object(Bucket=src, Key=key, Body=data)
        return f"{t.url}/{'lists' if key.endswith('.smime') else 'images'}/{key}"

    def tusk(*args, check=True, env=None):
        return run_tusk(*args, env=dict(cloud_env, **(env or {})), check=check, timeout=300)

    def subscribe(url, dn=ENDORSER_DN):
        tusk("subscribe", "add", url, "--ca-dir", pki["ca_dir"], "--endorser-dn", dn)

    return dict(put=put, tusk=tusk, target=target, tuskd=t, subscribe=subscribe, src=src)


def raw_image(seed: int, mb: int = 3) -> bytes:
    rnd = random.Random(seed)
    # Sparse-ish: qcow2 stores only the written clusters, so the conversion is real work.
    blocks = [rnd.randbytes(4096) if i % 3 == 0 else bytes(4096) for i in range(mb * 256)]
    return b"".join(blocks)


def to_qcow2(tmp: Path, raw: bytes) -> bytes:
    r, q = tmp / "in.raw", tmp / "out.qcow2"
    r.write_bytes(raw)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", r, q], check=True)
    return q.read_bytes()


def enqueued(stdout: str) -> list[tuple[str, str]]:
    return re.findall(r"^enqueued (\S+) \((new|changed)\) from ", stdout, re.M)


def test_signed_list_registers_each_image_once_and_a_change_enqueues_just_it(
        site, pki, ec2, rgw, keyfiles, tmp):
    raw_a = raw_image(1)
    raw_b = raw_image(2)
    qcow_b = to_qcow2(tmp, raw_b)
    images = [image_entry("img-raw", site["put"]("a.img", raw_a), raw_a, "raw"),
              image_entry("img-qcow", site["put"]("b.qcow2", qcow_b), qcow_b, "qcow2")]
    list_url = site["put"]("list.smime", sign(pki, image_list(images)))
    site["subscribe"](list_url)

    ls = site["tusk"]("subscribe", "ls", "--json")
    (entry,) = json.loads(ls.stdout)
    assert entry["url"] == list_url and entry["token"] is False

    p = site["tusk"]("subscribe", "sync")
    assert enqueued(p.stdout) == [("img-raw", "new"), ("img-qcow", "new")]
    q = site["tusk"]("queue", "ls")
    assert "img-raw" in q.stdout and "img-qcow" in q.stdout
    assert q.stdout.index("img-raw") < q.stdout.index("img-qcow")

    emis = {}
    for _ in range(2):
        w = site["tusk"]("worker", "--acl", "private", "--once", "--no-progress", "-b", site["target"])
        m = re.search(r"^registered (\S+): (emi-[0-9A-Fa-f]{8})$", w.stdout, re.M)
        assert m, w.stdout + w.stderr
        emis[m.group(1)] = m.group(2)
    assert set(emis) == {"img-raw", "img-qcow"}
    calls = ec2.registered()
    locations = sorted(c.params["ImageLocation"] for c in calls)
    assert locations == [f"{site['target']}/imagelist-img-qcow.manifest.xml",
                         f"{site['target']}/imagelist-img-raw.manifest.xml"]
    assert all(c.params["Architecture"] == "x86_64" for c in calls)
    # The qcow2 image was converted: its bundle holds the raw bytes.
    assert download_and_unbundle(rgw, site["target"], "imagelist-img-qcow.manifest.xml",
                                 keyfiles, tmp) == raw_b
    assert download_and_unbundle(rgw, site["target"], "imagelist-img-raw.manifest.xml",
                                 keyfiles, tmp) == raw_a
    idle = site["tusk"]("worker", "--acl", "private", "--once", "-b", site["target"])
    assert "nothing is queued" in idle.stderr

    # Nothing changed: nothing enqueued.
    again = site["tusk"]("subscribe", "sync")
    assert enqueued(again.stdout) == []

    # One image changes (a new version at a new URL): exactly that one is enqueued, and the
    # worker registers it anew while the other registration stays.
    raw_a2 = raw_image(3)
    images[0] = image_entry("img-raw", site["put"]("a-v2.img", raw_a2), raw_a2, "raw")
    site["put"]("list.smime", sign(pki, image_list(images)))
    changed = site["tusk"]("subscribe", "sync")
    assert enqueued(changed.stdout) == [("img-raw", "changed")], changed.stdout + changed.stderr
    w = site["tusk"]("worker", "--acl", "private", "--once", "--no-progress", "-b", site["target"])
    m = re.search(r"^registered img-raw: (emi-[0-9A-Fa-f]{8})$", w.stdout, re.M)
    assert m and m.group(1) != emis["img-raw"], w.stdout + w.stderr
    records = json.loads(site["tusk"]("images", "--format", "json").stdout)
    by_emi = {r["emi"]: r for r in records}
    assert m.group(1) in by_emi and emis["img-qcow"] in by_emi
    # The earlier registration stays, under a record of its own (images remove reaches it).
    assert emis["img-raw"] in by_emi and len(records) == 3
    assert len(ec2.registered()) == 3


def test_refused_lists_enqueue_nothing(site, pki):
    data = raw_image(4, mb=1)
    images = [image_entry("img-x", site["put"]("x.img", data), data, "raw")]
    good = sign(pki, image_list(images))

    cases = {
        "tampered": (good.replace(b"img-x", b"img-y"), ENDORSER_DN, "signature"),
        "expired": (sign(pki, image_list(images, expires=timedelta(hours=-1))), ENDORSER_DN,
                    "expired"),
        "unsigned": (image_list(images), ENDORSER_DN, "unsigned"),
        "untrusted CA": (sign(pki, image_list(images), signer="stranger"), ENDORSER_DN,
                         "is not chained to a CA in"),
        "other endorser": (sign(pki, image_list(images), signer="impostor"), ENDORSER_DN,
                           "Impostor"),
    }
    for name, (body, dn, reason) in cases.items():
        url = site["put"](f"list-{name.replace(' ', '-')}.smime", body)
        site["subscribe"](url, dn)
        p = site["tusk"]("subscribe", "sync", check=False)
        assert p.returncode == 1, name
        assert url in p.stderr and "nothing enqueued" in p.stderr, (name, p.stderr)
        assert reason in p.stderr, (name, p.stderr)
        assert enqueued(p.stdout) == [], name
        site["tusk"]("subscribe", "remove", url)
    assert "img-x" not in site["tusk"]("queue", "ls").stdout
    # And the good list is accepted by the same subscription settings.
    url = site["put"]("list-good.smime", good)
    site["subscribe"](url)
    assert enqueued(site["tusk"]("subscribe", "sync").stdout) == [("img-x", "new")]


def test_a_failed_download_stays_queued_then_is_parked(site, pki, ec2):
    data = raw_image(5, mb=1)
    entry = image_entry("img-gone", site["tuskd"].url + "/images/never-uploaded.img", data, "raw")
    url = site["put"]("list.smime", sign(pki, image_list([entry])))
    site["subscribe"](url)
    assert enqueued(site["tusk"]("subscribe", "sync").stdout) == [("img-gone", "new")]

    w = site["tusk"]("worker", "--acl", "private", "--once", "--backoff", "0", "--max-attempts", "2", "-b",
                     site["target"], check=False)
    assert w.returncode == 1
    assert "img-gone failed (attempt 1 of 2)" in w.stderr and "404" in w.stderr, w.stderr
    q = site["tusk"]("queue", "ls")
    assert "img-gone" in q.stdout and "parked" not in q.stdout, q.stdout

    w = site["tusk"]("worker", "--acl", "private", "--once", "--backoff", "0", "--max-attempts", "2", "-b",
                     site["target"], check=False)
    assert w.returncode == 1 and "parked after 2 attempts" in w.stderr, w.stderr
    q = site["tusk"]("queue", "ls")
    assert "img-gone" in q.stdout and "parked" in q.stdout, q.stdout
    assert ec2.registered() == []
    idle = site["tusk"]("worker", "--acl", "private", "--once", "-b", site["target"])
    assert "nothing is queued" in idle.stderr  # parked events are not delivered again


def test_worker_takes_from_rabbitmq(site, pki, ec2, rabbitmq):
    data = raw_image(6, mb=1)
    entry = image_entry("img-amqp", site["put"]("amqp.img", data), data, "raw")
    url = site["put"]("list.smime", sign(pki, image_list([entry])))
    site["subscribe"](url)
    env = {"TUSK_QUEUE": rabbitmq.url}
    site["tusk"]("queue", "drain", env=env)
    assert enqueued(site["tusk"]("subscribe", "sync", env=env).stdout) == [("img-amqp", "new")]
    assert "img-amqp" in site["tusk"]("queue", "ls", env=env).stdout
    assert "img-amqp" not in site["tusk"]("queue", "ls").stdout  # not the embedded queue
    w = site["tusk"]("worker", "--acl", "private", "--once", "--no-progress", "-b", site["target"], env=env)
    assert re.search(r"^registered img-amqp: emi-[0-9A-Fa-f]{8}$", w.stdout, re.M), w.stderr
    assert "img-amqp" not in site["tusk"]("queue", "ls", env=env).stdout
    assert len(ec2.registered()) == 1


def test_images_remove_deregisters_deletes_the_bundle_and_forgets(site, pki, ec2, rgw):
    data = raw_image(7, mb=1)
    entry = image_entry("img-rm", site["put"]("rm.img", data), data, "raw")
    site["subscribe"](site["put"]("list.smime", sign(pki, image_list([entry]))))
    site["tusk"]("subscribe", "sync")
    w = site["tusk"]("worker", "--acl", "private", "--once", "--no-progress", "-b",
                     site["target"])
    emi = re.search(r"^registered img-rm: (emi-\w{8})$", w.stdout, re.M).group(1)
    s3 = rgw.s3("tusk")
    keys = lambda: sorted(o["Key"] for o in  # noqa: E731
                          s3.list_objects(Bucket=site["target"]).get("Contents", []))
    assert keys() == ["imagelist-img-rm.manifest.xml", "imagelist-img-rm.part.00"]

    other = site["tusk"]("images", "remove", "--guid", "some-other-site")
    assert "0 images deregistered, 0 objects deleted, 0 records removed" in other.stdout
    assert ec2.images[emi]["state"] == "available"

    p = site["tusk"]("images", "remove", "--all")
    assert f"deregistered {emi}" in p.stdout
    assert "1 images deregistered, 2 objects deleted, 1 records removed" in p.stdout, p.stdout
    assert ec2.images[emi]["state"] == "deregistered"
    assert keys() == []
    assert json.loads(site["tusk"]("images", "--format", "json").stdout) == []
    bad = site["tusk"]("images", "remove", check=False)
    assert bad.returncode == 2 and "exactly one of --guid G and --all" in bad.stderr


def test_an_image_larger_than_its_list_says_is_cut_off(site, pki, ec2):
    data = raw_image(8, mb=2)
    entry = image_entry("img-big", site["put"]("big.img", data), data, "raw")
    entry["hv:image"]["hv:size"] = len(data) // 2  # the list says less than the server sends
    site["subscribe"](site["put"]("list.smime", sign(pki, image_list([entry]))))
    assert enqueued(site["tusk"]("subscribe", "sync").stdout) == [("img-big", "new")]
    w = site["tusk"]("worker", "--acl", "private", "--once", "--no-progress", "-b",
                     site["target"], check=False)
    assert w.returncode == 1
    assert f"larger than the {len(data) // 2} bytes allowed" in w.stderr, w.stderr
    assert ec2.registered() == []
