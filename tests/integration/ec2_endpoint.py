#!/usr/bin/python3
"""A test EC2 Query endpoint that answers RegisterImage and DescribeImages like Eucalyptus, after checking the
request's signature with an implementation independent of tusk's: SigV2 (HmacSHA256) recomputed
here from EUSTORE.md §5, SigV4 (service ec2) by botocore. Optionally reads the manifest from S3
(a boto3 client) to check it exists and to tell kernel, ramdisk and machine images apart, as the
cloud does (§3.6). Errors are answered as EC2 error XML. Use in-process: Ec2Endpoint(...).start().
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PATH = "/services/compute"


@dataclasses.dataclass
class Call:
    """One request as received: params (form or query), the signature scheme seen, and what was
    answered."""

    method: str
    params: dict[str, str]
    headers: dict[str, str]
    scheme: str  # "v2", "v4" or "none"
    status: int = 0
    code: str = ""  # EC2 error code, "" on success
    image_id: str = ""
    images: list = dataclasses.field(default_factory=list)  # DescribeImages: the items answered


class Ec2Error(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _rfc3986(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def sigv2_expected(secret: str, method: str, host: str, path: str, params: dict[str, str]) -> str:
    """EUSTORE.md §5: base64 HMAC-SHA256 over METHOD, host, path and the sorted, RFC 3986 encoded
    query (Signature excluded)."""
    query = "&".join(
        f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    to_sign = f"{method}\n{host.lower()}\n{path or '/'}\n{query}"
    return base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).digest()).decode()


class Ec2Endpoint:
    """Listens on 127.0.0.1 (free port). url ends in /services/compute. Attributes: calls (list of
    Call), images (id -> dict with the RegisterImage params, kind and state), fail_next (set to
    (status, code, message) to fail the next RegisterImage), aws_not_found (DescribeImages of an
    unknown id fails with InvalidAMIID.NotFound as AWS does; Eucalyptus leaves it out),
    describe_fails (set to (status, code, message) to fail every DescribeImages)."""

    def __init__(self, access_key: str, secret_key: str, region: str = "eucalyptus", s3=None,
                 max_skew: float = 900):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.s3 = s3
        self.max_skew = max_skew
        self.calls: list[Call] = []
        self.images: dict[str, dict] = {}
        self.fail_next: tuple[int, str, str] | None = None
        self.aws_not_found = False
        self.describe_fails: tuple[int, str, str] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def start(self) -> "Ec2Endpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                endpoint._handle(self, "POST", body)

            def do_GET(self):
                endpoint._handle(self, "GET", b"")

            def log_message(self, fmt, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def registered(self, action: str = "RegisterImage") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.params.get("Action") == action and not c.code]

    def actions(self) -> list[str]:
        with self._lock:
            return [c.params.get("Action", "") for c in self.calls]

    def deregister(self, image_id: str, forget: bool = False) -> None:
        """As DeregisterImage: Eucalyptus keeps listing the image as 'deregistered' for a while
        (forget=False); AWS stops listing it (forget=True)."""
        with self._lock:
            if forget:
                del self.images[image_id]
            else:
                self.images[image_id]["state"] = "deregistered"

    # -- request handling -----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        split = urllib.parse.urlsplit(h.path)
        if method == "POST":
            ctype = h.headers.get("Content-Type", "")
            if not ctype.startswith("application/x-www-form-urlencoded"):
                self._reply(h, Call(method, {}, dict(h.headers), "none"),
                            Ec2Error(400, "InvalidParameterValue", f"bad Content-Type {ctype!r}"))
                return
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=bool(body))
        else:
            pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        params = dict(pairs)
        call = Call(method, params, {k.lower(): v for k, v in h.headers.items()}, "none")
        try:
            if len(params) != len(pairs):
                raise Ec2Error(400, "InvalidParameterCombination", "repeated parameter")
            if split.path != PATH:
                raise Ec2Error(404, "InvalidAction", f"no service at {split.path}")
            call.scheme = self._authenticate(h, method, split.path, params, body)
            action = params.get("Action")
            if action not in ("RegisterImage", "DescribeImages", "DeregisterImage"):
                raise Ec2Error(400, "InvalidAction", f"unsupported action {action!r}")
            if not params.get("Version"):
                raise Ec2Error(400, "MissingParameter", "Version is required")
            if action == "DescribeImages":
                call.images = self._describe(params)
                self._reply(h, call, None)
                return
            if action == "DeregisterImage":
                self._deregister(params)
                self._reply(h, call, None)
                return
            with self._lock:
                fail, self.fail_next = self.fail_next, None
            if fail:
                raise Ec2Error(*fail)
            call.image_id = self._register(params)
            self._reply(h, call, None)
        except Ec2Error as e:
            self._reply(h, call, e)

    def _authenticate(self, h, method: str, path: str, params: dict[str, str], body: bytes) -> str:
        auth = h.headers.get("Authorization", "")
        host = h.headers.get("Host", "")
        if auth.startswith("AWS4-HMAC-SHA256 "):
            m = re.fullmatch(
                r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})",
                auth,
            )
            if not m:
                raise Ec2Error(400, "IncompleteSignature", "malformed Authorization header")
            access, day, region, service, signed, signature = m.groups()
            if access != self.access_key:
                raise Ec2Error(401, "AuthFailure", "unknown access key")
            if service != "ec2" or region != self.region:
                raise Ec2Error(401, "AuthFailure", f"wrong scope {region}/{service}")
            amz_date = h.headers.get("X-Amz-Date", "")
            self._check_time(datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
            req = AWSRequest(method=method, url=f"http://{host}{h.path}", data=body)
            for name in signed.split(";"):
                value = h.headers.get(name)
                if value is None:
                    raise Ec2Error(400, "IncompleteSignature", f"signed header {name} missing")
                req.headers[name] = value
            req.context["timestamp"] = amz_date
            signer = botocore.auth.SigV4Auth(Credentials(self.access_key, self.secret_key),
                                             "ec2", self.region)
            canonical = signer.canonical_request(req)
            expected = signer.signature(signer.string_to_sign(req, canonical), req)
            if not hmac.compare_digest(expected, signature):
                raise Ec2Error(403, "SignatureDoesNotMatch", "SigV4 signature mismatch (botocore)")
            return "v4"
        if params.get("SignatureVersion") == "2":
            if params.get("SignatureMethod") != "HmacSHA256":
                raise Ec2Error(400, "InvalidParameterValue", "SignatureMethod must be HmacSHA256")
            if params.get("AWSAccessKeyId") != self.access_key:
                raise Ec2Error(401, "AuthFailure", "unknown access key")
            ts = params.get("Timestamp")
            if not ts:
                raise Ec2Error(400, "MissingParameter", "Timestamp is required")
            self._check_time(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
            expected = sigv2_expected(self.secret_key, method, host, path, params)
            if not hmac.compare_digest(expected, params.get("Signature", "")):
                raise Ec2Error(403, "SignatureDoesNotMatch", "SigV2 signature mismatch")
            return "v2"
        raise Ec2Error(401, "AuthFailure", "request is not signed")

    def _check_time(self, when: datetime) -> None:
        skew = abs(when.replace(tzinfo=timezone.utc).timestamp() - time.time())
        if skew > self.max_skew:
            raise Ec2Error(400, "RequestExpired", f"request time off by {skew:.0f}s")

    def _register(self, params: dict[str, str]) -> str:
        location = params.get("ImageLocation", "").lstrip("/")
        bucket, _, key = location.partition("/")
        if not bucket or not key:
            raise Ec2Error(400, "InvalidManifest", f"bad ImageLocation {location!r}")
        name = params.get("Name", "")
        if not name:
            raise Ec2Error(400, "MissingParameter", "Name is required")
        arch = params.get("Architecture", "i386")
        if arch not in ("i386", "x86_64", "armhf"):
            raise Ec2Error(400, "InvalidParameterValue", f"bad Architecture {arch!r}")
        kind = "machine"
        manifest = None
        if self.s3 is not None:
            try:
                text = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            except Exception as e:  # noqa: BLE001 - any S3 failure is an unreadable manifest
                raise Ec2Error(400, "InvalidManifest", f"cannot read {location}: {e}")
            manifest = ET.fromstring(text)
            mc = manifest.find("machine_configuration")
            if mc is not None and (mc.findtext("kernel_id") or "").lower() in ("true", "yes"):
                kind = "kernel"
            elif mc is not None and (mc.findtext("ramdisk_id") or "").lower() in ("true", "yes"):
                kind = "ramdisk"
            for part in manifest.iter("filename"):
                try:
                    self.s3.head_object(Bucket=bucket, Key=part.text)
                except Exception:  # noqa: BLE001
                    raise Ec2Error(400, "InvalidManifest", f"part {part.text} missing")
        else:
            kind = "kernel" if name.endswith("-kernel") else "ramdisk" if name.endswith("-ramdisk") else "machine"
        for ref, prefix in (("KernelId", "eki-"), ("RamdiskId", "eri-")):
            if params.get(ref) and params[ref] not in self.images:
                raise Ec2Error(400, "InvalidAMIID.NotFound", f"{params[ref]} is not registered")
        with self._lock:
            if any(img["Name"] == name and img["state"] != "deregistered"
                   for img in self.images.values()):
                raise Ec2Error(400, "InvalidAMIName.Duplicate", f"AMI name {name} is already in use")
            image_id = {"kernel": "eki-", "ramdisk": "eri-", "machine": "emi-"}[kind]
            image_id += secrets.token_hex(4).upper()
            self.images[image_id] = dict(params, kind=kind, state="available")
        return image_id

    def _deregister(self, params: dict[str, str]) -> None:
        """As Eucalyptus: the image stays listed as 'deregistered'; an unknown id is an error."""
        image_id = params.get("ImageId", "")
        with self._lock:
            if image_id not in self.images or self.images[image_id]["state"] == "deregistered":
                raise Ec2Error(400, "InvalidAMIID.NotFound", f"{image_id} does not exist")
            self.images[image_id]["state"] = "deregistered"

    def _describe(self, params: dict[str, str]) -> list[dict]:
        with self._lock:
            if self.describe_fails:
                raise Ec2Error(*self.describe_fails)
            ids = [v for k, v in sorted(params.items()) if re.fullmatch(r"ImageId\.\d+", k)]
            owners = [v for k, v in params.items() if re.fullmatch(r"Owner\.\d+", k)]
            if owners and owners != ["self"]:
                raise Ec2Error(400, "InvalidParameterValue", f"unsupported owners {owners}")
            if ids:
                unknown = [i for i in ids if i not in self.images]
                if unknown and self.aws_not_found:
                    raise Ec2Error(400, "InvalidAMIID.NotFound",
                                   f"The image id '[{unknown[0]}]' does not exist")
                return [dict(self.images[i], id=i) for i in ids if i in self.images]
            return [dict(img, id=i) for i, img in self.images.items()]

    @staticmethod
    def _item_xml(img: dict) -> str:
        esc = lambda v: (str(v).replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
                         .replace(">", "&gt;"))
        return ("<item>"
                f"<imageId>{img['id']}</imageId>"
                f"<imageLocation>{esc(img.get('ImageLocation', ''))}</imageLocation>"
                f"<imageState>{img['state']}</imageState>"
                "<imageOwnerId>123456789012</imageOwnerId><isPublic>false</isPublic>"
                f"<architecture>{esc(img.get('Architecture', 'i386'))}</architecture>"
                f"<imageType>{img['kind']}</imageType>"
                f"<name>{esc(img.get('Name', ''))}</name>"
                # A nested <item> that is not an image: clients must read only direct children.
                "<blockDeviceMapping><item><deviceName>/dev/sda1</deviceName>"
                "<imageId>emi-00000000</imageId></item></blockDeviceMapping>"
                "</item>")

    def _reply(self, h: BaseHTTPRequestHandler, call: Call, error: Ec2Error | None) -> None:
        request_id = str(uuid.uuid4())
        version = call.params.get("Version", "2013-02-01")
        if error is None and call.params.get("Action") == "DescribeImages":
            items = "".join(self._item_xml(i) for i in call.images)
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeImagesResponse '
                    f'xmlns="http://ec2.amazonaws.com/doc/{version}/"><requestId>{request_id}'
                    f"</requestId><imagesSet>{items}</imagesSet></DescribeImagesResponse>\n")
            call.status = 200
        elif error is None and call.params.get("Action") == "DeregisterImage":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DeregisterImageResponse '
                    f'xmlns="http://ec2.amazonaws.com/doc/{version}/"><requestId>{request_id}'
                    f"</requestId><return>true</return></DeregisterImageResponse>\n")
            call.status = 200
        elif error is None:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<RegisterImageResponse '
                    f'xmlns="http://ec2.amazonaws.com/doc/{version}/">\n  <requestId>{request_id}'
                    f"</requestId>\n  <imageId>{call.image_id}</imageId>\n</RegisterImageResponse>\n")
            call.status = 200
        else:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
                    f"{error.code}</Code><Message>{error.message}</Message></Error></Errors>"
                    f"<RequestID>{request_id}</RequestID></Response>\n")
            call.status, call.code = error.status, error.code
        with self._lock:
            self.calls.append(call)
        data = body.encode()
        h.send_response(call.status)
        h.send_header("Content-Type", "text/xml;charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
