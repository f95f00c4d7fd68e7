"""Helpers shared by bench/compare.py and bench/scale.py: processes in their own groups (stopped
by PID), CPU and memory of a process group, waiting for ports, small HTTP clients, wrk output."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


class TimeUp(Exception):
    pass


class Interrupted(Exception):
    pass


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def bound(self, seconds: float) -> float:
        """min(seconds, time left); raises TimeUp when nothing is left."""
        left = self.left()
        if left <= 1:
            raise TimeUp("global time limit reached")
        return min(seconds, left)


# ------------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every long-running process we start: own session (= process group), stopped by PID."""

    def __init__(self):
        self.items: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def spawn(self, name: str, argv: list[str], log_path: Path, **kw) -> subprocess.Popen:
        f = open(log_path, "ab")
        try:
            p = subprocess.Popen(
                argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kw,
            )
        finally:
            f.close()
        with self.lock:
            self.items.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 15) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the group may still hold children (nginx workers, varnish child): SIGKILL what is left
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(5)
        with self.lock:
            self.items = [(n, q) for n, q in self.items if q is not p]

    def stop_all(self) -> None:
        for _, p in reversed(list(self.items)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stop {p.pid}: {e}")


def group_stats(pgid: int):
    """(pid, fields of /proc/pid/stat after the command) of every live process in group pgid;
    fields[0] is the state (field 3), fields[2] the pgrp (field 5)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:
            yield d, fields


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime (fields 14 and 15) of every live process in process group pgid."""
    total = sum(int(f[11]) + int(f[12]) for _, f in group_stats(pgid))
    return total / os.sysconf("SC_CLK_TCK")


def group_rss_bytes(pgid: int) -> int:
    """Resident set size of every live process in process group pgid (VmRSS)."""
    total = 0
    for pid, _ in group_stats(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def proc_wchar(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_port(port: int, proc: subprocess.Popen, name: str, log_path: Path, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode} during start-up; {log_path}:\n{tail(log_path)}"
            )
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} not listening on {port} after {timeout}s; {log_path}:\n{tail(log_path)}")


def http_get(port: int, path: str, headers=None, timeout: float = 60) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------
# clients


def parse_wrk(out: str) -> dict:
    def num(pat):
        m = re.search(pat, out)
        return float(m.group(1)) if m else None

    r = {"req/s": num(r"Requests/sec:\s+([\d.]+)")}
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m:
        r["p99 ms"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m50:
        r["p50 ms"] = float(m50.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m50.group(2)]
    r["non-2xx"] = int(num(r"Non-2xx or 3xx responses:\s+(\d+)") or 0)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def curl_get(port: int, path: str, timeout: float, extra=(), out="/dev/null") -> dict:
    fmt = "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"
    p = subprocess.run(["curl", "-s", "-o", out, "-w", fmt, "--max-time", str(int(timeout)), *extra,
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                       timeout=timeout + 10)
    code, size, ttfb, total = p.stdout.split()
    return {"code": int(code), "size": int(size), "ttfb": float(ttfb), "total": float(total),
            "rc": p.returncode}
