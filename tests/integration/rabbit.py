"""A throw-away RabbitMQ node for the queue tests: scripts/rabbitmq.sh start/stop DIR (Debian's
rabbitmq-server as the current user on free 127.0.0.1 ports, everything under DIR). Attributes
after start(): url (amqp://tusk:<password>@127.0.0.1:<port>/, holds the password: never print
it), port, dir, log_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness import SOURCE_DIR, read_env_file

RABBITMQ_SH = SOURCE_DIR / "scripts" / "rabbitmq.sh"


class RabbitMQ:
    def __init__(self) -> None:
        self.dir: Path | None = None
        self.url = ""
        self.port = 0
        self._owned = False

    @property
    def log_path(self) -> Path | None:
        return self.dir / "log" / "rabbit.log" if self.dir else None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, directory: str | os.PathLike, timeout: float = 90) -> "RabbitMQ":
        """Starts a fresh node in `directory`; raises with the script's stderr (the log's tail)
        when it does not come up."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            ["bash", str(RABBITMQ_SH), "start", str(d)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.dir = d.resolve()
        self._owned = True  # even a failed start may have left PIDs for stop()
        if p.returncode != 0:
            self.stop()
            raise RuntimeError(f"rabbitmq.sh start failed ({p.returncode}):\n{p.stderr}")
        env = read_env_file(d / "env")
        self.url = env["RABBITMQ_URL"]
        self.port = int(env["RABBITMQ_PORT"])
        return self

    def url_with(self, *, password: str | None = None, port: int | None = None) -> str:
        """This node's URL with another password or port (for the failure tests)."""
        userinfo, rest = self.url[len("amqp://"):].split("@", 1)
        user = userinfo.split(":", 1)[0]
        hostport, path = rest.split("/", 1)
        host = hostport.rsplit(":", 1)[0]
        pw = password if password is not None else userinfo.split(":", 1)[1]
        return f"amqp://{user}:{pw}@{host}:{port or self.port}/{path}"

    def ctl(self, *args: str) -> str:
        """rabbitmqctl ARGS against this node; its stdout."""
        p = subprocess.run(
            ["bash", str(RABBITMQ_SH), "ctl", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if p.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p.stdout

    def stop(self) -> None:
        """Stops the node and its epmd by the PIDs the script recorded (never by name)."""
        if self._owned and self.dir is not None:
            subprocess.run(["bash", str(RABBITMQ_SH), "stop", str(self.dir)], check=True, timeout=90)
            self._owned = False
