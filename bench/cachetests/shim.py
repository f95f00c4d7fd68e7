#!/usr/bin/env python3
"""Tiny reverse-proxy shim for running the cache-tests.fyi CLI against tuskd.

tuskd serves GET/HEAD only, but the suite's client sends `PUT /config/<uuid>`
through the base URL. This shim sends PUT /config/* straight to the origin and
everything else to tuskd, unchanged: method, target, header lines (repeats and
order kept), body. The answer is relayed as received: status code and reason,
header lines (repeats and order kept), body. No caching; one http.client
connection per request.

usage: shim.py LISTEN_PORT TUSKD_PORT ORIGIN_PORT   (all on 127.0.0.1)
"""
import http.client
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
LISTEN_PORT = int(sys.argv[1])
TUSKD_PORT = int(sys.argv[2])
ORIGIN_PORT = int(sys.argv[3])
TIMEOUT = 60
VERBOSE = len(sys.argv) > 4 and sys.argv[4] == "-v"


class Shim(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shim"

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("shim: " + (fmt % args) + "\n")

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            body = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body, True
                body += self.rfile.read(size)
                self.rfile.readline()
        n = self.headers.get("Content-Length")
        if n is not None:
            return self.rfile.read(int(n)), False
        return None, False

    def _proxy(self):
        body, was_chunked = self._read_body()
        if self.command == "PUT" and self.path.startswith("/config/"):
            port = ORIGIN_PORT
        else:
            port = TUSKD_PORT
        conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
        try:
            conn.putrequest(self.command, self.path, skip_host=True,
                            skip_accept_encoding=True)
            for name, value in self.headers.items():
                if was_chunked and name.lower() == "transfer-encoding":
                    continue
                conn.putheader(name, value)
            if was_chunked:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            rbody = resp.read()  # http.client reads no body for HEAD/1xx/204/304
        except (OSError, http.client.HTTPException) as e:
            msg = ("shim: upstream 127.0.0.1:%d failed: %r\n" % (port, e)).encode()
            self.send_response_only(502, "Bad Gateway")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(msg)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(msg)
            self.close_connection = True
            conn.close()
            return
        conn.close()

        headers = resp.getheaders()  # every line, in order, repeats kept
        names = {n.lower() for n, _ in headers}
        chunked_up = "chunked" in (resp.getheader("Transfer-Encoding") or "").lower()
        self.send_response_only(resp.status, resp.reason)
        for name, value in headers:
            if chunked_up and name.lower() == "transfer-encoding":
                continue  # de-chunked by http.client: framed with Content-Length below
            self.send_header(name, value)
        if (chunked_up or "content-length" not in names) and \
                self.command != "HEAD" and resp.status not in (204, 304) and \
                not 100 <= resp.status < 200:
            self.send_header("Content-Length", str(len(rbody)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(rbody)
        self.wfile.flush()

    def __getattr__(self, name):  # any method (do_FOO) is relayed as is
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


if __name__ == "__main__":
    srv = Server((HOST, LISTEN_PORT), Shim)
    sys.stderr.write("shim listening on %s:%d -> tuskd %d, PUT /config/* -> origin %d\n"
                     % (HOST, LISTEN_PORT, TUSKD_PORT, ORIGIN_PORT))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
