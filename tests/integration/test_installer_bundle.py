"""`tusk bundle-image` / `tusk unbundle` (EUSTORE.md §3), checked against an independent
implementation: the openssl command line decrypts key and IV (pkeyutl, PKCS#1 v1.5), the parts
(enc -aes-128-cbc) and verifies the manifest signature (dgst -sha1 -verify); gzip and GNU tar
unpack. Edge cases: empty image, ciphertext an exact multiple of 10 MiB, a 3 GiB sparse image in
bounded memory. No radosgw needed. Shared helpers (tusk binary, test keys) live here too.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import harness

PART = 10 * 1024 * 1024


# -- helpers shared with test_installer_cloud.py ---------------------------------------------------


def tusk_cli_path() -> str:
    """$TUSK_CLI (CTest sets it), else <build>/installer/tusk. Missing binary: fail, never skip."""
    path = os.environ.get("TUSK_CLI")
    if not path:
        build = Path(os.environ.get("TUSK_BUILD_DIR", harness.SOURCE_DIR / "build"))
        path = str(build / "installer" / "tusk")
    if not os.access(path, os.X_OK):
        pytest.fail(f"tusk not built ({path}): build it first (cmake --build build --target tusk)")
    return path


def run_tusk(*args, env=None, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(
        [tusk_cli_path(), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        **kw,
    )
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in p.stderr, p.stderr
    if check and p.returncode != 0:
        raise AssertionError(
            f"tusk {' '.join(map(str, args))} exited {p.returncode}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        )
    return p


def make_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """(private key, self-signed certificate) made with the openssl CLI."""
    key, cert = directory / f"{name}-pk.pem", directory / f"{name}-cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-subj", f"/CN=tusk-test-{name}", "-days", "2"],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    user_key, user_cert = make_keys(d, "user")
    cloud_key, cloud_cert = make_keys(d, "cloud")
    return dict(user_key=user_key, user_cert=user_cert, cloud_key=cloud_key, cloud_cert=cloud_cert)


def bundle_args(keys, image: Path, dest: Path, *extra) -> list:
    return ["bundle-image", "-i", image, "-d", dest, "-c", keys["user_cert"], "--privatekey",
            keys["user_key"], "--ec2cert", keys["cloud_cert"], "-u", "123456789012", *extra]


def openssl(*args, input=None) -> bytes:
    p = subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def openssl_unbundle(manifest: Path, private_key: Path, cert: Path, which: str, work: Path) -> bytes:
    """Recovers the image bytes with openssl, gzip and tar only; asserts every digest and the
    signature on the way. which: 'user' or 'ec2' (whose encrypted key/IV to open)."""
    text = manifest.read_text()
    assert "\n" not in text, "the manifest is one line"
    root = ET.fromstring(text)
    image = root.find("image")

    def rsa_open(element: str) -> bytes:
        blob = work / f"{element}.bin"
        blob.write_bytes(bytes.fromhex(image.find(element).text))
        plain = openssl("pkeyutl", "-decrypt", "-inkey", private_key, "-pkeyopt",
                        "rsa_padding_mode:pkcs1", "-in", blob)
        assert re.fullmatch(rb"[0-9a-f]{32}", plain), plain  # §3.2: hex text is encrypted
        return plain

    key = rsa_open(f"{which}_encrypted_key").decode()
    iv = rsa_open(f"{which}_encrypted_iv").decode()

    parts = image.find("parts")
    count = int(parts.get("count"))
    listed = parts.findall("part")
    assert len(listed) == count
    cipher = work / "cipher.bin"
    with open(cipher, "wb") as out:
        for i, part in enumerate(sorted(listed, key=lambda p: int(p.get("index")))):
            assert int(part.get("index")) == i
            name = part.find("filename").text
            assert name == f"{image.find('name').text}.part.{i:02d}"
            data = (manifest.parent / name).read_bytes()
            got = openssl("dgst", "-sha1", "-r", manifest.parent / name).split()[0].decode()
            assert got == part.find("digest").text, f"part {name} digest"
            assert part.find("digest").get("algorithm") == "SHA1"
            out.write(data)
    assert cipher.stat().st_size == int(image.find("bundled_size").text)

    gz = work / "image.tar.gz"
    openssl("enc", "-d", "-aes-128-cbc", "-K", key, "-iv", iv, "-in", cipher, "-out", gz)
    tar = work / "image.tar"
    with open(tar, "wb") as out:
        subprocess.run(["gzip", "-dc", gz], stdout=out, check=True)
    tar_sha1 = openssl("dgst", "-sha1", "-r", tar).split()[0].decode()
    assert tar_sha1 == image.find("digest").text, "tar digest"
    members = subprocess.run(["tar", "-tf", tar], capture_output=True, text=True, check=True)
    assert members.stdout.splitlines() == [image.find("name").text]
    data = subprocess.run(["tar", "-xOf", tar], capture_output=True, check=True).stdout
    assert len(data) == int(image.find("size").text)

    # Signature: the exact text of <machine_configuration> followed by <image>.
    signed = re.search(r"<machine_configuration>.*</machine_configuration>", text).group(0)
    signed += re.search(r"<image>.*</image>", text).group(0)
    (work / "signed.txt").write_text(signed)
    (work / "sig.bin").write_bytes(bytes.fromhex(root.find("signature").text))
    (work / "pub.pem").write_bytes(openssl("x509", "-pubkey", "-noout", "-in", cert))
    out = openssl("dgst", "-sha1", "-verify", work / "pub.pem", "-signature", work / "sig.bin",
                  work / "signed.txt")
    assert b"Verified OK" in out
    for p in (cipher, gz, tar):
        p.unlink()
    return data


def bundle_and_check(keys, tmp: Path, data: bytes, name="disk.img") -> tuple[Path, ET.Element]:
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    image = src / name
    image.write_bytes(data)
    dest = tmp / "bundle"
    dest.mkdir(exist_ok=True)
    run_tusk(*bundle_args(keys, image, dest))
    manifest = dest / f"{name}.manifest.xml"
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    assert openssl_unbundle(manifest, keys["user_key"], keys["user_cert"], "user", work) == data
    assert openssl_unbundle(manifest, keys["cloud_key"], keys["user_cert"], "ec2", work) == data
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    p = run_tusk("unbundle", "-m", manifest, "-k", keys["user_key"], "-d", out)
    assert "Signature: verified" in p.stdout
    assert (out / name).read_bytes() == data
    return manifest, ET.fromstring(manifest.read_text())


# -- tests -------------------------------------------------------------------------------------


def test_bundle_round_trip_openssl_and_tusk(keys, tmp):
    rng = random.Random(1)
    data = rng.randbytes(3 * PART + 12345) + bytes(2 * PART)
    manifest, root = bundle_and_check(keys, tmp, data)
    # Element order and shape (§3.4).
    assert [c.tag for c in root] == ["version", "bundler", "machine_configuration", "image",
                                     "signature"]
    assert root.find("version").text == "2007-10-10"
    assert [c.tag for c in root.find("image")] == [
        "name", "user", "type", "digest", "size", "bundled_size", "ec2_encrypted_key",
        "user_encrypted_key", "ec2_encrypted_iv", "user_encrypted_iv", "parts"]
    assert root.find("image/user").text == "123456789012"
    assert root.find("image/type").text == "machine"
    assert root.find("machine_configuration/architecture").text == "x86_64"
    assert root.find("image/ec2_encrypted_key").get("algorithm") == "AES-128-CBC"
    sizes = [(manifest.parent / p.find("filename").text).stat().st_size
             for p in root.find("image/parts")]
    assert all(s == PART for s in sizes[:-1]) and 0 < sizes[-1] <= PART


def test_kernel_bundle_flags(keys, tmp):
    image = tmp / "vmlinuz-test"
    image.write_bytes(b"kernel" * 1000)
    dest = tmp / "b"
    dest.mkdir()
    run_tusk(*bundle_args(keys, image, dest, "--type", "kernel", "-p", "eustore-x-kernel"))
    root = ET.fromstring((dest / "eustore-x-kernel.manifest.xml").read_text())
    assert root.find("machine_configuration/kernel_id").text == "true"
    assert root.find("image/type").text == "kernel"
    assert root.find("image/name").text == "eustore-x-kernel"


def test_empty_image(keys, tmp):
    manifest, root = bundle_and_check(keys, tmp, b"")
    assert root.find("image/size").text == "0"
    assert root.find("image/parts").get("count") == "1"


def test_ciphertext_exact_multiple_of_10_mib(keys, tmp):
    """Random bytes barely compress: adjust the size until bundled_size is exactly 10 MiB, then
    check there is one full part and no empty trailing one (EUSTORE.md §8.12)."""
    rng = random.Random(7)
    pool = rng.randbytes(PART)
    n = PART - 4096
    dest = tmp / "probe"
    dest.mkdir()
    for _ in range(40):
        (tmp / "disk.img").write_bytes(pool[:n])
        for f in dest.iterdir():
            f.unlink()
        run_tusk(*bundle_args(keys, tmp / "disk.img", dest))
        root = ET.fromstring((dest / "disk.img.manifest.xml").read_text())
        diff = PART - int(root.find("image/bundled_size").text)
        if diff == 0:
            break
        n += max(diff - 8, 1) if diff > 0 else diff
    assert diff == 0, "could not hit an exact 10 MiB ciphertext"
    manifest, root = bundle_and_check(keys, tmp, pool[:n])
    parts = root.find("image/parts")
    assert parts.get("count") == "1"
    assert (manifest.parent / "disk.img.part.00").stat().st_size == PART
    assert not (manifest.parent / "disk.img.part.01").exists()


def test_unbundle_rejects_tampering(keys, tmp):
    data = random.Random(3).randbytes(PART + 100)
    manifest, root = bundle_and_check(keys, tmp, data)
    part = manifest.parent / "disk.img.part.01"
    raw = bytearray(part.read_bytes())
    raw[10] ^= 0xFF
    part.write_bytes(bytes(raw))
    out = tmp / "out2"
    out.mkdir()
    p = run_tusk("unbundle", "-m", manifest, "-k", keys["user_key"], "-d", out, check=False)
    assert p.returncode == 1
    assert "disk.img.part.01" in p.stderr and "SHA-1" in p.stderr, p.stderr
    assert list(out.iterdir()) == [], "nothing left behind"


def test_unbundle_wrong_key_is_a_clear_error(keys, tmp):
    manifest, _ = bundle_and_check(keys, tmp, b"x" * 1000)
    other_key, _ = make_keys(tmp, "other")
    p = run_tusk("unbundle", "-m", manifest, "-k", other_key, "-d", tmp, check=False)
    assert p.returncode == 1
    assert "opens neither" in p.stderr, p.stderr


def test_3gib_sparse_image_bounded_memory(keys, tmp):
    size = 3 << 30
    image = tmp / "big.img"
    with open(image, "wb") as f:
        f.write(b"head")
        f.seek(size - 4)
        f.write(b"tail")
    dest = tmp / "bundle"
    dest.mkdir()
    out = tmp / "out"
    out.mkdir()

    def measured(args) -> int:
        """Peak RSS (KiB) of the tusk process itself: VmHWM polled from /proc (rusage would
        count the forked Python before exec)."""
        proc = subprocess.Popen([tusk_cli_path(), *map(str, args)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        assert proc.returncode == 0, err
        assert peak > 0
        return peak

    t0 = time.monotonic()
    rss_bundle = measured(bundle_args(keys, image, dest))
    rss_unbundle = measured(["unbundle", "-m", dest / "big.img.manifest.xml", "-k",
                             keys["user_key"], "-d", out])
    elapsed = time.monotonic() - t0
    # A few MiB of buffers (plus ASan's shadow memory in sanitizer builds): far below 3 GiB.
    assert rss_bundle < 256 * 1024, f"bundle max RSS {rss_bundle} KiB"
    assert rss_unbundle < 256 * 1024, f"unbundle max RSS {rss_unbundle} KiB"
    result = out / "big.img"
    assert result.stat().st_size == size
    with open(result, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(size - 4)
        assert f.read(4) == b"tail"
    # Unbundle writes zero runs as holes.
    assert result.stat().st_blocks * 512 < 64 << 20
    print(f"3 GiB bundle+unbundle: {elapsed:.1f}s, RSS {rss_bundle}/{rss_unbundle} KiB")
