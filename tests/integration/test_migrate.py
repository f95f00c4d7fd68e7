"""`tusk migrate-image` against real services: a bundle made by `tusk bundle-image` for an owner
whose key pair openssl made here (not the cloud's), in a source bucket of radosgw owned by another
user, migrated onto "this cloud" (radosgw + the test EC2 endpoint of ec2_endpoint.py, which
checks every signature and reads the registered manifest). Shows: the registration (location,
architecture, kernel/ramdisk from the source manifest or the flags), the new bundle opened by the
openssl CLI with the *cloud* key to the original bytes, the second run answered from the registry
(no part downloaded, nothing uploaded or registered), and clear failures that leave nothing
behind: a wrong owner key, a tampered part, a missing part, bad options.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_installer_bundle import make_keys, openssl_unbundle, run_tusk
from test_installer_cloud import ACCOUNT, bucket_keys, cloud_env, ec2, keyfiles  # noqa: F401

PART = 10 * 1024 * 1024
KERNEL = "eki-0A0B0C0D"  # registered "here" before the migration
RAMDISK = "eri-0E0F1011"  # named by the source manifest, unknown here
NAME = "demo-migrate.img"


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """The bundle owner's key pair and the source cloud's certificate: neither is this cloud's."""
    d = tmp_path_factory.mktemp("owner-keys")
    key, cert = make_keys(d, "owner")
    _, old_cloud_cert = make_keys(d, "oldcloud")
    return dict(key=key, cert=cert, old_cloud_cert=old_cloud_cert)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A little over 10 MiB of random bytes, so that the bundle has two parts."""
    p = tmp_path_factory.mktemp("image") / NAME
    p.write_bytes(os.urandom(PART + 512 * 1024))
    return p


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, owner, image) -> Path:
    d = tmp_path_factory.mktemp("source-bundle")
    run_tusk("bundle-image", "-i", image, "-d", d, "-c", owner["cert"], "--privatekey",
             owner["key"], "--ec2cert", owner["old_cloud_cert"], "-u", ACCOUNT, "-a", "x86_64",
             "--kernel", KERNEL, "--ramdisk", RAMDISK)
    assert sorted(p.name for p in d.iterdir()) == [
        f"{NAME}.manifest.xml", f"{NAME}.part.00", f"{NAME}.part.01"]
    return d


@pytest.fixture
def source(rgw, bucket, bundle_dir):
    """The bundle under bundles/ in a bucket of radosgw's *other* user: the bucket name."""
    b = bucket("src", user="other")
    s3 = rgw.s3("other")
    for f in sorted(bundle_dir.iterdir()):
        s3.put_object(Bucket=b, Key=f"bundles/{f.name}", Body=f.read_bytes())
    return b


@pytest.fixture
def env(cloud_env, rgw):
    return dict(cloud_env, TUSK_SOURCE_ACCESS_KEY=rgw.other_access_key,
                TUSK_SOURCE_SECRET_KEY=rgw.other_secret_key)


def migrate(env, source_bucket, owner_key, target, *extra, check=True):
    return run_tusk("migrate-image", "--no-progress", "--manifest",
                    f"{source_bucket}/bundles/{NAME}.manifest.xml", "--source-key", owner_key,
                    "-b", target, "--acl", "private", *extra, env=env, check=check)


def ids_of(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def register_here(ec2, image_id: str, kind: str) -> None:
    """An image this cloud already has (as if installed earlier)."""
    ec2.images[image_id] = dict(Name=f"pre-{image_id}", ImageLocation=f"pre/{image_id}.manifest.xml",
                                kind=kind, state="available")


def records(env) -> list[dict]:
    return json.loads(run_tusk("images", "--format", "json", env=env).stdout)


def assert_no_work_left(env) -> None:
    assert list(Path(env["TMPDIR"]).iterdir()) == [], "the work folders are removed"


def fetch_bundle(rgw, target, manifest_key, tmp: Path) -> Path:
    d = tmp / ("dl-" + uuid.uuid4().hex[:6])
    d.mkdir()
    s3 = rgw.s3("tusk")
    text = s3.get_object(Bucket=target, Key=manifest_key)["Body"].read()
    (d / manifest_key).write_bytes(text)
    for fn in ET.fromstring(text).iter("filename"):
        (d / fn.text).write_bytes(s3.get_object(Bucket=target, Key=fn.text)["Body"].read())
    return d / manifest_key


def test_migrate_registers_and_the_bundle_opens_with_the_cloud_key_to_the_same_bytes(
        rgw, bucket, ec2, env, keyfiles, owner, image, source, tmp):
    register_here(ec2, KERNEL, "kernel")
    target = bucket("dst")
    # The work folder a migration killed with -9 left (its process is gone): swept.
    dead = Path(env["TMPDIR"]) / "tusk-migrate-2147483000-1-AbCdEf"
    (dead / "parts").mkdir(parents=True)
    (dead / "parts" / "x.part.00").write_bytes(b"left over")
    p = migrate(env, source, owner["key"], target)
    assert "Removed 1 work folder(s) of interrupted migrations" in p.stderr
    assert not dead.exists()
    emi = ids_of(p.stdout)["Installed image"]
    assert emi.startswith("emi-"), p.stdout
    assert "ramdisk eri-0E0F1011 does not exist here: registering without a ramdisk" in p.stderr
    assert "kernel eki-0A0B0C0D (from the source manifest; registered here)" in p.stderr

    [call] = ec2.registered()
    assert call.image_id == emi
    manifest_key = f"{NAME}.manifest.xml"  # named after the source prefix
    assert call.params["ImageLocation"] == f"{target}/{manifest_key}"
    assert call.params["Name"] == NAME
    assert call.params["Architecture"] == "x86_64"
    assert call.params.get("KernelId") == KERNEL
    assert "RamdiskId" not in call.params
    assert call.params["Description"] == f"migrated from {source}/bundles/{NAME}.manifest.xml"
    keys = bucket_keys(rgw, target)
    assert manifest_key in keys and len(keys) == 3, keys  # two parts and the manifest

    # The new bundle: for this cloud (ec2_encrypted_* open with the cloud key, openssl only),
    # signed by this cloud's user, holding exactly the owner's image; kernel in the manifest.
    manifest = fetch_bundle(rgw, target, manifest_key, tmp)
    work = tmp / "openssl"
    work.mkdir()
    data = openssl_unbundle(manifest, keyfiles["cloud_key"], keyfiles["user_cert"], "ec2", work)
    assert data == image.read_bytes()
    root = ET.fromstring(manifest.read_text())
    assert root.findtext("machine_configuration/kernel_id") == KERNEL
    assert root.findtext("machine_configuration/architecture") == "x86_64"
    assert_no_work_left(env)

    # Second run: from the registry, no part downloaded, nothing uploaded or registered.
    offset = rgw.log_offset()
    again = migrate(env, source, owner["key"], target)
    assert ids_of(again.stdout)["Installed image"] == emi
    seen = rgw.requests(offset)
    assert [r.method for r in seen if r.method not in ("GET", "HEAD")] == [], "no upload"
    got = [r.key for r in seen if r.method == "GET" and r.key]
    assert got == [f"bundles/{NAME}.manifest.xml"], "only the manifest is read"
    assert len(ec2.registered()) == 1
    assert bucket_keys(rgw, target) == keys
    [rec] = records(env)
    assert rec["state"] == "done" and rec["emi"] == emi
    assert_no_work_left(env)


def test_flags_choose_kernel_and_ramdisk_and_a_sigv4_source(rgw, bucket, ec2, env, owner, image,
                                                             source):
    register_here(ec2, "eki-11112222", "kernel")
    register_here(ec2, "eri-33334444", "ramdisk")
    target = bucket("dst")
    p = migrate(env, source, owner["key"], target, "--kernel", "eki-11112222", "--ramdisk",
                "eri-33334444", "--source-signature", "v4", "--source-region", "us-east-1",
                "--source-url", rgw.endpoint + "/")
    [call] = ec2.registered()
    assert call.image_id == ids_of(p.stdout)["Installed image"]
    assert call.params["KernelId"] == "eki-11112222"
    assert call.params["RamdiskId"] == "eri-33334444"
    assert "does not exist here" not in p.stderr
    assert_no_work_left(env)


def assert_nothing_left(rgw, ec2, env, target) -> None:
    assert ec2.registered() == [], "nothing registered"
    assert bucket_keys(rgw, target) == [], "no object in the target bucket"
    assert [r for r in records(env) if r["state"] == "done"] == []
    assert_no_work_left(env)


def test_wrong_owner_key_fails_clearly_before_any_part_is_read(rgw, bucket, ec2, env, keyfiles,
                                                                source):
    target = bucket("dst")
    offset = rgw.log_offset()
    p = migrate(env, source, keyfiles["user_key"], target, check=False)
    assert p.returncode == 1, p.stderr
    assert "tusk: error: key: " in p.stderr, p.stderr
    assert "does not open the AES key" in p.stderr
    assert "RSA decryption failed" in p.stderr, "OpenSSL's verdict"
    assert not any(".part." in r.key for r in rgw.requests(offset))
    assert_nothing_left(rgw, ec2, env, target)


def test_tampered_part_is_named(rgw, bucket, ec2, env, owner, bundle_dir, source):
    data = bytearray((bundle_dir / f"{NAME}.part.01").read_bytes())
    data[100] ^= 0xFF
    rgw.s3("other").put_object(Bucket=source, Key=f"bundles/{NAME}.part.01", Body=bytes(data))
    target = bucket("dst")
    p = migrate(env, source, owner["key"], target, check=False)
    assert p.returncode == 1, p.stderr
    assert f"tusk: error: parts: part {NAME}.part.01 (2 of 2) has SHA-1 " in p.stderr, p.stderr
    assert "the manifest says" in p.stderr
    assert_nothing_left(rgw, ec2, env, target)


def test_missing_part_is_named(rgw, bucket, ec2, env, owner, source):
    rgw.s3("other").delete_object(Bucket=source, Key=f"bundles/{NAME}.part.00")
    target = bucket("dst")
    p = migrate(env, source, owner["key"], target, check=False)
    assert p.returncode == 1, p.stderr
    assert (f"tusk: error: parts: part {NAME}.part.00 (1 of 2) is missing: no object "
            f"{source}/bundles/{NAME}.part.00") in p.stderr, p.stderr
    assert_nothing_left(rgw, ec2, env, target)


def test_a_bundle_of_a_qcow2_file_is_refused_not_converted(rgw, bucket, ec2, env, owner, tmp):
    img = tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "64M"], check=True)
    d = tmp / "qcow-bundle"
    d.mkdir()
    run_tusk("bundle-image", "-i", img, "-d", d, "-p", NAME, "-c", owner["cert"], "--privatekey",
             owner["key"], "--ec2cert", owner["old_cloud_cert"], "-u", ACCOUNT)
    src = bucket("src", user="other")
    for f in d.iterdir():
        rgw.s3("other").put_object(Bucket=src, Key=f"bundles/{f.name}", Body=f.read_bytes())
    target = bucket("dst")
    p = migrate(env, src, owner["key"], target, check=False)
    assert p.returncode == 1, p.stderr
    assert "tusk: error: unbundle: the image is qcow2 (qemu-img), not a raw disk" in p.stderr
    assert_nothing_left(rgw, ec2, env, target)


def test_source_problems_are_clear(rgw, bucket, ec2, env, owner, source):
    target = bucket("dst")
    # No such manifest.
    p = run_tusk("migrate-image", "--manifest", f"{source}/bundles/nope.manifest.xml",
                 "--source-key", owner["key"], "-b", target, env=env, check=False)
    assert p.returncode == 1
    assert f"tusk: error: manifest: {source}/bundles/nope.manifest.xml does not exist" in p.stderr
    # The source refuses the keys: the S3 code and a hint, never the secret.
    bad = dict(env, TUSK_SOURCE_SECRET_KEY="not-the-secret")
    p = migrate(bad, source, owner["key"], target, check=False)
    assert p.returncode == 1
    assert "tusk: error: manifest: GET " in p.stderr and "HTTP 403" in p.stderr, p.stderr
    assert "--source-secret-key" in p.stderr and "not-the-secret" not in p.stderr
    # Somebody else's bundle with the cloud's keys (the default): refused by the source.
    nokeys = {k: v for k, v in env.items() if not k.startswith("TUSK_SOURCE_")}
    p = migrate(nokeys, source, owner["key"], target, check=False)
    assert p.returncode == 1 and "HTTP 403" in p.stderr, p.stderr
    assert_nothing_left(rgw, ec2, env, target)


@pytest.mark.parametrize("manifest,message", [
    ("no-slash.manifest.xml", "expected BUCKET/PREFIX.manifest.xml"),
    ("b/img.part.00", "the key must be PREFIX.manifest.xml"),
    ("b/../img.manifest.xml", "'..' path segment"),
])
def test_bad_manifest_option_is_a_usage_error(env, owner, manifest, message):
    p = run_tusk("migrate-image", "--manifest", manifest, "--source-key", owner["key"], "-b",
                 "bkt", env=env, check=False)
    assert p.returncode == 2
    assert message in p.stderr, p.stderr


def test_half_given_source_keys_and_bad_kernel_are_usage_errors(env, owner, source):
    only_access = {k: v for k, v in env.items() if k != "TUSK_SOURCE_SECRET_KEY"}
    p = migrate(only_access, source, owner["key"], "bkt", check=False)
    assert p.returncode == 2 and "give both --source-access-key-id" in p.stderr, p.stderr
    p = migrate(env, source, owner["key"], "bkt", "--kernel", "vmlinuz", check=False)
    assert p.returncode == 2 and "--kernel: 'vmlinuz' is not an image id" in p.stderr, p.stderr
    p = migrate(env, source, Path(env["TMPDIR"]) / "missing.pem", "bkt", check=False)
    assert p.returncode == 1 and "missing.pem" in p.stderr, p.stderr
