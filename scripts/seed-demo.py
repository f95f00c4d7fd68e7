#!/usr/bin/python3
"""Seeds a radosgw (started by scripts/radosgw.sh) with a small eustore demo: private bucket
`starter-emis` holding two images (one single-kernel, one hypervisor-specific) and a catalog.json
naming them by their eustore checksums. Writes OUT/demo.env describing what it uploaded.
Usage: scripts/seed-demo.py --env RGW_DIR/env --out DIR [--size-mb N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "starter-emis"


def load_harness():
    """Imports tests/integration/harness.py by path (it is not an installed package)."""
    path = ROOT / "tests" / "integration" / "harness.py"
    spec = importlib.util.spec_from_file_location("tusk_harness", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--env", required=True, help="env file written by scripts/radosgw.sh start")
    ap.add_argument("--out", required=True, help="directory for the tarballs and demo.env")
    ap.add_argument("--size-mb", type=float, default=3, help="size of each .img (default 3)")
    args = ap.parse_args()

    h = load_harness()
    rgw = h.Rgw.from_env_file(args.env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images = [
        h.make_image_tarball(out / "euca-demo-single-x86_64.tgz", "euca-demo-single",
                             single_kernel=True, size_mb=args.size_mb),
        h.make_image_tarball(out / "euca-demo-hvspecific-x86_64.tgz", "euca-demo-hvspecific",
                             single_kernel=False, size_mb=args.size_mb),
    ]
    s3 = rgw.s3("tusk")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET, ACL="private")
    for img in images:
        with open(img.path, "rb") as f:
            s3.put_object(Bucket=BUCKET, Key=img.path.name, Body=f, ACL="private",
                          ContentType="application/x-gzip")
    doc = h.catalog_bytes(images, url_prefix=f"{BUCKET}/")
    (out / "catalog.json").write_bytes(doc)
    s3.put_object(Bucket=BUCKET, Key="catalog.json", Body=doc, ACL="private",
                  ContentType="application/json", CacheControl="max-age=60")

    lines = [
        f"DEMO_BUCKET='{BUCKET}'",
        "DEMO_CATALOG_KEY='catalog.json'",
        f"DEMO_SINGLE_NAME='{images[0].eustore_name}'",
        f"DEMO_SINGLE_KEY='{images[0].path.name}'",
        f"DEMO_HVSPECIFIC_NAME='{images[1].eustore_name}'",
        f"DEMO_HVSPECIFIC_KEY='{images[1].path.name}'",
        f"DEMO_DIR='{out.resolve()}'",
    ]
    (out / "demo.env").write_text("\n".join(lines) + "\n")
    for img in images:
        print(f"seed-demo: {BUCKET}/{img.path.name}  {img.size} bytes  name {img.eustore_name}"
              f"  single-kernel={img.single_kernel}")
    print(f"seed-demo: {BUCKET}/catalog.json  {len(doc)} bytes; wrote {out / 'demo.env'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
