#!/usr/bin/python3
# Independent presigner for tests/s3/presign_test.cc: boto3's generate_presigned_url('get_object')
# against a custom endpoint with path-style addressing (what clients of tuskd do), at a fixed
# time, one URL per line.
# Input (argv[1]): one case per line, tab-separated hex-encoded UTF-8 fields:
#   kind(v4|v2) endpoint bucket key access secret region unix_time expires_seconds
#   response_content_type (may be empty)
# Tricky: botocore reads the clock itself (datetime for SigV4, time.time() for SigV2), so both
# are pinned here; the module-level names are what botocore.auth looks up. Run by Debian's
# /usr/bin/python3 (its botocore), like botocore_sign.py.
import datetime
import sys
import types

import boto3
import botocore.auth
from botocore.config import Config


def unhex(s):
    return bytes.fromhex(s).decode("utf-8")


def pin_clock(t):
    fixed = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).replace(tzinfo=None)

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    # Debian's botocore (1.29) calls datetime.datetime.utcnow(); newer ones get_current_datetime().
    botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDateTime)
    if hasattr(botocore.auth, "get_current_datetime"):
        botocore.auth.get_current_datetime = lambda remove_tzinfo=True: fixed
    botocore.auth.time = types.SimpleNamespace(time=lambda: float(t))  # SigV2's Expires


def presign(fields):
    (kind, endpoint, bucket, key, access, secret, region, t, expires,
     response_type) = [unhex(f) for f in fields]
    pin_clock(int(t))
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4" if kind == "v4" else "s3",
                      s3={"addressing_style": "path"}),
    )
    params = {"Bucket": bucket, "Key": key}
    if response_type:
        params["ResponseContentType"] = response_type
    return client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


def main():
    with open(sys.argv[1], encoding="ascii") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                print(presign(line.split("\t")))


if __name__ == "__main__":
    main()
