#!/usr/bin/python3
# Independent signer for tests/s3/sign_test.cc: signs requests with botocore (HmacV1Auth,
# S3SigV4Auth, SigV4Auth) at a fixed time and prints each Authorization header on its own line.
# Input (argv[1]): one case per line, tab-separated hex-encoded UTF-8 fields:
#   kind(v2|v4s3|v4) method scheme_host_port path_or_bucket key region service access secret
#   unix_time body headers("name: value" lines) params("name=value" lines, v4 only)
# Tricky: botocore reads the clock itself, so both of its clocks are pinned here.
import datetime
import sys
import types
import urllib.parse
from email.utils import formatdate

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def unhex(s):
    return bytes.fromhex(s).decode("utf-8")


def pin_clock(t):
    fixed = datetime.datetime.utcfromtimestamp(t)

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDateTime)


def lines(s):
    return [l for l in s.split("\n") if l]


def sign(fields):
    (kind, method, origin, bucket_or_path, key, region, service, access, secret, t, body,
     headers, params) = [unhex(f) for f in fields]
    t = int(t)
    creds = Credentials(access, secret)
    if kind == "v4":
        url = origin + bucket_or_path  # a plain path; SigV4Auth encodes it itself
    else:
        # What boto3's S3 serializer does with a key: quote everything but unreserved and '/'.
        url = origin + bucket_or_path + "/" + urllib.parse.quote(key, safe="/~")
    req = AWSRequest(method=method, url=url, data=body.encode("utf-8") if body else None)
    for h in lines(headers):
        name, _, value = h.partition(":")
        req.headers[name] = value.lstrip()
    if kind == "v4":
        req.params = [tuple(p.split("=", 1)) for p in lines(params)]
    pin_clock(t)
    if kind == "v2":
        class FixedHmacV1(botocore.auth.HmacV1Auth):
            def _get_date(self):
                return formatdate(t, usegmt=True)

        auth = FixedHmacV1(creds)  # origin has no service path: resource is /bucket/key

        auth.add_auth(req)
    elif kind == "v4s3":
        botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(req)
    else:
        botocore.auth.SigV4Auth(creds, service, region).add_auth(req)
    return req.headers["Authorization"]


def main():
    with open(sys.argv[1], encoding="ascii") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                print(sign(line.split("\t")))


if __name__ == "__main__":
    main()
