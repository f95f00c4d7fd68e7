"""Small helpers shared by the tuskd integration tests: raw HTTP over a socket (for requests
that well-behaved client libraries refuse to send), multipart/byteranges parsing, uploads."""
from __future__ import annotations

import re
import socket


def raw_request(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Sends `request` verbatim to 127.0.0.1:port and reads until the server closes or the
    Content-Length is met. Returns (status, lowercased headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        want = int(headers.get("content-length", "-1"))
        while want < 0 or len(body) < want:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            body += chunk
        return status, headers, body


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """multipart/byteranges → [(Content-Range, part bytes)]."""
    m = re.search(r"boundary=([^;\s]+)", content_type)
    assert m, content_type
    boundary = b"--" + m.group(1).encode()
    parts = body.split(boundary)
    out = []
    for p in parts[1:]:
        if p.startswith(b"--"):
            break
        head, _, data = p.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n"), "part must end with CRLF before the next boundary"
        cr = re.search(rb"Content-Range: (.*)", head).group(1).decode().strip()
        out.append((cr, data[:-2]))
    return out


def split_responses(data: bytes, head_only: list[bool]) -> list[tuple[int, dict, bytes]]:
    """Splits a stream of HTTP/1.1 responses (Content-Length framed) into (status, lowercased
    headers, body); `head_only[i]` says response i answers a HEAD (no body follows)."""
    out = []
    for is_head in head_only:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"response {len(out)} incomplete: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = 0 if is_head else int(headers["content-length"])
        assert len(rest) >= n, f"response {len(out)} body short: {len(rest)} < {n}"
        out.append((int(lines[0].split()[1]), headers, rest[:n]))
        data = rest[n:]
    assert data == b"", f"bytes after the last response: {data[:200]!r}"
    return out


def read_until_close(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data
