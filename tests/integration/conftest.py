"""pytest fixtures for tusk's integration tests: one radosgw per session (or an already running
one named by TUSK_RGW_ENV), tuskd processes and relays stopped at teardown, fresh private buckets.
Run with /usr/bin/python3 -m pytest tests/integration (CTest does: label `integration`).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from relay import Relay  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell at teardown whether the
    test failed (make_tuskd then prints the daemons' logs: a CI failure explains itself)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="session")
def rgw(tmp_path_factory) -> harness.Rgw:
    """The radosgw of this session. With TUSK_RGW_ENV=/path/to/env (written by
    `scripts/radosgw.sh start DIR`), that running instance is used and left running."""
    env_file = os.environ.get("TUSK_RGW_ENV")
    if env_file:
        yield harness.Rgw.from_env_file(env_file)
        return
    instance = harness.Rgw().start(tmp_path_factory.mktemp("rgw"))
    try:
        yield instance
    finally:
        instance.stop(purge=True)


@pytest.fixture(scope="session")
def tuskd_bin() -> str:
    """Path of the tuskd binary: $TUSKD (CTest sets it), else $TUSK_BUILD_DIR/proxy/tuskd or
    <source>/build/proxy/tuskd. A missing binary fails the tests that need it (never a skip)."""
    path = os.environ.get("TUSKD")
    if not path:
        build = Path(os.environ.get("TUSK_BUILD_DIR", harness.SOURCE_DIR / "build"))
        path = str(build / "proxy" / "tuskd")
    if not os.access(path, os.X_OK):
        pytest.fail(f"tuskd not built ({path}): build it first (cmake --build build)")
    return path


@pytest.fixture
def tmp(tmp_path) -> Path:
    """A fresh directory for this test (pytest's tmp_path)."""
    return tmp_path


@pytest.fixture
def bucket(rgw, request):
    """Factory: bucket(prefix=None, user='tusk', acl='private') -> a new bucket name, unique to
    this test. Buckets are emptied and deleted at teardown (frees the memstore OSD's RAM)."""
    made: list[tuple[str, str]] = []
    counter = itertools.count()
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:30] or "t"

    def make(prefix: str | None = None, user: str = "tusk", acl: str = "private") -> str:
        stem = re.sub(r"[^a-z0-9-]+", "-", (prefix or base).lower()).strip("-")[:30] or "t"
        name = f"{stem}-{next(counter)}-{uuid.uuid4().hex[:8]}"
        rgw.make_bucket(name, user=user, acl=acl)
        made.append((name, user))
        return name

    yield make
    for name, user in made:
        try:
            rgw.delete_bucket(name, user=user)
        except Exception:
            pass  # best effort: the cluster is thrown away at the end of the session anyway


@pytest.fixture
def make_tuskd(tuskd_bin, rgw, tmp, request):
    """Factory: make_tuskd(bucket=None, *, config=None, endpoint=None, user='tusk', routes=None,
    upstream=None, start=True, wait='readyz', name=None, extra_args=(), env=None, **sections)
    -> harness.Tuskd.

    Without config, builds Tuskd.make_config(): upstream `rgw` at `endpoint` (default radosgw;
    pass a relay's url to inject faults) signed as `user` (None: signature none), routes
    /catalog.json and /images/ for `bucket`, plus any whole sections given (cache=, fill=...).
    Each daemon gets its own directory under tmp; all are stopped at teardown."""
    started: list[harness.Tuskd] = []
    counter = itertools.count()

    def make(
        bucket: str | None = None,
        *,
        config: dict | None = None,
        endpoint: str | None = None,
        user: str | None = "tusk",
        routes=None,
        upstream: dict | None = None,
        start: bool = True,
        wait: str | None = "readyz",
        name: str | None = None,
        extra_args=(),
        env: dict | None = None,
        **sections,
    ) -> harness.Tuskd:
        workdir = tmp / (name or f"tuskd{next(counter)}")
        if config is None:
            keys = rgw.keys(user)
            up = dict(upstream or {})
            if keys is None:
                up.setdefault("signature", "none")
            config = harness.Tuskd.make_config(
                workdir,
                endpoint or rgw.endpoint,
                keys[0] if keys else None,
                keys[1] if keys else None,
                bucket or "no-bucket",
                routes=routes,
                upstream=up,
                **sections,
            )
        t = harness.Tuskd(tuskd_bin, workdir, config, extra_args=extra_args, env=env)
        started.append(t)
        if start:
            t.start(wait=wait)
        return t

    yield make
    problems = []
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    for t in started:
        rc = t.stop()
        log = t.log()
        if failed:
            tail = log.splitlines()[-60:]
            print(f"\n---- last {len(tail)} lines of {t.log_path} ----", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
        # A clean SIGTERM exits 0; -9 only when the test itself killed it. Sanitizer reports
        # (ASan, UBSan, LSan, TSan) in the daemon's log fail the test that produced them.
        if rc not in (None, 0, -9, getattr(t, "expected_rc", 0)):
            problems.append(f"tuskd {t.workdir.name} exited with {rc}")
        for marker in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:"):
            if marker in log:
                problems.append(f"tuskd {t.workdir.name}: {marker} report in {t.log_path}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def make_relay(rgw):
    """Factory: make_relay(mode='pass', upstream=None, port=0) -> relay.Relay, started, in front
    of radosgw unless upstream ("host:port" or URL) is given. Stopped at teardown."""
    relays: list[Relay] = []

    def make(mode: str = "pass", upstream: str | None = None, port: int = 0) -> Relay:
        r = Relay(upstream or rgw.endpoint, mode, port=port).start()
        relays.append(r)
        return r

    yield make
    for r in relays:
        r.stop()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory):
    """A RabbitMQ node of this session (scripts/rabbitmq.sh on free 127.0.0.1 ports), stopped at
    the end. `.url` is amqp://tusk:<password>@127.0.0.1:<port>/ with full rights on vhost "/"."""
    from rabbit import RabbitMQ

    node = RabbitMQ().start(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield node
    finally:
        node.stop()
