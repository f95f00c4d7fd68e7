"""`tusk presign URL --key-file F` (installer/cli_presign.cc over s3/presign.cc): the URL it prints
is, byte for byte, the one boto3's generate_presigned_url('get_object') makes for the same key,
endpoint (path style), region and time; --expires, --region and an existing query are honoured;
and the errors: a missing, empty, two-key or malformed key file, --expires over 7 days or junk, a
URL that cannot be presigned. The secret never appears in any output. No server is needed.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time
import types
import urllib.parse

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from test_installer_bundle import tusk_cli_path

ACCESS = "AKIAPRESIGNTEST00001"
SECRET = "pr3s1gn/Secret+Key=WithOddBytes0123456789"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def presign(*args) -> subprocess.CompletedProcess:
    p = subprocess.run([tusk_cli_path(), "presign", *map(str, args)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL)
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, p.stderr
    assert SECRET not in p.stdout and SECRET not in p.stderr, "the secret was printed"
    return p


@pytest.fixture
def key_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text(f"# tuskd client key\n\n{ACCESS}:{SECRET}\n")
    return f


def boto_url(monkeypatch, endpoint, bucket, key, when, expires, region="us-east-1", **params):
    """boto3's presigned GET URL at time `when` (botocore's clocks pinned)."""
    fixed = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).replace(tzinfo=None)

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    # Debian's botocore calls datetime.datetime.utcnow(); newer ones get_current_datetime().
    monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(datetime=FixedDateTime))
    if hasattr(botocore.auth, "get_current_datetime"):
        monkeypatch.setattr(botocore.auth, "get_current_datetime",
                            lambda remove_tzinfo=True: fixed)
    client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                          config=Config(signature_version="s3v4",
                                        s3={"addressing_style": "path"}))
    return client.generate_presigned_url("get_object",
                                         Params={"Bucket": bucket, "Key": key, **params},
                                         ExpiresIn=expires)


def signed_at(url: str) -> int:
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    return int(datetime.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
               .replace(tzinfo=datetime.timezone.utc).timestamp())


# ---------------------------------------------------------------- URLs


def test_url_is_botocores(key_file, monkeypatch):
    before = int(time.time())
    p = presign("http://127.0.0.1:8080/images/foo.tgz", "--key-file", key_file)
    after = int(time.time())
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    url = p.stdout.strip()
    assert p.stdout == url + "\n" and "\n" not in url

    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:8080",
                                                        "/images/foo.tgz")
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    assert [k for k, _ in q] == ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                                 "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"]
    d = dict(q)
    when = signed_at(url)
    assert before <= when <= after
    assert d["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert d["X-Amz-Credential"] == (f"{ACCESS}/{time.strftime('%Y%m%d', time.gmtime(when))}"
                                     "/us-east-1/s3/aws4_request")
    assert d["X-Amz-Expires"] == "3600"  # default 1h
    assert d["X-Amz-SignedHeaders"] == "host"
    assert re.fullmatch(r"[0-9a-f]{64}", d["X-Amz-Signature"])

    assert url == boto_url(monkeypatch, "http://127.0.0.1:8080", "images", "foo.tgz", when, 3600)


@pytest.mark.parametrize("expires,seconds", [("30s", 30), ("15m", 900), ("2h", 7200),
                                             ("7d", 604800), ("90", 90)])
def test_expires(key_file, monkeypatch, expires, seconds):
    p = presign("http://edge:8080/images/a%20b.tgz", "--key-file", key_file, "--expires", expires)
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    assert f"&X-Amz-Expires={seconds}&" in url
    assert url == boto_url(monkeypatch, "http://edge:8080", "images", "a b.tgz", signed_at(url),
                           seconds)


def test_region_service_and_existing_query(key_file, monkeypatch):
    p = presign("http://edge:8080/images/x.tgz?response-content-type=text%2Fplain",
                "--key-file", key_file, "--region", "eu-west-1", "--service", "s3",
                "--expires", "1m")
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    assert url.startswith("http://edge:8080/images/x.tgz?response-content-type=text%2Fplain&"
                          "X-Amz-Algorithm=")
    assert "%2Feu-west-1%2Fs3%2Faws4_request" in url
    assert url == boto_url(monkeypatch, "http://edge:8080", "images", "x.tgz", signed_at(url), 60,
                           region="eu-west-1", ResponseContentType="text/plain")


def test_other_service_is_signed_into_the_scope(key_file):
    p = presign("http://edge/b/k", "--key-file", key_file, "--service", "tusk")
    assert p.returncode == 0, p.stderr
    assert "%2Fus-east-1%2Ftusk%2Faws4_request" in p.stdout


# ---------------------------------------------------------------- errors


def test_missing_key_file(tmp_path):
    p = presign("http://edge/b/k", "--key-file", tmp_path / "nope")
    assert p.returncode == 1
    assert "cannot read" in p.stderr and "nope" in p.stderr
    assert p.stdout == ""


def test_key_file_option_is_required():
    p = presign("http://edge/b/k")
    assert p.returncode == 2
    assert "--key-file" in p.stderr


@pytest.mark.parametrize("text,message", [
    ("", "holds no ACCESS_KEY:SECRET_KEY line"),
    ("# only a comment\n\n", "holds no ACCESS_KEY:SECRET_KEY line"),
    (f"{ACCESS}:{SECRET}\nAKIAOTHER:{SECRET}x\n", "holds 2 key lines"),
    (f"{ACCESS}{SECRET}\n", ":1: expected ACCESS_KEY:SECRET_KEY"),
    (f"\n{ACCESS}:\n", ":2: expected ACCESS_KEY:SECRET_KEY"),
    (f":{SECRET}\n", ":1: expected ACCESS_KEY:SECRET_KEY"),
    (f"{ACCESS}: {SECRET}\n", ":1: expected ACCESS_KEY:SECRET_KEY"),
    (f"AKIA/X:{SECRET}\n", ":1: expected ACCESS_KEY:SECRET_KEY"),
])
def test_bad_key_file(tmp_path, text, message):
    f = tmp_path / "keys"
    f.write_text(text)
    p = presign("http://edge/b/k", "--key-file", f)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("expires", ["8d", "604801", "0", "0s", "-1h", "1w", "soon", "1.5h", ""])
def test_bad_expires(key_file, expires):
    p = presign("http://edge/b/k", "--key-file", key_file, "--expires", expires)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("url,message", [
    ("ftp://edge/b/k", "http:// or https://"),
    ("edge/b/k", "http:// or https://"),
    ("http:///b/k", "no host"),
    ("http://edge/b/a b", "percent-encoded"),
    ("http://edge/b/%zz", "percent-escape"),
    ("http://edge/b/k#frag", "fragment"),
    ("http://edge/b/k?X-Amz-Signature=00", "already carries presign parameters"),
])
def test_bad_url(key_file, url, message):
    p = presign(url, "--key-file", key_file)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert p.stdout == ""
