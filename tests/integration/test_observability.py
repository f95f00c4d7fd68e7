"""Observability (issue 11): tuskd's /metrics passes `promtool check metrics` and exports only
series that happened; Debian's Prometheus server scrapes a tuskd and answers a counter back
through its query API; every query of the Grafana dashboard (packaging/grafana/tusk.json) names
a metric (and labels) a running tuskd exports; the access log, combined or JSON, to a file or
stdout, one line per request, reopened on SIGUSR1 after logrotate renamed it, never carrying a
credential."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness import free_port, parse_prometheus, wait_until
from util import raw_request

SOURCE = Path(os.environ.get("TUSK_SOURCE_DIR", Path(__file__).parents[2]))
DASHBOARD = SOURCE / "packaging/grafana/tusk.json"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
MiB = 1 << 20


def put(rgw, b, key, data):
    rgw.s3("tusk").put_object(Bucket=b, Key=key, Body=data)


def blob(n, seed=1):
    return random.Random(seed).randbytes(n)


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )


def families(text: str) -> dict[str, str]:
    """# TYPE lines: family name → type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


def traffic(t, b, rgw):
    """A miss (ranged), hits, a 404 from the upstream, a 404 of our own, a 2 MiB fill."""
    put(rgw, b, "small.img", blob(5000, 2))
    put(rgw, b, "big.img", blob(2 * MiB, 3))
    r = t.get("/images/small.img", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["X-Cache"] == "MISS", r.status_code
    t.wait_fills_settled()
    for _ in range(3):
        r = t.get("/images/small.img")
        assert r.status_code == 200 and r.headers["X-Cache"] == "HIT"
    assert t.get("/images/big.img").status_code == 200
    assert t.get("/images/missing.img").status_code == 404
    assert t.get("/no-route").status_code == 404
    t.wait_fills_settled()


# ---------------------------------------------------------------- /metrics


def test_promtool_can_fail():
    """The check below is worth something: promtool refuses a bad exposition."""
    assert promtool_check("# HELP foo x\n# TYPE foo counter\nfoo 1\n").returncode != 0


def test_metrics_pass_promtool_and_only_happened_series(rgw, bucket, make_tuskd):
    b = bucket()
    t = make_tuskd(b)
    idle = requests.get(t.admin_url + "/metrics", timeout=5).text
    assert "tusk_requests_total{" not in idle, "request series exported before any request"
    assert "tusk_upstream_requests_total{" not in idle

    traffic(t, b, rgw)
    text = requests.get(t.admin_url + "/metrics", timeout=5).text
    check = promtool_check(text)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    assert check.stdout.strip() == b"" and check.stderr.strip() == b""

    m = parse_prometheus(text)
    req = {dict(ls)["outcome"] + " " + dict(ls)["status"]: v
           for (n, ls), v in m.items() if n == "tusk_requests_total"}
    # Exactly what happened, nothing pre-created as zero.
    assert req == {"MISS 206": 1, "HIT 200": 3, "MISS 200": 1, "ERROR 404": 2}, req
    fams = families(text)
    for name, kind in {
        "tusk_requests_total": "counter",
        "tusk_served_bytes_total": "counter",
        "tusk_upstream_requests_total": "counter",
        "tusk_upstream_errors_total": "counter",
        "tusk_upstream_bytes_total": "counter",
        "tusk_upstream_ttfb_seconds": "histogram",
        "tusk_fill_throughput_bytes_per_second": "histogram",
        "tusk_coalesced_waiters_total": "counter",
        "tusk_resumed_fills_total": "counter",
        "tusk_fills_active": "gauge",
        "tusk_cache_bytes": "gauge",
        "tusk_cache_max_bytes": "gauge",
        "tusk_cache_disk_free_bytes": "gauge",
        "tusk_cache_disk_size_bytes": "gauge",
        "tusk_cache_objects": "gauge",
        "tusk_cache_evictions_total": "counter",
        "tusk_integrity_failures_total": "counter",
        "tusk_config_reloads_total": "counter",
        "tusk_connections_total": "counter",
    }.items():
        assert fams.get(name) == kind, (name, fams.get(name))
    assert t.metric("tusk_upstream_errors_total", upstream="rgw", kind="not_found") == 1
    # Two fills completed with bytes (the ranged miss went on to fill the whole object).
    assert t.metric("tusk_fill_throughput_bytes_per_second_count") == 2
    assert t.metric("tusk_fill_throughput_bytes_per_second_sum") > 0
    assert t.metric("tusk_upstream_ttfb_seconds_count") >= 2
    assert t.metric("tusk_cache_bytes") == 5000 + 2 * MiB
    free = t.metric("tusk_cache_disk_free_bytes")
    assert 0 < free <= t.metric("tusk_cache_disk_size_bytes")


# ---------------------------------------------------------------- Prometheus


class Prometheus:
    """Debian's Prometheus server on 127.0.0.1:<free port>, scraping `targets` every second,
    its storage under `workdir`; stopped by PID."""

    def __init__(self, workdir: Path, targets: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "prometheus.yml"
        cfg.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "tusk", "static_configs": [{"targets": targets}]}],
        }))
        check = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True,
                               timeout=30)
        assert check.returncode == 0, (check.stdout + check.stderr).decode()
        self.log_path = workdir / "prometheus.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def query(self, expr: str) -> list[dict]:
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of a one-series instant query; None while there is none."""
        try:
            result = self.query(expr)
        except requests.RequestException:
            return None  # not up yet
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_server(tmp):
    servers: list[Prometheus] = []

    def make(targets: list[str]) -> Prometheus:
        p = Prometheus(tmp / f"prometheus{len(servers)}", targets)
        servers.append(p)
        return p

    yield make
    for p in servers:
        p.stop()


def test_prometheus_scrapes_tuskd_and_answers_a_counter(rgw, bucket, make_tuskd,
                                                        prometheus_server):
    b = bucket()
    t = make_tuskd(b)
    put(rgw, b, "a.img", blob(1000))
    for _ in range(4):
        assert t.get("/images/a.img").status_code == 200
    hits = t.metric("tusk_requests_total", outcome="HIT", status="200")
    assert hits == 3
    prom = prometheus_server([f"127.0.0.1:{t.admin_port}"])
    try:
        wait_until(lambda: prom.value('up{job="tusk"}') == 1, 60, 0.2, "Prometheus to scrape tuskd")
        got = wait_until(
            lambda: prom.value('tusk_requests_total{outcome="HIT",status="200"}') == hits, 30, 0.2,
            "the HIT counter in Prometheus")
        assert got
        # A later request shows up at the next scrapes: Prometheus follows the live counter.
        assert t.get("/images/a.img").status_code == 200
        wait_until(lambda: prom.value('tusk_requests_total{outcome="HIT",status="200"}') == 4,
                   30, 0.2, "the new HIT in Prometheus")
        bytes_ = prom.value('tusk_served_bytes_total{source="cache"}')
        assert bytes_ is not None and bytes_ >= 4000
    except TimeoutError:
        print(prom.log_path.read_text(errors="replace")[-3000:])
        raise


# ---------------------------------------------------------------- the Grafana dashboard

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and",
    "or", "unless", "inf", "nan",
}


def dashboard_queries(d: dict) -> tuple[list[str], list[str]]:
    """(every panel target's expr, the metric each templating variable queries)."""
    exprs = []

    def walk(panels):
        for p in panels:
            for target in p.get("targets", []):
                exprs.append(target["expr"])
            walk(p.get("panels", []))

    walk(d["panels"])
    variables = []
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
            assert m, f"variable {v['name']}: unexpected query {q!r}"
            variables.append(m.group(1))
    return exprs, variables


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names an expression reads, each with the label names it matches or groups
    by (grouping labels are attributed to every metric of the expression)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    matched: dict[str, set[str]] = {}
    grouped: set[str] = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        grouped |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", e):
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        matched.setdefault(m.group(1), set()).update(labels)
    bare = re.sub(r"\{[^}]*\}", " ", e)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", bare):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        matched.setdefault(word, set())
    return [(name, labels | grouped) for name, labels in matched.items()]


def test_selectors_parser():
    """The parser the dashboard check relies on, on known expressions."""
    assert selectors('sum by (outcome) (rate(tusk_requests_total{instance=~"$i"}[5m]))') == [
        ("tusk_requests_total", {"instance", "outcome"})]
    assert sorted(selectors("tusk_cache_bytes / tusk_cache_max_bytes")) == [
        ("tusk_cache_bytes", set()), ("tusk_cache_max_bytes", set())]
    assert selectors('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="}"}[1m])))') == [
        ("x_bucket", {"a", "le"})]


def exported(text: str) -> dict[str, set[str]]:
    """Sample name → label names seen on it (with `instance` and `job`, Prometheus' own)."""
    out: dict[str, set[str]] = {}
    for (name, labels), _ in parse_prometheus(text).items():
        out.setdefault(name, {"instance", "job"}).update(k for k, _ in labels)
    return out


def test_every_dashboard_query_names_an_exported_metric(rgw, bucket, make_tuskd):
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"]
    exprs, variables = dashboard_queries(d)
    assert len(exprs) >= 10
    text_all = " ".join(exprs)
    for wanted in ["tusk_requests_total", "tusk_served_bytes_total", "tusk_upstream_bytes_total",
                   "tusk_upstream_errors_total", "tusk_fills_active", "tusk_cache_max_bytes",
                   "tusk_upstream_ttfb_seconds_bucket", "tusk_peer_requests_total"]:
        assert wanted in text_all, f"the dashboard shows no {wanted}"
    assert "histogram_quantile(0.99" in text_all

    # Two edges that are peers, so that one of them fills from the other (peer series).
    b = bucket()
    edges = [make_tuskd(b, start=False, name=f"edge{i}") for i in (1, 2)]
    members = {f"edge{i}": t.url for i, t in zip((1, 2), edges)}
    for i, t in zip((1, 2), edges):
        t.config["peers"] = {"self": f"edge{i}", "members": members}
        t.start()
    traffic(edges[0], b, rgw)
    for t in edges:  # the same object from both: the one that does not own it asks the other
        assert t.get("/images/big.img").status_code == 200
        t.wait_fills_settled()
    names: dict[str, set[str]] = {}
    for t in edges:
        text = requests.get(t.admin_url + "/metrics", timeout=5).text
        for n, ls in exported(text).items():
            names.setdefault(n, set()).update(ls)
    assert sum(t.metric("tusk_peer_requests_total") for t in edges) >= 1

    problems = []
    for expr in exprs:
        sel = selectors(expr)
        if not sel:
            problems.append(f"names no metric: {expr}")
        for name, labels in sel:
            if name not in names:
                problems.append(f"{name} is not exported (in {expr})")
            elif labels - names[name]:
                problems.append(f"{name} has no label {sorted(labels - names[name])} ({expr})")
    for name in variables:
        if name not in names:
            problems.append(f"templating variable reads {name}, which is not exported")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the access log

SECRETS = ["SIGSECRET1", "CREDSECRET2", "AUTHSECRET3", "REFSECRET4", "USERSECRET5"]


def hostile_request(port: int, path: str) -> int:
    """A GET carrying credentials in every place a client may put them, and hostile bytes in
    the fields that are logged."""
    req = (
        f"GET {path}?X-Amz-Signature=SIGSECRET1&X-Amz-Credential=CREDSECRET2 HTTP/1.1\r\n"
        "Host: edge\r\n"
        "Authorization: AWS AKIA:AUTHSECRET3\r\n"
        "Referer: http://USERSECRET5:pw@example.org/page?token=REFSECRET4\r\n"
    ).encode() + b'User-Agent: evil "agent" \\ \xff\xfe end\r\nRange: bytes=0-9\r\n\r\n'
    status, _, _ = raw_request(port, req)
    return status


def test_access_log_combined_to_a_file_reopened_on_sigusr1(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    put(rgw, b, "x.img", blob(5000))
    log = tmp / "logs" / "access.log"
    log.parent.mkdir()
    t = make_tuskd(b, log={"access_log": str(log), "format": "combined"})
    assert hostile_request(t.port, "/images/x.img") == 206
    line_re = re.compile(
        r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
        r'"GET /images/x\.img\?X-Amz-Signature&X-Amz-Credential HTTP/1\.1" 206 10 '
        r'"http://example\.org/page\?token" "evil \\x22agent\\x22 \\x5C \\xFF\\xFE end" MISS '
        r'range="bytes=0-9" upstream=(\d+\.\d{3}) time=(\d+\.\d{3})$')
    lines = wait_until(lambda: log.exists() and log.read_text().splitlines(), 10,
                       what="the access log line")
    assert len(lines) == 1, lines
    m = line_re.match(lines[0])
    assert m, lines[0]
    assert float(m.group(1)) <= float(m.group(2))
    raw = log.read_bytes()
    for s in SECRETS:
        assert s.encode() not in raw, s
    assert all(b >= 0x20 or b == 0x0A for b in raw)

    t.wait_fills_settled()  # the range's fill goes on to the whole object: then it is a HIT
    assert t.get("/images/x.img").status_code == 200
    hit = wait_until(lambda: len(log.read_text().splitlines()) == 2 and log.read_text(), 10,
                     what="the HIT line").splitlines()[1]
    assert re.search(r'"GET /images/x\.img HTTP/1\.1" 200 5000 "-" "python-requests/[^"]+" HIT '
                     r'range="-" upstream=- time=\d+\.\d{3}$', hit), hit

    # logrotate: rename, then SIGUSR1. The next line lands in a new file at the same path.
    rotated = log.with_name("access.log.1")
    log.rename(rotated)
    t.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "access log reopened" in t.log(), 10, what="the reopen")
    assert t.get("/catalog-none").status_code == 404
    assert t.get("/images/x.img", headers={"Range": "bytes=1-2"}).status_code == 206
    new = wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 2 and
                     log.read_text(), 10, what="lines in the new file").splitlines()
    assert re.search(r'"GET /catalog-none HTTP/1\.1" 404 \d+ .* ERROR ', new[0]), new[0]
    assert re.search(r'" 206 2 .* HIT range="bytes=1-2" ', new[1]), new[1]
    assert len(rotated.read_text().splitlines()) == 2, "a line after the reopen went to the old file"

    # An answer given without a request (ambiguous framing) is logged too, with our reason.
    status, _, _ = raw_request(
        t.port, b"GET /images/x.img HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                b"Content-Length: 2\r\n\r\n")
    assert status == 400
    wait_until(lambda: re.search(r'^127\.0\.0\.1 - - \[.*\] "- -" 400 0 "-" "-" ERROR range="-" '
                                 r'upstream=- time=- reason="[^"]+"$', log.read_text(), re.M),
               10, what="the 400 line")


def test_access_log_json_to_stdout(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "x.img", blob(5000))
    t = make_tuskd(b, log={"access_log": "stdout", "format": "json"})
    assert hostile_request(t.port, "/images/x.img") == 206
    t.wait_fills_settled()  # else the GET may join the fill the range started (COALESCED)
    assert t.get("/images/x.img").status_code == 200
    status, _, _ = raw_request(t.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert status == 400

    def entries():
        # stdout and stderr share tuskd.log in the harness: access lines are the JSON ones.
        out = []
        for line in t.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                out.append(json.loads(line.decode("utf-8")))  # strict: valid UTF-8 and JSON
        return out if len(out) == 3 else None

    miss, hit, bad = wait_until(entries, 10, what="three JSON access lines")
    assert miss["client"] == "127.0.0.1"
    assert miss["method"] == "GET" and miss["protocol"] == "HTTP/1.1"
    assert miss["target"] == "/images/x.img?X-Amz-Signature&X-Amz-Credential"
    assert (miss["status"], miss["bytes"], miss["outcome"]) == (206, 10, "MISS")
    assert miss["range"] == "bytes=0-9"
    assert miss["referer"] == "http://example.org/page?token"
    assert miss["user_agent"] == 'evil \\x22agent\\x22 \\x5C \\xFF\\xFE end'
    assert 0 <= miss["upstream_time"] <= miss["request_time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", miss["time"])
    assert (hit["status"], hit["bytes"], hit["outcome"]) == (200, 5000, "HIT")
    assert hit["upstream_time"] is None and hit["request_time"] >= 0
    assert (bad["status"], bad["method"], bad["outcome"]) == (400, "", "ERROR")
    assert bad["reason"] and bad["request_time"] is None
    raw = t.log_path.read_bytes()
    for s in SECRETS:
        assert s.encode() not in raw, s
