"""`tusk describe-images` byte for byte (EUSTORE.md §1.6) for a fixture catalog in each format,
the catalog.json → catalog fallback, and catalogs with missing or mistyped keys (reported on
stderr, never a crash). The catalog is served by a tiny local HTTP server; no radosgw needed.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_installer_bundle import run_tusk

CATALOG = {
    "version": "eustore-catalog-2011-12-29",
    "images": [
        {
            "name": "4150406313",
            "description": "CentOS 5 1.3GB root, Hypervisor-Specific Kernels",
            "version": "2011.07.02",
            "architecture": "x86_64",
            "os": "centos",
            "url": "starter-emis/euca-centos-2011.07.02-x86_64.tgz",
            "date": "20110716161844",
            "recipe": "centos-based",
            "stamp": "6e69-7565",
            "contact": "images@lists.eucalyptus.com",
            "single-kernel": "False",
            "hypervisors-supported": ["xen", "kvm"],
        },
        {
            "name": "0222977072",
            "description": "Débian sid — long",
            "version": "experimental-images",
            "architecture": "i386",
            "os": "débian",
            "url": "x/y.tgz",
            "date": "20120101000000",
            "recipe": "a-very-long-recipe-name-indeed",
            "stamp": "0123-4567",
            "contact": "x@example.com",
            "single-kernel": "True",
            "hypervisors-supported": ["xen", "kvm", "vmware"],
            "min-size": "m1.medium",
        },
    ],
}

TABLE = (
    "4150406313 centos      x86_64  2011.07.02     xen, kvm          "
    "CentOS 5 1.3GB root, Hypervisor-Specific Kernels\n"
    "0222977072 débian      i386    experimental-..xen, kvm, vmware  Débian sid — long\n"
)
TABLE_V = (
    "4150406313 centos      x86_64  2011.07.02     xen, kvm          "
    "CentOS 5 1.3GB root, Hypervisor-Specific Kernels\n"
    "     20110716161844      6e69-7565   centos-based           images@lists.eucalyptus.com\n"
    "0222977072 débian      i386    experimental-..xen, kvm, vmware  Débian sid — long\n"
    "     20120101000000      0123-4567   a-very-long-recipe-na..x@example.com\n"
)
TSV = (
    "4150406313\tcentos\tx86_64\t2011.07.02\txen,kvm\t"
    "CentOS 5 1.3GB root, Hypervisor-Specific Kernels\n"
    "0222977072\tdébian\ti386\texperimental-images\txen,kvm,vmware\tDébian sid — long\n"
)
TSV_V = (
    "4150406313\tcentos\tx86_64\t2011.07.02\txen,kvm\t"
    "CentOS 5 1.3GB root, Hypervisor-Specific Kernels"
    "\t20110716161844\t6e69-7565\tcentos-based\timages@lists.eucalyptus.com\n"
    "0222977072\tdébian\ti386\texperimental-images\txen,kvm,vmware\tDébian sid — long"
    "\t20120101000000\t0123-4567\ta-very-long-recipe-name-indeed\tx@example.com\n"
)
JSON_KEYS = ["name", "description", "version", "architecture", "os", "url", "date", "recipe",
             "stamp", "contact", "single-kernel", "hypervisors-supported"]


class CatalogServer:
    """Serves {path: bytes} on 127.0.0.1; 404 for anything else. Records requested paths."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.paths.append(self.path)
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found"
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(files):
        s = CatalogServer(files)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize(
    "args,expected",
    [([], TABLE), (["-v"], TABLE_V), (["--format", "tsv"], TSV), (["--format", "tsv", "-v"], TSV_V),
     (["--format", "table"], TABLE)],
)
def test_describe_images_byte_for_byte(serve, args, expected):
    s = serve({"/catalog.json": json.dumps(CATALOG).encode()})
    p = run_tusk("describe-images", "-U", s.url, *args)
    assert p.stdout == expected
    assert p.stderr == ""


def test_describe_images_json(serve):
    s = serve({"/catalog.json": json.dumps(CATALOG).encode()})
    p = run_tusk("describe-images", "-U", s.url, "--format", "json")
    expected = [{k: img[k] for k in JSON_KEYS} for img in CATALOG["images"]]
    assert p.stdout == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def test_eustore_url_env_and_catalog_fallback(serve):
    """EUSTORE_URL without a trailing slash; only `catalog` served (eustore 2.1 path)."""
    s = serve({"/store/catalog": json.dumps(CATALOG).encode()})
    p = run_tusk("describe-images", "--format", "tsv", env={"EUSTORE_URL": s.url + "store"})
    assert p.stdout == TSV
    assert s.paths == ["/store/catalog.json", "/store/catalog"]


def test_missing_and_mistyped_keys_are_reported_not_fatal(serve):
    doc = {"images": [{"name": "1136548044", "url": "a.tgz", "os": "debian"}, 5,
                      {"name": "2", "os": ["x"], "hypervisors-supported": "kvm"}]}
    s = serve({"/catalog.json": json.dumps(doc).encode()})
    p = run_tusk("describe-images", "-U", s.url, "--format", "tsv")
    assert p.stdout == "1136548044\tdebian\t\t\t\t\n2\t\t\t\tkvm\t\n"
    assert 'image #1 "1136548044": missing key "architecture"' in p.stderr
    assert "image #2: not a JSON object, skipped" in p.stderr
    assert 'image #3 "2": key "os" is not a string' in p.stderr
    # The table form pads the empty fields.
    p = run_tusk("describe-images", "-U", s.url)
    assert p.stdout.splitlines()[0] == "1136548044 debian      " + " " * (8 + 15 + 18)


@pytest.mark.parametrize(
    "body,message",
    [(b"{not json", "not valid JSON"), (b'{"images": 3}', 'no "images" array'),
     (b"[1, 2]", "not a JSON object")],
)
def test_broken_catalog_is_a_clear_error(serve, body, message):
    s = serve({"/catalog.json": body})
    p = run_tusk("describe-images", "-U", s.url, check=False)
    assert p.returncode == 1
    assert message in p.stderr and "catalog.json" in p.stderr, p.stderr
    assert p.stdout == ""


def test_unreachable_catalog(serve):
    s = serve({})
    p = run_tusk("describe-images", "-U", s.url, check=False)
    assert p.returncode == 1
    assert "HTTP 404" in p.stderr, p.stderr
