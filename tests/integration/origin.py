"""A scripted HTTP/1.1 origin for the HTTP caching tests (stdlib only): S3 cannot send most of
the headers RFC 9111 is about, so tuskd is pointed at this origin through an upstream with
`signature: none`, beside radosgw.

Each path answers what the test last set for it (`Origin.set`): a status, header lines (in order,
repeats allowed) and a body. A GET with a Range of one span of a 200 gets a 206. A conditional GET
whose If-None-Match names the answer's ETag (or, without If-None-Match, whose If-Modified-Since
equals its Last-Modified) gets a 304 carrying `not_modified` headers, when the test gave them
(None: the origin never answers 304). `fail` makes the path fail: an HTTP status, or "close" (the
connection is closed without an answer). `echo` ends the body with a request header's value (a
response that varies), `delay` holds the answer back. Every request is recorded with its
headers.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Script:
    status: int = 200
    headers: list = dataclasses.field(default_factory=list)  # [(name, value)]
    body: bytes = b""
    not_modified: list | None = None  # headers of a 304 to a matching conditional GET
    fail: int | str | None = None
    echo: str | None = None  # a request header whose value ends the body (":<value>")
    delay: float = 0.0  # seconds before answering


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: list  # [(name, value)] as received

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Origin:
    def __init__(self):
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {}
        self._seen: list[Seen] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                origin._answer(self, head=False)

            def do_HEAD(self):
                origin._answer(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "Origin":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, path: str, status: int = 200, headers=(), body: bytes = b"",
            not_modified=None, fail=None, echo=None, delay=0.0) -> None:
        with self._lock:
            self._scripts[path] = Script(status, list(headers), body,
                                         None if not_modified is None else list(not_modified),
                                         fail, echo, delay)

    def seen(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if path is None or s.path == path]

    def count(self, path: str) -> int:
        return len(self.seen(path))

    def _answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self._seen.append(Seen(h.command, h.path, list(h.headers.items())))
            script = self._scripts.get(path)
        if script is None:
            return self._send(h, 404, [("Content-Type", "text/plain")], b"no script\n", head)
        if script.delay:
            time.sleep(script.delay)
        if script.fail == "close":
            h.close_connection = True
            h.wfile.flush()
            h.connection.shutdown(2)
            return None
        if isinstance(script.fail, int):
            return self._send(h, script.fail, [("Content-Type", "text/plain")], b"failing\n", head)
        if script.not_modified is not None and self._matches(h, script):
            return self._send(h, 304, script.not_modified, b"", head=True)
        status, headers, body = script.status, list(script.headers), script.body
        if script.echo is not None:
            body += b":" + (h.headers.get(script.echo) or "").encode()
        rng = h.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if status == 200 and m and int(m.group(1)) < len(body):
            first = int(m.group(1))
            last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
            headers.append(("Content-Range", f"bytes {first}-{last}/{len(body)}"))
            status, body = 206, body[first:last + 1]
        return self._send(h, status, headers, body, head)

    @staticmethod
    def _matches(h, script: Script) -> bool:
        def field(name):
            for k, v in script.headers:
                if k.lower() == name:
                    return v
            return None
        inm = h.headers.get("If-None-Match")
        if inm is not None:  # RFC 9110 §13.2.2: If-None-Match first, If-Modified-Since ignored
            etag = field("etag")
            return etag is not None and etag in [t.strip() for t in inm.split(",")]
        ims = h.headers.get("If-Modified-Since")
        return ims is not None and ims == field("last-modified")

    @staticmethod
    def _send(h, status: int, headers, body: bytes, head: bool) -> None:
        h.send_response_only(status)
        has_length = any(k.lower() == "content-length" for k, _ in headers)
        for k, v in headers:
            h.send_header(k, v)
        if status != 304 and not has_length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and status != 304:
            h.wfile.write(body)
