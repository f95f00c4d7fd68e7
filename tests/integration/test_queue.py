"""`tusk queue ls|drain` against the embedded queue and a real RabbitMQ (the `rabbitmq` fixture):
what waits shows in order with its state, attempts and last error; drain empties; a message
taken by a process killed with -9 is delivered again; a wrong password, an unreachable broker
and a malformed URL fail fast with a clear message that never holds the password.
Publishing and taking go through tests/installer/queue_tool.cc (`installer_queue_tool`): the
real publisher is `tusk subscribe sync` and the real taker `tusk worker`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import harness
from test_installer_bundle import run_tusk


def queue_tool_path() -> str:
    build = Path(os.environ.get("TUSK_BUILD_DIR", harness.SOURCE_DIR / "build"))
    path = build / "tests" / "installer" / "installer_queue_tool"
    if not os.access(path, os.X_OK):
        pytest.fail(f"installer_queue_tool not built ({path}): ninja installer_queue_tool")
    return str(path)


def event(identifier: str) -> str:
    return json.dumps({"identifier": identifier, "uri": f"https://example.org/{identifier}.img"})


class Target:
    """One queue to test: the embedded one in a registry folder, or a RabbitMQ URL."""

    def __init__(self, url: str, registry: Path):
        self.url = url
        self.registry = registry

    def args(self) -> list[str]:
        return ["--registry", str(self.registry)] + (["--queue", self.url] if self.url else [])

    def tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [queue_tool_path(), self.url, str(self.registry), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check:
            assert p.returncode == 0, f"queue_tool {args[0]}: {p.returncode}\n{p.stderr}"
        return p

    def hold(self) -> tuple[subprocess.Popen, str]:
        """A process that takes one message and holds it until killed; (process, body)."""
        p = subprocess.Popen(
            [queue_tool_path(), self.url, str(self.registry), "take-hold"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = p.stdout.readline()
        assert line, p.stderr.read()
        return p, line.strip()

    def ls(self) -> list[dict]:
        return json.loads(run_tusk("queue", "ls", "--json", *self.args(), timeout=30).stdout)

    def drain(self) -> int:
        out = run_tusk("queue", "drain", *self.args(), timeout=30).stdout
        assert out.startswith("removed "), out
        return int(out.split()[1])


@pytest.fixture(params=["embedded", "rabbitmq"])
def target(request, tmp) -> Target:
    if request.param == "embedded":
        return Target("", tmp / "registry")
    node = request.getfixturevalue("rabbitmq")
    t = Target(node.url, tmp / "registry")
    t.drain()  # the node is shared by the session
    return t


def test_ls_shows_identifiers_in_order_and_drain_empties(target):
    target.tool("put", event("img-a"), event("img-b"), event("img-c"))
    table = run_tusk("queue", "ls", *target.args(), timeout=30).stdout.splitlines()
    assert [line.split()[:3] for line in table] == [
        ["img-a", "ready", "0"],
        ["img-b", "ready", "0"],
        ["img-c", "ready", "0"],
    ]
    # ls only looks: the same messages, in the same order, are still there.
    assert [m["identifier"] for m in target.ls()] == ["img-a", "img-b", "img-c"]
    assert target.ls()[0]["body"]["uri"] == "https://example.org/img-a.img"

    # Retry the first with an error, park the second: both show with what happened.
    assert target.tool("take-retry", "60000", "HTTP 503 from the image server").stdout.strip() == (
        event("img-a")
    )
    assert target.tool("take-park", "sha512 mismatch").stdout.strip() == event("img-b")
    listed = {m["identifier"]: m for m in target.ls()}
    assert listed["img-a"]["state"] == "delayed"
    assert listed["img-a"]["attempts"] == 1
    assert listed["img-a"]["last_error"] == "HTTP 503 from the image server"
    assert listed["img-b"]["state"] == "parked"
    assert listed["img-b"]["last_error"] == "sha512 mismatch"
    assert target.ls()[-1]["identifier"] == "img-b", "parked last"

    # Only img-c is ready now.
    assert target.tool("take-ack").stdout.strip() == event("img-c")

    assert target.drain() == 2
    assert target.ls() == []
    assert run_tusk("queue", "ls", *target.args(), timeout=30).stdout == ""


def test_a_short_retry_comes_back_with_its_attempts(target):
    target.tool("put", event("img-flaky"))
    target.tool("take-retry", "300", "timeout")
    deadline = time.monotonic() + 10
    while True:
        listed = target.ls()
        if listed and listed[0]["state"] == "ready":
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    assert listed[0]["attempts"] == 1
    assert listed[0]["last_error"] == "timeout"
    assert target.tool("take-ack").stdout.strip() == event("img-flaky")
    assert target.ls() == []


def test_a_message_taken_by_a_killed_process_is_delivered_again(target):
    target.tool("put", event("img-crash"), event("img-next"))
    holder, body = target.hold()
    try:
        assert body == event("img-crash")
        if not target.url:  # RabbitMQ cannot show what a consumer holds
            assert [m["state"] for m in target.ls()] == ["taken", "ready"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert target.tool("take-ack").stdout.strip() == event("img-crash")
    assert target.tool("take-ack").stdout.strip() == event("img-next")
    assert target.ls() == []


def test_a_connection_the_broker_closes_is_an_error_and_the_message_comes_back(rabbitmq, tmp):
    t = Target(rabbitmq.url, tmp / "registry")
    t.drain()
    t.tool("put", event("img-cut"))
    p = subprocess.Popen(
        [queue_tool_path(), t.url, str(t.registry), "take-wait-ack"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == event("img-cut")
        rabbitmq.ctl("close_all_connections", "tusk test cuts the connection")
        out, err = p.communicate("ack now\n", timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1, err
    assert f"RabbitMQ at {rabbitmq.host_port}" in err
    assert "closed the connection" in err and "tusk test cuts the connection" in err, err
    # The ack never happened: the broker delivers the message again.
    assert t.tool("take-ack").stdout.strip() == event("img-cut")


def test_tusk_queue_env_names_the_broker(rabbitmq, tmp):
    t = Target(rabbitmq.url, tmp / "registry")
    t.drain()
    t.tool("put", event("img-env"))
    p = run_tusk("queue", "ls", env={"TUSK_QUEUE": rabbitmq.url, "TUSK_REGISTRY": str(tmp)})
    assert p.stdout.split()[:2] == ["img-env", "ready"]
    p = run_tusk("queue", "drain", env={"TUSK_QUEUE": rabbitmq.url})
    assert p.stdout.startswith("removed 1 message from amqp://tusk@127.0.0.1:"), p.stdout
    assert "queue tusk.images" in p.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["wrong password", "nobody listening"])
def test_broker_failures_are_clear_and_fast(rabbitmq, tmp, case):
    secret = "Wr0ngSecretValue"
    if case == "wrong password":
        url = rabbitmq.url_with(password=secret)
        where = rabbitmq.host_port
    else:
        port = free_port()
        url = rabbitmq.url_with(password=secret, port=port)
        where = f"127.0.0.1:{port}"
    for verb in ("ls", "drain"):
        start = time.monotonic()
        p = run_tusk("queue", verb, "--queue", url, "--registry", tmp, check=False, timeout=30)
        assert time.monotonic() - start < 8
        assert p.returncode == 1, p.stderr
        assert p.stderr.startswith("tusk: error: RabbitMQ at " + where), p.stderr
        assert secret not in p.stderr + p.stdout
        if case == "wrong password":
            assert "login as 'tusk'" in p.stderr and "refused" in p.stderr.lower(), p.stderr
        else:
            assert "cannot connect" in p.stderr, p.stderr


def test_malformed_url_is_a_usage_error_without_the_password(tmp):
    for url in ("amqp://u:S3cretPart@h:notaport/", "amqps://u:S3cretPart@h/", "amqp://u:S3cretPart@"):
        p = run_tusk("queue", "ls", "--queue", url, "--registry", tmp, check=False, timeout=10)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("tusk: error: queue URL: "), p.stderr
        assert "S3cretPart" not in p.stderr
