#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 relay between tuskd and its upstream (stdlib asyncio only).

It forwards one request per connection (`Connection: close` both ways), streams bodies of any
size, records every forwarded request line and headers, and misbehaves on demand: see MODES.
Use it in-process (Relay(...).start(), runs its own event loop in a thread; set_mode() at any
time) or as a script:  relay.py --listen PORT --upstream HOST:PORT --mode MODE [--control PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODES = """\
pass                      forward unchanged
down                      accept, then close at once (nothing read, nothing forwarded)
refuse                    not listening: connections are refused
stall                     forward, send the response headers, then hang (no body, no close)
truncate:N                close after N body bytes
slow:BYTES_PER_SEC[:MS]   throttle each response body; wait MS before forwarding each request
ignore-range              strip Range from the request: the upstream answers 200 with all bytes
walrus-range              206 + `Content-Range: bytes a-b/n` becomes 200 + `Content-Range: a-b/n`
lie-length[:EXTRA]        advertise Content-Length + EXTRA (default 4096), send the real body, close
change-etag[:VALUE]       replace the ETag (default: a different quoted 32-hex value)
add-header:NAME:VALUE     add a response header (e.g. add-header:Vary:Accept-Encoding)
flip:OFFSET               invert the object's byte at OFFSET in every body that carries it
                          (206 answers by their Content-Range; headers and ETag unchanged)"""

HEAD_LIMIT = 1 << 20  # longest accepted request/response head
COPY_BLOCK = 256 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect"}


@dataclasses.dataclass(frozen=True)
class Mode:
    kind: str
    n: int = 0  # truncate: bytes; slow: bytes/s; lie-length: extra bytes; flip: offset
    delay_ms: int = 0  # slow
    value: str = ""  # change-etag

    @staticmethod
    def parse(text: str) -> "Mode":
        kind, _, rest = text.partition(":")
        args = rest.split(":") if rest else []
        try:
            if kind in ("pass", "down", "refuse", "stall", "ignore-range", "walrus-range") and not args:
                return Mode(kind)
            if kind in ("truncate", "flip") and len(args) == 1:
                return Mode(kind, n=int(args[0]))
            if kind == "slow" and 1 <= len(args) <= 2:
                return Mode(kind, n=int(args[0]), delay_ms=int(args[1]) if len(args) == 2 else 0)
            if kind == "lie-length" and len(args) <= 1:
                return Mode(kind, n=int(args[0]) if args else 4096)
            if kind == "change-etag":
                return Mode(kind, value=rest)
            if kind == "add-header" and len(args) >= 2 and args[0]:
                return Mode(kind, value=rest)
        except ValueError:
            pass
        raise ValueError(f"bad relay mode {text!r}; modes:\n{MODES}")

    def __str__(self) -> str:
        if self.kind in ("truncate", "flip"):
            return f"{self.kind}:{self.n}"
        if self.kind == "slow":
            return f"slow:{self.n}:{self.delay_ms}"
        if self.kind == "lie-length":
            return f"lie-length:{self.n}"
        if self.kind in ("change-etag", "add-header") and self.value:
            return f"{self.kind}:{self.value}"
        return self.kind


@dataclasses.dataclass
class RecordedRequest:
    """A forwarded request: `headers` as the upstream saw them (after the mode's changes, with
    our `Connection: close`), `client_headers` as the client sent them."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    client_headers: list[tuple[str, str]]
    mode: str
    status: int | None = None  # the upstream's status, once known

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# -- HTTP head helpers ---------------------------------------------------------------------------


def parse_head(head: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    """Splits a head into the three start-line fields and (name, value) header pairs."""
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return start, headers


def get_header(headers, name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def drop_headers(headers, names) -> list[tuple[str, str]]:
    names = {n.lower() for n in names}
    return [(k, v) for k, v in headers if k.lower() not in names]


def set_header(headers, name: str, value: str) -> list[tuple[str, str]]:
    return drop_headers(headers, [name]) + [(name, value)]


def build_head(start: str, headers) -> bytes:
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")


# -- the relay -----------------------------------------------------------------------------------


class Relay:
    """Listens on 127.0.0.1:port (0 = pick one; kept across refuse/re-listen) and forwards to
    upstream ("host:port", or (host, port), or an http:// URL). Thread-safe API: set_mode,
    requests, clear, stop."""

    def __init__(self, upstream, mode: str = "pass", port: int = 0, host: str = "127.0.0.1"):
        if isinstance(upstream, str):
            netloc = urlsplit(upstream).netloc if "://" in upstream else upstream
            h, _, p = netloc.rpartition(":")
            upstream = (h, int(p))
        self.upstream = upstream
        self.host = host
        self.port = port
        self._mode = Mode.parse(mode)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- public API (any thread) --

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mode(self) -> str:
        return str(self._mode)

    def start(self) -> "Relay":
        ready = threading.Event()
        error: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._apply_listen())
            except BaseException as e:  # report bind errors to the caller
                error.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"relay-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            raise error[0]
        return self

    def set_mode(self, mode: str) -> None:
        """Switches mode for connections accepted from now on (refuse closes the listener)."""
        self._mode = Mode.parse(mode)
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._apply_listen(), self._loop).result(10)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def stop(self) -> None:
        """Closes the listener and every connection (stalled ones included)."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- event loop side --

    async def _apply_listen(self) -> None:
        want = self._mode.kind != "refuse"
        if want and self._server is None:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, reuse_address=True, limit=HEAD_LIMIT
            )
            self.port = self._server.sockets[0].getsockname()[1]
        elif not want and self._server is not None:
            self._server.close()  # listening socket only; open connections go on
            self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._tasks.add(task)
        mode = self._mode  # one mode per connection
        uwriter = None
        try:
            if mode.kind == "down":
                return
            head = await creader.readuntil(b"\r\n\r\n")
            (method, target, version), headers = parse_head(head)
            if mode.kind == "slow" and mode.delay_ms:
                await asyncio.sleep(mode.delay_ms / 1000)

            # The request as forwarded: one request per connection, no 100-continue dance.
            out = drop_headers(headers, HOP_BY_HOP)
            if mode.kind == "ignore-range":
                out = drop_headers(out, ["range"])
            out.append(("Connection", "close"))
            rec = RecordedRequest(method, target, version, out, headers, str(mode))
            with self._lock:
                self._requests.append(rec)
            if (get_header(headers, "expect") or "").lower() == "100-continue":
                cwriter.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                ureader, uwriter = await asyncio.open_connection(
                    *self.upstream, limit=HEAD_LIMIT
                )
            except OSError as e:
                body = f"relay: upstream {self.upstream} unreachable: {e}\n".encode()
                cwriter.write(
                    build_head(
                        "HTTP/1.1 502 Bad Gateway",
                        [("Content-Length", str(len(body))), ("Connection", "close")],
                    )
                    + body
                )
                await cwriter.drain()
                return
            uwriter.write(build_head(f"{method} {target} {version}", out))
            await self._copy_request_body(creader, uwriter, headers)

            # The response.
            rhead = await ureader.readuntil(b"\r\n\r\n")
            (rversion, code, *reason), rheaders = parse_head(rhead)
            status = int(code)
            rec.status = status
            reason_text = reason[0] if reason else ""
            length = self._body_length(method, status, rheaders)
            rheaders = drop_headers(rheaders, ["connection", "keep-alive"])
            rheaders.append(("Connection", "close"))
            if mode.kind == "walrus-range" and status == 206:
                cr = get_header(rheaders, "content-range") or ""
                if cr.startswith("bytes "):
                    rheaders = set_header(rheaders, "Content-Range", cr[len("bytes ") :])
                status, reason_text = 200, "OK"
            elif mode.kind == "lie-length" and length is not None:
                rheaders = set_header(rheaders, "Content-Length", str(length + mode.n))
            elif mode.kind == "change-etag" and get_header(rheaders, "etag") is not None:
                old = get_header(rheaders, "etag")
                new = mode.value or '"' + hashlib.md5(b"changed:" + old.encode()).hexdigest() + '"'
                rheaders = set_header(rheaders, "ETag", new)
            elif mode.kind == "add-header":
                name, _, value = mode.value.partition(":")
                rheaders.append((name, value))
            cwriter.write(build_head(f"{rversion} {status} {reason_text}".rstrip(), rheaders))
            await cwriter.drain()

            if mode.kind == "stall":
                await asyncio.Event().wait()  # until stop() cancels us
            limit = mode.n if mode.kind == "truncate" else None
            rate = mode.n if mode.kind == "slow" else None
            flip = None
            if mode.kind == "flip" and status in (200, 206):
                start = 0
                cr = get_header(rheaders, "content-range") or ""
                if status == 206 and cr.startswith("bytes ") and "-" in cr:
                    start = int(cr[len("bytes ") :].split("-")[0])
                flip = mode.n - start  # body offset of the byte (may be outside this body)
            await self._copy_body(ureader, cwriter, length, limit, rate, flip)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass  # a side went away: close both
        except asyncio.CancelledError:
            pass
        finally:
            for w in (uwriter, cwriter):
                if w is not None:
                    try:
                        w.close()
                    except Exception:
                        pass
            self._tasks.discard(task)

    @staticmethod
    def _body_length(method: str, status: int, headers) -> int | None:
        """Body bytes to copy: 0 for HEAD/1xx/204/304, Content-Length, or None (until EOF)."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return 0
        if (get_header(headers, "transfer-encoding") or "").lower() not in ("", "identity"):
            return None  # chunked: relayed as raw bytes until the upstream closes
        cl = get_header(headers, "content-length")
        return int(cl) if cl is not None else None

    @staticmethod
    async def _copy_request_body(creader, uwriter, headers) -> None:
        te = (get_header(headers, "transfer-encoding") or "").lower()
        if "chunked" in te:
            # Relay chunk by chunk, as is, until the last chunk and the trailers.
            while True:
                line = await creader.readuntil(b"\r\n")
                uwriter.write(line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        trailer = await creader.readuntil(b"\r\n")
                        uwriter.write(trailer)
                        if trailer == b"\r\n":
                            break
                    break
                uwriter.write(await creader.readexactly(size + 2))
                await uwriter.drain()
        else:
            remaining = int(get_header(headers, "content-length") or 0)
            while remaining > 0:
                data = await creader.read(min(COPY_BLOCK, remaining))
                if not data:
                    raise ConnectionError("client closed during the request body")
                uwriter.write(data)
                remaining -= len(data)
                await uwriter.drain()
        await uwriter.drain()

    @staticmethod
    async def _copy_body(ureader, cwriter, length, limit, rate, flip=None) -> None:
        """Streams the response body: `length` bytes (None: until EOF), cut at `limit` bytes,
        at most `rate` bytes/s (this connection), the byte at body offset `flip` inverted."""
        sent = 0
        started = time.monotonic()
        block = COPY_BLOCK if not rate else max(1, min(COPY_BLOCK, rate // 20))
        while length is None or sent < length:
            want = block if length is None else min(block, length - sent)
            if limit is not None:
                want = min(want, limit - sent)
                if want <= 0:
                    return  # truncate: close now
            data = await ureader.read(want)
            if not data:
                return
            if flip is not None and sent <= flip < sent + len(data):
                b = bytearray(data)
                b[flip - sent] ^= 0xFF
                data = bytes(b)
            cwriter.write(data)
            sent += len(data)
            await cwriter.drain()
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)


# -- script mode ---------------------------------------------------------------------------------


def _control_server(relay: Relay, port: int) -> ThreadingHTTPServer:
    """GET /mode, GET|POST /mode?set=MODE, GET /requests (JSON), POST /clear."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: str, ctype="text/plain"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            u = urlsplit(self.path)
            q = parse_qs(u.query)
            if u.path == "/mode":
                if "set" in q:
                    try:
                        relay.set_mode(q["set"][0])
                    except ValueError as e:
                        return self._reply(400, str(e) + "\n")
                return self._reply(200, relay.mode + "\n")
            if u.path == "/requests":
                return self._reply(
                    200, json.dumps([r.to_json() for r in relay.requests]), "application/json"
                )
            if u.path == "/clear":
                relay.clear()
                return self._reply(200, "cleared\n")
            self._reply(404, "try /mode, /mode?set=MODE, /requests, /clear\n")

        do_POST = do_GET

        def log_message(self, fmt, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog="modes:\n" + MODES, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: pick one)")
    ap.add_argument("--upstream", required=True, help="HOST:PORT or http://HOST:PORT")
    ap.add_argument("--mode", default="pass")
    ap.add_argument("--control", type=int, help="control port on 127.0.0.1 (switch mode at runtime)")
    args = ap.parse_args(argv)
    try:
        relay = Relay(args.upstream, args.mode, port=args.listen).start()
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    ctl = _control_server(relay, args.control) if args.control is not None else None
    print(
        f"relay: {relay.url} -> {relay.upstream[0]}:{relay.upstream[1]} mode {relay.mode}"
        + (f", control http://127.0.0.1:{ctl.server_address[1]}" if ctl else ""),
        flush=True,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    seen = 0
    while not done.wait(0.2):
        reqs = relay.requests
        if len(reqs) < seen:  # cleared meanwhile
            seen = 0
        for r in reqs[seen:]:
            print(f"relay: [{r.mode}] {r.request_line}", flush=True)
        seen = len(reqs)
    relay.stop()
    if ctl:
        ctl.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
