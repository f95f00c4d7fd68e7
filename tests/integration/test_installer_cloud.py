"""`tusk install-image` against real services: radosgw for the upload (it checks SigV2/SigV4 and
ACLs), tuskd for the download, and the test EC2 endpoint of ec2_endpoint.py, which checks every
RegisterImage signature independently. Covers the upload's requests and ACL header (through the
recording relay), registration order and errors, the end-to-end install from the demo catalog,
the registry (second run without any transfer, concurrent installs, crash cleanup) and unsafe
tarballs.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import tarfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import botocore.exceptions
import pytest

import harness
from ec2_endpoint import Ec2Endpoint
from test_installer_bundle import make_keys, openssl_unbundle, run_tusk, tusk_cli_path

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def keyfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("cloud-keys")
    user_key, user_cert = make_keys(d, "user")
    cloud_key, cloud_cert = make_keys(d, "cloud")
    return dict(user_key=user_key, user_cert=user_cert, cloud_key=cloud_key, cloud_cert=cloud_cert)


@pytest.fixture
def ec2(rgw):
    ep = Ec2Endpoint(rgw.access_key, rgw.secret_key, s3=rgw.s3("tusk")).start()
    yield ep
    ep.stop()


@pytest.fixture
def cloud_env(rgw, ec2, keyfiles, tmp):
    """The euca2ools environment for radosgw + the EC2 endpoint, a private registry and work
    folder under this test's tmp."""
    (tmp / "work").mkdir()
    return {
        "EC2_URL": ec2.url,
        "S3_URL": rgw.endpoint,
        "EC2_ACCESS_KEY": rgw.access_key,
        "EC2_SECRET_KEY": rgw.secret_key,
        "EC2_CERT": str(keyfiles["user_cert"]),
        "EC2_PRIVATE_KEY": str(keyfiles["user_key"]),
        "EUCALYPTUS_CERT": str(keyfiles["cloud_cert"]),
        "EC2_USER_ID": ACCOUNT,
        "TUSK_REGISTRY": str(tmp / "registry"),
        "TMPDIR": str(tmp / "work"),
    }


@pytest.fixture
def tarball(tmp):
    return harness.make_image_tarball(tmp / "tarballs" / "demo-image.tgz", "demo-image",
                                      single_kernel=True, size_mb=3)


def install(env, *args, check=True):
    return run_tusk("install-image", "--no-progress", *args, env=env, check=check)


def ids_of(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def bucket_keys(rgw, bucket) -> list[str]:
    s3 = rgw.s3("tusk")
    return sorted(o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", []))


def member_bytes(tb: harness.Tarball, suffix: str) -> bytes:
    with tarfile.open(tb.path) as t:
        for m in t.getmembers():
            if m.isfile() and os.path.basename(m.name).startswith(suffix) or m.name.endswith(suffix):
                return t.extractfile(m).read()
    raise KeyError(suffix)


def download_and_unbundle(rgw, bucket, manifest_key, keyfiles, tmp: Path) -> bytes:
    """Fetches a bundle from radosgw and recovers the image with openssl (independent check
    that the objects arrived as specified)."""
    d = tmp / ("dl-" + uuid.uuid4().hex[:6])
    d.mkdir()
    s3 = rgw.s3("tusk")
    text = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    (d / manifest_key).write_bytes(text)
    for fn in ET.fromstring(text).iter("filename"):
        (d / fn.text).write_bytes(s3.get_object(Bucket=bucket, Key=fn.text)["Body"].read())
    work = d / "w"
    work.mkdir()
    return openssl_unbundle(d / manifest_key, keyfiles["user_key"], keyfiles["user_cert"], "user",
                            work)


# -- upload ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["v2", "v4"])
def test_upload_objects_arrive_private_with_the_acl_header(rgw, bucket, make_relay, ec2,
                                                          cloud_env, keyfiles, tarball, tmp, sig):
    b = bucket()
    relay = make_relay()
    env = dict(cloud_env, S3_URL=relay.url)
    p = install(env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private",
                "--s3-signature", sig)
    ids = ids_of(p.stdout)
    assert p.stdout.splitlines()[-1] == f"Installed image: {ids['Installed image']}"

    names = ["eustore-demo-image-kernel", "eustore-demo-image-ramdisk", "eustore-demo-image"]
    keys = bucket_keys(rgw, b)
    assert keys == sorted([f"{n}.manifest.xml" for n in names] + [f"{n}.part.00" for n in names])

    # Every object PUT carried the ACL as given, parts before their manifest, in install order.
    puts = [r for r in relay.requests if r.method == "PUT" and r.target.count("/") == 2]
    assert [r.target.rsplit("/", 1)[1] for r in puts] == [
        f"{n}.{suffix}" for n in names for suffix in ("part.00", "manifest.xml")]
    assert all(r.header("x-amz-acl") == "private" for r in puts)
    auth = [r.header("authorization") for r in puts]
    assert all(a.startswith("AWS4-HMAC-SHA256 " if sig == "v4" else "AWS ") for a in auth)

    # Not readable anonymously.
    anon = rgw.s3(None)
    for k in keys:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            anon.get_object(Bucket=b, Key=k)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # The bytes: each bundle decrypts (openssl) to the tarball's member.
    assert download_and_unbundle(rgw, b, "eustore-demo-image-kernel.manifest.xml", keyfiles,
                                 tmp) == member_bytes(tarball, "vmlinuz")
    assert download_and_unbundle(rgw, b, "eustore-demo-image.manifest.xml", keyfiles,
                                 tmp) == member_bytes(tarball, "demo-image.img")


def test_default_acl_is_aws_exec_read_and_radosgw_refusal_is_clear(rgw, bucket, make_relay, ec2,
                                                                  cloud_env, tarball):
    b = bucket()
    relay = make_relay()
    env = dict(cloud_env, S3_URL=relay.url)
    p = install(env, "-t", tarball.path, "-a", "x86_64", "-b", b, check=False)
    assert p.returncode == 1
    assert "InvalidArgument" in p.stderr and "HTTP 400" in p.stderr, p.stderr
    puts = [r for r in relay.requests if r.method == "PUT"]
    assert puts and puts[0].header("x-amz-acl") == "aws-exec-read"
    assert ec2.actions() == ["DescribeImages"], "only the search for earlier registrations"
    assert bucket_keys(rgw, b) == [], "nothing left behind"


def test_missing_bucket_is_created(rgw, ec2, cloud_env, tarball):
    name = "tusk-new-" + uuid.uuid4().hex[:8]
    try:
        install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", name, "--acl", "private")
        assert len(bucket_keys(rgw, name)) == 6
    finally:
        rgw.delete_bucket(name)


# -- register --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["v2", "v4"])
def test_register_order_ids_and_signature(rgw, bucket, ec2, cloud_env, tarball, sig):
    b = bucket()
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private",
                "-s", "demo description", "--ec2-signature", sig)
    ids = ids_of(p.stdout)
    calls = ec2.registered()
    assert [c.scheme for c in calls] == [sig] * 3
    assert [c.params["Name"] for c in calls] == [
        "eustore-demo-image-kernel", "eustore-demo-image-ramdisk", "eustore-demo-image"]
    assert [c.image_id for c in calls] == [ids["Kernel"], ids["Ramdisk"], ids["Installed image"]]
    assert ids["Kernel"].startswith("eki-") and ids["Ramdisk"].startswith("eri-")
    assert ids["Installed image"].startswith("emi-")
    machine = calls[2].params
    assert machine["ImageLocation"] == f"{b}/eustore-demo-image.manifest.xml"
    assert machine["KernelId"] == ids["Kernel"] and machine["RamdiskId"] == ids["Ramdisk"]
    assert machine["Architecture"] == "x86_64" and machine["Description"] == "demo description"
    assert machine["Version"] == "2013-02-01"
    assert "KernelId" not in calls[0].params, "never KernelId=true (EUSTORE §8.15)"
    # The machine manifest names its kernel and ramdisk too.
    text = rgw.s3("tusk").get_object(Bucket=b, Key="eustore-demo-image.manifest.xml")["Body"].read()
    mc = ET.fromstring(text).find("machine_configuration")
    assert mc.findtext("kernel_id") == ids["Kernel"] and mc.findtext("ramdisk_id") == ids["Ramdisk"]


@pytest.mark.parametrize("sig", ["v2", "v4"])
def test_register_error_surfaces_and_cleans_up(rgw, bucket, ec2, cloud_env, tarball, sig):
    b = bucket()
    ec2.fail_next = (400, "InvalidManifest", "manifest signature is invalid")
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private",
                "--s3-signature", sig, check=False)
    assert p.returncode == 1
    assert "RegisterImage: HTTP 400 InvalidManifest: manifest signature is invalid" in p.stderr
    assert "kernel:" in p.stderr, "the failing step is named"
    assert bucket_keys(rgw, b) == [], "the unregistered kernel's objects were deleted"


def test_wrong_secret_is_signature_does_not_match(rgw, bucket, ec2, cloud_env, tarball, keyfiles):
    b = bucket()
    # Upload with the right keys, register with a wrong secret: only the EC2 side refuses.
    ec2.secret_key = "not-the-secret"
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private",
                check=False)
    assert p.returncode == 1
    assert "SignatureDoesNotMatch" in p.stderr, p.stderr


def test_hypervisor_specific_layout(rgw, bucket, ec2, cloud_env, tmp):
    tb = harness.make_image_tarball(tmp / "hv" / "hv-image.tgz", "hv-image", single_kernel=False,
                                    size_mb=1)
    b = bucket()
    p = install(cloud_env, "-t", tb.path, "-a", "x86_64", "-b", b, "--acl", "private", check=False)
    assert p.returncode == 2 and "--hypervisor" in p.stderr and "kvm, xen" in p.stderr, p.stderr
    install(cloud_env, "-t", tb.path, "-a", "x86_64", "-b", b, "--acl", "private",
            "--hypervisor", "kvm")
    kernel = [c for c in ec2.registered() if c.params["Name"].endswith("-kernel")]
    assert len(kernel) == 1
    # The kvm kernel was bundled: its tar member is named after the bundle, its content is kvm's.
    keyfiles_env = cloud_env
    assert download_and_unbundle(
        rgw, b, "eustore-hv-image-kernel.manifest.xml",
        dict(user_key=keyfiles_env["EC2_PRIVATE_KEY"], user_cert=keyfiles_env["EC2_CERT"]), tmp
    ) == member_bytes(tb, "kvm-kernel/vmlinuz-2.6.32-tusk-kvm")


# -- end to end through tuskd, and the registry ----------------------------------------------


@pytest.fixture
def demo_store(rgw, bucket, make_tuskd, tmp):
    """A eustore bucket holding two images and catalog.json, served by tuskd."""
    store = bucket("store")
    good = harness.make_image_tarball(tmp / "store" / "demo-image.tgz", "demo-image", size_mb=3)
    bad = harness.make_image_tarball(tmp / "store" / "bad-image.tgz", "bad-image", size_mb=1)
    s3 = rgw.s3("tusk")
    for tb in (good, bad):
        s3.put_object(Bucket=store, Key=tb.path.name, Body=tb.path.read_bytes())
    cat = harness.catalog([good, bad], url_prefix="images/")
    cat["images"][1]["name"] = "0000000001"  # a catalog name that does not match the bytes
    s3.put_object(Bucket=store, Key="catalog.json", Body=json.dumps(cat).encode())
    tuskd = make_tuskd(store)
    return dict(tuskd=tuskd, good=good, bad=bad, url=tuskd.url + "/")


def test_end_to_end_install_then_registry_answers_without_transfer(rgw, bucket, ec2, cloud_env,
                                                                   demo_store, keyfiles, tmp):
    b = bucket()
    env = dict(cloud_env, EUSTORE_URL=demo_store["url"])
    name = demo_store["good"].eustore_name
    # With progress on (stderr is not a terminal here: a plain line per 10 %).
    p = run_tusk("install-image", "-i", name, "-b", b, "--acl", "private", env=env)
    ids = ids_of(p.stdout)
    assert set(ids) == {"Kernel", "Ramdisk", "Installed image"}
    assert "Downloading image: 10%" in p.stderr and "\r" not in p.stderr
    assert "Checked image" in p.stderr and "Downloading image: done" in p.stderr
    assert len(ec2.registered()) == 3
    assert download_and_unbundle(rgw, b, "eustore-demo-image.manifest.xml", keyfiles,
                                 tmp) == member_bytes(demo_store["good"], "demo-image.img")

    # Second run: the registry answers. Prove no transfer: tuskd is stopped, radosgw sees no
    # request, and the EC2 endpoint only one DescribeImages of the three recorded ids (§7).
    demo_store["tuskd"].stop()
    offset = rgw.log_offset()
    calls = len(ec2.calls)
    t0 = time.monotonic()
    again = install(env, "-i", name, "-b", b, "--acl", "private")
    assert time.monotonic() - t0 < 5
    assert ids_of(again.stdout) == ids
    assert "already installed" in again.stderr
    assert ec2.actions()[calls:] == ["DescribeImages"]
    asked = {v for k, v in ec2.calls[-1].params.items() if k.startswith("ImageId.")}
    assert asked == set(ids.values())
    assert rgw.requests(offset) == []
    # --trust-registry: not even that.
    calls = len(ec2.calls)
    again = install(env, "-i", name, "-b", b, "--acl", "private", "--trust-registry")
    assert ids_of(again.stdout) == ids and len(ec2.calls) == calls

    listed = run_tusk("images", "--format", "tsv", env=env).stdout.splitlines()
    assert len(listed) == 1
    fields = listed[0].split("\t")
    assert fields[:6] == [name, f"{ACCOUNT}@{ec2.url}", "done", ids["Kernel"], ids["Ramdisk"],
                          ids["Installed image"]]
    # Another site GUID is another install.
    other = install(env, "-i", name, "-b", b, "--acl", "private", "--guid", "site-b", check=False)
    assert other.returncode == 1  # tuskd is down: this one really had to download
    assert "catalog" in other.stderr


def test_checksum_mismatch_registers_nothing(rgw, bucket, ec2, cloud_env, demo_store):
    b = bucket()
    env = dict(cloud_env, EUSTORE_URL=demo_store["url"])
    p = install(env, "-i", "0000000001", "-b", b, "--acl", "private", check=False)
    assert p.returncode == 1
    assert "incomplete or corrupt" in p.stderr
    assert f"checksum: {demo_store['bad'].eustore_name}, expected: 0000000001" in p.stderr
    assert ec2.calls == [] and bucket_keys(rgw, b) == []
    p = install(env, "-i", "9999999999", "-b", b, "--acl", "private", check=False)
    assert "no image named 9999999999" in p.stderr


@pytest.mark.parametrize("mode", ["truncate:100000", "truncate:2000000"])
def test_short_download_is_an_error(rgw, bucket, ec2, cloud_env, demo_store, make_relay, mode):
    """A body shorter than its Content-Length (relay between tusk and tuskd) stops the install
    before anything is uploaded or registered."""
    b = bucket()
    relay = make_relay(mode, upstream=demo_store["url"])
    env = dict(cloud_env, EUSTORE_URL=relay.url + "/")
    p = install(env, "-i", demo_store["good"].eustore_name, "-b", b, "--acl", "private",
                check=False)
    assert p.returncode == 1
    assert "before the announced Content-Length" in p.stderr, p.stderr
    assert ec2.calls == [] and bucket_keys(rgw, b) == []


def test_concurrent_installs_do_the_work_once(rgw, bucket, make_relay, ec2, cloud_env, tarball):
    b = bucket()
    slow = make_relay("slow:100000000:300")  # each S3 request waits 0.3 s: the installs overlap
    env = dict(cloud_env, S3_URL=slow.url)
    args = [tusk_cli_path(), "install-image", "--no-progress", "-t", str(tarball.path), "-a",
            "x86_64", "-b", b, "--acl", "private"]
    procs = [subprocess.Popen(args, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert ids_of(outs[0][0]) == ids_of(outs[1][0])
    assert len(ec2.registered()) == 3, "registered once"
    assert sum("Waiting for another install" in err for _, err in outs) == 1
    assert sum("already installed" in err for _, err in outs) == 1


def test_crashed_install_is_cleaned_up_and_resumed(rgw, bucket, make_relay, ec2, cloud_env,
                                                   tarball, tmp):
    b = bucket()
    slow = make_relay("slow:100000000:1000")
    env = dict(cloud_env, S3_URL=slow.url)
    args = [tusk_cli_path(), "install-image", "--no-progress", "-t", str(tarball.path), "-a",
            "x86_64", "-b", b, "--acl", "private"]
    proc = subprocess.Popen(args, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # Kill it while the ramdisk's part is being uploaded (the kernel is registered by then).
        harness.wait_until(
            lambda: any("ramdisk.part.00" in r.target for r in slow.requests), 120,
            what="the ramdisk upload to start")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert len(ec2.registered()) == 1

    state = json.loads(run_tusk("images", "--format", "json", env=env).stdout)
    assert [r["state"] for r in state] == ["in-progress"]
    kernel_id = state[0]["eki"]
    assert kernel_id.startswith("eki-")
    # The killed install's work folder (extracted images, parts) is still there...
    leftovers = list((tmp / "work").glob("tusk-install-*"))
    assert len(leftovers) == 1 and any(leftovers[0].rglob("*")), leftovers

    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert "Cleaning up an interrupted install" in p.stderr
    # ...and the next attempt removed it (and its own, when done).
    assert f"Removed the interrupted install's work folder {leftovers[0]}" in p.stderr, p.stderr
    assert list((tmp / "work").glob("tusk-install-*")) == []
    assert f"Reusing what the earlier install registered: kernel {kernel_id}" in p.stderr
    ids = ids_of(p.stdout)
    assert ids["Kernel"] == kernel_id
    assert [c.params["Name"] for c in ec2.registered()] == [
        "eustore-demo-image-kernel", "eustore-demo-image-ramdisk", "eustore-demo-image"]
    assert len(bucket_keys(rgw, b)) == 6


def test_path_traversal_is_refused(bucket, ec2, cloud_env, tmp, rgw):
    b = bucket()
    evil = tmp / "evil.tgz"
    with tarfile.open(evil, "w:gz") as t:
        for name, data in (("img/vmlinuz-1", b"k"), ("img/../../escaped.img", b"x" * 100)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    p = install(cloud_env, "-t", evil, "-a", "x86_64", "-b", b, "--acl", "private", check=False)
    assert p.returncode == 1
    assert "refusing path traversal" in p.stderr, p.stderr
    assert not (tmp / "escaped.img").exists() and not (tmp / "work" / "escaped.img").exists()
    assert ec2.calls == [] and bucket_keys(rgw, b) == []


def test_usage_errors(cloud_env, tarball):
    p = install(cloud_env, "-t", tarball.path, "-b", "x", check=False)
    assert p.returncode == 2 and "-t needs -a ARCH" in p.stderr
    env = dict(cloud_env)
    del env["EUCALYPTUS_CERT"]
    env.pop("EC2_URL")
    p = run_tusk("install-image", "-t", tarball.path, "-a", "i386", "-b", "x", check=False,
                 env=env, )
    # EC2_URL may be set in the caller's environment; EUCALYPTUS_CERT is the one we removed.
    assert p.returncode == 2 and "EUCALYPTUS_CERT" in p.stderr, p.stderr


def test_credentials_from_eucarc(rgw, bucket, ec2, cloud_env, tarball, tmp):
    b = bucket()
    rc = tmp / "creds" / "eucarc"
    rc.parent.mkdir()
    for k in ("EC2_CERT", "EC2_PRIVATE_KEY", "EUCALYPTUS_CERT"):
        (rc.parent / Path(cloud_env[k]).name).write_bytes(Path(cloud_env[k]).read_bytes())
    lines = ["EUCA_KEY_DIR=$(cd $(dirname ${BASH_SOURCE:-$0}); pwd -P)"]
    for k in ("EC2_URL", "S3_URL", "EC2_ACCESS_KEY", "EC2_SECRET_KEY", "EC2_USER_ID"):
        lines.append(f"export {k}='{cloud_env[k]}'")
    for k in ("EC2_CERT", "EC2_PRIVATE_KEY", "EUCALYPTUS_CERT"):
        lines.append(f"export {k}=${{EUCA_KEY_DIR}}/{Path(cloud_env[k]).name}")
    rc.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in cloud_env.items() if k in ("TUSK_REGISTRY", "TMPDIR")}
    env.update({k: "" for k in cloud_env if k not in env})
    p = install(env, "--eucarc", rc, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl",
                "private")
    assert ids_of(p.stdout)["Installed image"].startswith("emi-")


# -- what the cloud still has: DescribeImages (EUSTORE §7, §8.16) ----------------------------


def manifests(rgw, bucket) -> dict[str, bytes]:
    s3 = rgw.s3("tusk")
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            for k in bucket_keys(rgw, bucket) if k.endswith(".manifest.xml")}


@pytest.mark.parametrize("cloud", ["eucalyptus", "aws"])
def test_deregistered_machine_image_is_installed_again(rgw, bucket, ec2, cloud_env, tarball,
                                                       cloud):
    """A recorded image that is gone (Eucalyptus lists it 'deregistered'; AWS forgets it and
    answers InvalidAMIID.NotFound) is not answered from the registry: the machine image is
    registered again, the kernel and ramdisk that are still there are kept."""
    b = bucket()
    ec2.aws_not_found = cloud == "aws"
    first = ids_of(install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b,
                           "--acl", "private").stdout)
    ec2.deregister(first["Installed image"], forget=cloud == "aws")

    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    again = ids_of(p.stdout)
    assert f"Recorded image {first['Installed image']} is" in p.stderr, p.stderr
    assert "already installed" not in p.stderr
    assert again["Kernel"] == first["Kernel"] and again["Ramdisk"] == first["Ramdisk"]
    assert again["Installed image"] != first["Installed image"]
    names = [c.params["Name"] for c in ec2.registered()]
    assert names == ["eustore-demo-image-kernel", "eustore-demo-image-ramdisk",
                     "eustore-demo-image", "eustore-demo-image"], names
    state = json.loads(run_tusk("images", "--format", "json", env=cloud_env).stdout)
    assert [(r["state"], r["emi"]) for r in state] == [("done", again["Installed image"])]
    # And the new record answers from the registry again.
    third = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert ids_of(third.stdout) == again and "already installed" in third.stderr


def test_lost_registry_reuses_images_registered_with_the_same_content(rgw, bucket, ec2,
                                                                      cloud_env, tarball, tmp):
    """The registry is gone (new machine): the images registered from our manifest locations
    hold the same bytes (tar digest in their manifests), so they are reused, not uploaded or
    registered again."""
    b = bucket()
    first = ids_of(install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b,
                           "--acl", "private").stdout)
    before = manifests(rgw, b)
    env = dict(cloud_env, TUSK_REGISTRY=str(tmp / "new-registry"))
    p = install(env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert ids_of(p.stdout) == first
    assert p.stderr.count("with the same content: reusing it") == 3, p.stderr
    assert len(ec2.registered()) == 3
    assert manifests(rgw, b) == before, "nothing uploaded again"
    assert "Uploading" not in p.stderr


def test_other_content_at_the_same_location_gets_a_padded_name(rgw, bucket, ec2, cloud_env,
                                                               tarball, tmp):
    """Another tarball of the same file name (other bytes): its manifest locations and Names are
    taken by the first one's images, so it registers under 'eustore-<8 hex>-…' and the first
    image's manifests are left exactly as they were."""
    b = bucket()
    first = ids_of(install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b,
                           "--acl", "private").stdout)
    before = manifests(rgw, b)
    other = harness.make_image_tarball(tmp / "other" / "demo-image.tgz", "demo-image",
                                       single_kernel=True, size_mb=2, seed=99)
    p = install(cloud_env, "-t", other.path, "-a", "x86_64", "-b", b, "--acl", "private")
    second = ids_of(p.stdout)
    assert set(second.values()).isdisjoint(first.values())
    assert p.stderr.count("(other content)") == 3, p.stderr
    calls = ec2.registered()[3:]
    pad = calls[0].params["Name"].split("-")[1]
    assert len(pad) == 8 and int(pad, 16) >= 0
    assert [c.params["Name"] for c in calls] == [
        f"eustore-{pad}-demo-image-kernel", f"eustore-{pad}-demo-image-ramdisk",
        f"eustore-{pad}-demo-image"]
    assert calls[2].params["ImageLocation"] == f"{b}/eustore-{pad}-demo-image.manifest.xml"
    after = manifests(rgw, b)
    assert {k: after[k] for k in before} == before, "the first image's manifests are untouched"
    assert download_and_unbundle(rgw, b, f"eustore-{pad}-demo-image.manifest.xml",
                                 dict(user_key=cloud_env["EC2_PRIVATE_KEY"],
                                      user_cert=cloud_env["EC2_CERT"]),
                                 tmp) == member_bytes(other, "demo-image.img")


def test_name_taken_at_registration_is_padded(rgw, bucket, ec2, cloud_env, tarball):
    """RegisterImage answers InvalidAMIName.Duplicate (a name taken after we listed): the
    upload is kept and the image registered under a padded Name at the same location."""
    b = bucket()
    ec2.fail_next = (400, "InvalidAMIName.Duplicate", "AMI name eustore-demo-image-kernel is "
                     "already in use by emi-12345678")
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert "is taken: registering as eustore-" in p.stderr, p.stderr
    kernel = ec2.registered()[0].params
    assert re.fullmatch(r"eustore-[0-9a-f]{8}-demo-image-kernel", kernel["Name"]), kernel
    assert kernel["ImageLocation"] == f"{b}/eustore-demo-image-kernel.manifest.xml"
    assert ids_of(p.stdout)["Installed image"].startswith("emi-")


def test_unreachable_describe_trusts_the_registry_with_a_warning(rgw, bucket, ec2, cloud_env,
                                                                 tarball):
    b = bucket()
    first = ids_of(install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b,
                           "--acl", "private").stdout)
    ec2.describe_fails = (503, "Unavailable", "the cloud controller is restarting")
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert ids_of(p.stdout) == first
    assert "warning: cannot check the recorded images with DescribeImages" in p.stderr
    assert "Unavailable: the cloud controller is restarting" in p.stderr


def test_odd_describe_entries_are_ignored(rgw, bucket, ec2, cloud_env, tarball):
    """What the cloud lists is input like any other: images with empty or slash-only locations
    and names do not match anything and do not crash the search."""
    b = bucket()
    for i, loc in enumerate(["/", "//", "", f"/{b}/"]):
        ec2.images[f"emi-0000000{i}"] = {"ImageLocation": loc, "Name": loc, "kind": "machine",
                                         "state": "available"}
    p = install(cloud_env, "-t", tarball.path, "-a", "x86_64", "-b", b, "--acl", "private")
    assert [c.params["Name"] for c in ec2.registered()] == [
        "eustore-demo-image-kernel", "eustore-demo-image-ramdisk", "eustore-demo-image"], p.stderr
