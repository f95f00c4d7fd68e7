"""The Debian package (issue 11): `./scripts/package.sh BUILD` packs the tuskd and tusk this build
already has into BUILD/tusk_<version>_<arch>.deb; lintian finds no error in it; its unit carries
the hardening the issue asks for and enough descriptors for the shipped max_connections.

The package is installed for real, maintainer scripts and all, but into a scratch root: an
overlay of / whose upper layer is a tmpfs, in private mount and network namespaces that vanish
with the holder process (ScratchRoot). The machine itself (its dpkg database, users, /etc, /var)
is never changed, and nothing is left behind even when the test dies, so it runs the same on a
developer's machine, on CI and in a fresh debootstrap chroot without a running systemd. In there:
postinst makes the `tusk` system user and hands it /var/cache/tusk; the shipped
/etc/tusk/tusk.yaml passes `tuskd --check-config`; `systemd-analyze verify` accepts the unit;
tuskd runs from the package as the unit would run it (user tusk, its LimitNOFILE and UMask, no
capabilities), reloads on SIGHUP and drains on SIGTERM; logrotate rotates its access log; remove
keeps the configuration and purge takes everything away, the user too.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness import SOURCE_DIR

BUILD_DIR = Path(os.environ.get("TUSK_BUILD_DIR", SOURCE_DIR / "build")).resolve()

# The directives issue 11 names for the unit, each as (key, test of its value, what is wanted).
HARDENING = [
    ("ProtectSystem", lambda v: v == "strict", "strict"),
    ("ProtectHome", lambda v: v in ("yes", "true", "read-only", "tmpfs"), "yes"),
    ("PrivateTmp", lambda v: v in ("yes", "true"), "yes"),
    ("NoNewPrivileges", lambda v: v in ("yes", "true"), "yes"),
    ("ReadWritePaths", lambda v: "/var/cache/tusk" in v.split(), "/var/cache/tusk among them"),
    ("Restart", lambda v: v == "on-failure", "on-failure"),
    ("User", lambda v: v == "tusk", "tusk"),
]
# Capabilities no edge cache needs; the bounding set must exclude them all (empty is best).
FORBIDDEN_CAPS = {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_CHOWN",
                  "CAP_SYS_PTRACE", "CAP_NET_RAW", "CAP_FOWNER", "CAP_SYS_MODULE"}


def project_version() -> str:
    text = (SOURCE_DIR / "CMakeLists.txt").read_text()
    m = re.search(r"project\(tusk VERSION ([0-9.]+)", text)
    assert m, "no version in project() of CMakeLists.txt"
    return m.group(1)


def run(cmd, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, (
            f"{' '.join(map(str, cmd))} exited {r.returncode}\n"
            f"stdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}")
    return r


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd unit file → {section: [(key, value), ...]} in order (keys repeat)."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, [])
            continue
        assert section is not None, f"unit line outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"unit line without '=': {raw!r}"
        out[section].append((key.strip(), value.strip()))
    return out


def last(entries: list[tuple[str, str]], key: str) -> str | None:
    values = [v for k, v in entries if k == key]
    return values[-1] if values else None


def yaml_scalar(text: str, section: str, key: str) -> str | None:
    """The value of `section.key` in a block-style YAML file like the shipped one (no PyYAML in
    Debian's python3 by default): the key indented under its top-level section."""
    m = re.search(rf"(?ms)^{section}:\s*$(.*?)(?=^\S)", text + "\nEND\n")
    if not m:
        return None
    k = re.search(rf"(?m)^\s+{key}:\s*([^#\n]*?)\s*(?:#.*)?$", m.group(1))
    return k.group(1).strip().strip('"') if k else None


def seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w)", text):
        total += int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400,
                                "w": 604800}[unit]
    assert total or text.strip() == "0", f"not a duration: {text!r}"
    return total


@pytest.fixture(scope="module")
def deb() -> Path:
    """Runs ./scripts/package.sh on the build this suite runs in (binaries already built: it
    only packs them) and returns the .deb it names on its last line."""
    for tool in ("dpkg-deb", "cpack", "lintian"):
        assert shutil.which(tool), f"{tool} is missing: run ./scripts/install-deps.sh"
    started = time.monotonic()
    r = run([str(SOURCE_DIR / "scripts" / "package.sh"), str(BUILD_DIR)], timeout=3000)
    path = Path(r.stdout.strip().splitlines()[-1])
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert path == BUILD_DIR / f"tusk_{project_version()}_{arch}.deb", r.stdout
    assert path.is_file()
    print(f"package.sh: {path} in {time.monotonic() - started:.1f} s")
    return path


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    """The package's files (dpkg-deb -x) and its control area (DEBIAN/, dpkg-deb -e)."""
    root = tmp_path_factory.mktemp("deb")
    run(["dpkg-deb", "-x", str(deb), str(root)])
    run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")])
    return root


def test_control_fields(deb):
    fields = {}
    for name in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Section",
                 "Description"):
        fields[name] = run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert fields["Package"] == "tusk"
    assert fields["Version"] == project_version()
    assert fields["Architecture"] == arch
    assert fields["Maintainer"] and fields["Section"] and fields["Description"]
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    # adduser for postinst; the shared libraries from dpkg-shlibdeps (libc6 at least).
    for needed in ("adduser", "libc6", "libcurl4", "libevent-2.1-7", "liblmdb0"):
        assert needed in depends, f"Depends lacks {needed}: {fields['Depends']}"


def test_contents_and_modes(deb, unpacked):
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path.split(" -> ")[0].rstrip("/") or "."] = (mode, owner)
    expected = {
        "./usr/sbin/tuskd": "-rwxr-xr-x",
        "./usr/bin/tusk": "-rwxr-xr-x",
        "./etc/tusk/tusk.yaml": "-rw-r--r--",
        "./etc/logrotate.d/tusk": "-rw-r--r--",
        "./lib/systemd/system/tuskd.service": "-rw-r--r--",
        "./usr/share/man/man8/tuskd.8.gz": "-rw-r--r--",
        "./usr/share/man/man1/tusk.1.gz": "-rw-r--r--",
        "./usr/share/doc/tusk/copyright": "-rw-r--r--",
        "./usr/share/doc/tusk/changelog.gz": "-rw-r--r--",
        "./usr/share/lintian/overrides/tusk": "-rw-r--r--",
        # Shipped root-owned; postinst's dpkg-statoverride hands them to tusk.
        "./var/cache/tusk": "drwxr-xr-x",
        "./var/log/tusk": "drwxr-xr-x",
    }
    for path, mode in expected.items():
        assert path in entries, f"{path} is not in the package:\n{listing}"
        assert entries[path] == (mode, "root/root"), f"{path}: {entries[path]}"
    for path, (mode, owner) in entries.items():
        assert owner == "root/root", f"{path} is owned by {owner}"
        assert "w" not in (mode[5], mode[8]), f"{path} is writable by others than root: {mode}"

    conffiles = (unpacked / "DEBIAN" / "conffiles").read_text().split()
    assert sorted(conffiles) == ["/etc/logrotate.d/tusk", "/etc/tusk/tusk.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        path = unpacked / "DEBIAN" / script
        assert path.is_file(), f"no {script}"
        assert path.stat().st_mode & 0o777 == 0o755, f"{script}: {oct(path.stat().st_mode)}"
        run(["sh", "-n", str(path)])
    assert "md5sums" in os.listdir(unpacked / "DEBIAN")

    # The binaries are stripped (the debug info stays in the build tree) and are this version.
    for binary in ("usr/sbin/tuskd", "usr/bin/tusk"):
        sections = run(["readelf", "-S", "-W", str(unpacked / binary)]).stdout
        assert ".debug_info" not in sections, f"{binary} is not stripped"
    version = run([str(unpacked / "usr/sbin/tuskd"), "--version"]).stdout.strip()
    assert version == f"tuskd {project_version()}"
    # Man pages are real pages (gzip -9n, no name or time stamp in the header).
    for page in ("usr/share/man/man8/tuskd.8.gz", "usr/share/man/man1/tusk.1.gz"):
        header = (unpacked / page).read_bytes()[:10]
        assert header[:2] == b"\x1f\x8b" and header[3] & 0x08 == 0 and header[4:8] == b"\0" * 4


def test_lintian_finds_no_error(deb, capsys):
    r = run(["lintian", "--tag-display-limit", "0", str(deb)], check=False, timeout=900)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    with capsys.disabled():
        print(f"\nlintian {deb.name}: exit {r.returncode}, {len(lines)} lines")
        for line in lines:
            print(f"  {line}")
    errors = [line for line in lines if line.startswith("E:")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    assert r.returncode == 0, f"lintian exited {r.returncode}:\n{r.stdout}\n{r.stderr}"


def test_unit_is_hardened_and_sized(unpacked):
    unit = unit_entries((unpacked / "lib/systemd/system/tuskd.service").read_text())
    service = unit["Service"]
    for key, ok, wanted in HARDENING:
        value = last(service, key)
        assert value is not None, f"tuskd.service has no {key}= (want {wanted})"
        assert ok(value), f"tuskd.service: {key}={value}, want {wanted}"

    caps = [v for k, v in service if k == "CapabilityBoundingSet"]
    assert caps, "tuskd.service has no CapabilityBoundingSet="
    # Assignments add up after the last empty one (systemd.exec(5)); '~' inverts.
    bounded: set[str] = set()
    for value in caps:
        if not value:
            bounded = set()
        else:
            assert not value.startswith("~"), f"CapabilityBoundingSet={value} allows all but some"
            bounded |= set(value.split())
    assert not bounded & FORBIDDEN_CAPS, f"capabilities left in the bounding set: {bounded}"
    assert last(service, "AmbientCapabilities") in (None, ""), "ambient capabilities granted"

    reload = last(service, "ExecReload") or ""
    assert re.fullmatch(r"/(usr/)?bin/kill -(s )?HUP \$MAINPID", reload), reload
    start = last(service, "ExecStart") or ""
    assert start.split()[0] == "/usr/sbin/tuskd" and "/etc/tusk/tusk.yaml" in start, start

    # Descriptors: tuskd refuses to start below max_connections + 1024 (hard) and asks for
    # 2 * max_connections + 1024 (soft); the unit's LimitNOFILE must give the latter.
    yaml = (unpacked / "etc/tusk/tusk.yaml").read_text()
    max_connections = int(yaml_scalar(yaml, "server", "max_connections") or 10000)
    limit = last(service, "LimitNOFILE") or ""
    soft, _, hard = limit.partition(":")
    for value in (soft, hard or soft):
        assert value.isdigit(), f"LimitNOFILE={limit}"
        assert int(value) >= 2 * max_connections + 1024, (
            f"LimitNOFILE={limit} is below 2 * max_connections ({max_connections}) + 1024")

    # Stopping drains: systemd must wait longer than drain_delay + drain_timeout.
    drain = seconds(yaml_scalar(yaml, "server", "drain_delay") or "5s") + seconds(
        yaml_scalar(yaml, "server", "drain_timeout") or "30s")
    stop = seconds(last(service, "TimeoutStopSec") or "90s")
    assert stop > drain, f"TimeoutStopSec {stop}s does not cover the drain ({drain}s)"


def test_logrotate_signals_tuskd(unpacked):
    text = (unpacked / "etc/logrotate.d/tusk").read_text()
    yaml = (unpacked / "etc/tusk/tusk.yaml").read_text()
    access_log = yaml_scalar(yaml, "log", "access_log")
    assert access_log and access_log.startswith("/var/log/tusk/") and access_log.endswith(
        ".log"), f"the shipped access_log {access_log!r} is not what logrotate rotates"
    assert re.search(r"(?m)^/var/log/tusk/\*\.log\s*\{", text), text
    post = re.search(r"(?s)postrotate(.*?)endscript", text)
    assert post, "no postrotate script"
    assert re.search(r"systemctl kill\b.*--signal=(SIG)?USR1\b.*\btuskd\.service", post.group(1)), (
        post.group(1))
    assert re.search(r"(?m)^\s*su tusk adm\s*$", text), "logrotate must rotate as tusk (su)"


# ---------------------------------------------------------------------------------------------
# Installed into a scratch root.


class ScratchRoot:
    """An overlay of the running system's / with a tmpfs upper layer, mounted in private mount
    and network namespaces held by one `sh` (self.holder; its stdin is our pipe, so it and every
    mount go away when it is closed, or when this process dies). Commands run there with
    nsenter + chroot: dpkg, adduser and the maintainer scripts change only the upper layer. /run
    and /tmp are empty tmpfs (no /run/systemd/system: as in a chroot or a container, the scripts
    skip systemctl), the network has only a loopback interface.

    Tricky: nothing mounted here may propagate back to the machine, so the mount that holds the
    scratch directory must be private in the new namespace. `unshare --propagation private`
    makes / private, which fails inside a chroot (fresh-check's), where / is not a mount point;
    so every mount point the namespace can name is made private one by one, and the scratch
    directory goes under /tmp, a mount point of its own in such a chroot (fresh-check mounts a
    tmpfs there). The holder refuses to mount anything unless that mount is private."""

    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="tusk-scratch-"))
        self.root = self.workdir / "root"
        self.holder: subprocess.Popen | None = None

    def start(self) -> "ScratchRoot":
        script = r"""set -eu
w=$1
if ! mount --make-rprivate / 2>/dev/null; then
  for mp in $(awk '{print $5}' /proc/self/mountinfo); do
    mount --make-private "$mp" 2>/dev/null || true
  done
fi
prop=$(findmnt -n -o PROPAGATION --target "$w" 2>/dev/null || true)
if [ "$prop" != private ]; then
  echo "the mount holding $w is not private here (${prop:-not visible}): refusing to mount" >&2
  exit 1
fi
mount -t tmpfs -o mode=0755 tusk-scratch "$w"
mkdir "$w/upper" "$w/work" "$w/root"
mount -t overlay tusk-scratch -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
mount --rbind /dev "$w/root/dev"
mount -t proc proc "$w/root/proc"
mount -t sysfs sysfs "$w/root/sys"
mount -t tmpfs -o mode=0755 tmpfs "$w/root/run"
mount -t tmpfs -o mode=1777 tmpfs "$w/root/tmp"
ip link set lo up
echo ready
exec cat >/dev/null
"""
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "unchanged", "sh", "-c", script,
             "sh", str(self.workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            self.holder.stdin.close()
            err = self.holder.stderr.read()
            self.holder.wait(timeout=30)
            pytest.fail(f"could not set up the scratch root: {err.strip()}")
        self.run(["true"])  # commands reach it (the checks below that may fail rely on that)
        return self

    def stop(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.stdin.close()
            self.holder.wait(timeout=60)
        # The namespace is gone and its mounts with it: what is left is an empty directory.
        if self.workdir.exists():
            assert not os.path.ismount(self.workdir), f"{self.workdir} is still mounted"
            self.workdir.rmdir()

    def argv(self, cmd) -> list[str]:
        # -r: entering a mount namespace moves the caller to that namespace's real root, which
        # inside a chroot is not ours; the holder's root is.
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "-r", "--", "chroot",
                str(self.root), *map(str, cmd)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   LC_ALL="C", DEBIAN_FRONTEND="noninteractive", HOME="/root")
        return env

    def run(self, cmd, check=True, timeout=600) -> subprocess.CompletedProcess:
        return run(self.argv(cmd), check=check, timeout=timeout, env=self.env())

    def sh(self, script: str, check=True, timeout=600) -> subprocess.CompletedProcess:
        return self.run(["sh", "-ec", script], check=check, timeout=timeout)

    def popen(self, cmd, log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen(self.argv(cmd), stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env())

    def stat(self, path: str) -> str:
        return self.run(["stat", "-c", "%U:%G %a", path]).stdout.strip()

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    def user(self, name: str) -> list[str] | None:
        r = self.run(["getent", "passwd", name], check=False)
        return r.stdout.strip().split(":") if r.returncode == 0 else None


@pytest.fixture(scope="module")
def scratch(deb):
    """The package installed with `dpkg -i` into a scratch root (see ScratchRoot)."""
    if os.geteuid() != 0:
        pytest.skip("installing the package into a scratch root needs root (mount namespaces, "
                    "chroot); CI runs as root")
    for tool in ("unshare", "nsenter", "chroot", "findmnt", "ip"):
        assert shutil.which(tool), f"{tool} is missing: run ./scripts/install-deps.sh"
    root = ScratchRoot()
    try:
        root.start()
        # A machine that has the package, a tusk user or tusk's directories already: take
        # them away in here, so that postinst meets a system that never saw the package...
        if root.run(["dpkg-query", "-W", "-f=${Status}", "tusk"], check=False).stdout.startswith(
                "install ok"):
            root.run(["dpkg", "--purge", "tusk"])
        if root.user("tusk"):
            root.run(["userdel", "tusk"])
        if root.run(["getent", "group", "tusk"], check=False).returncode == 0:
            root.run(["groupdel", "tusk"])
        root.run(["rm", "-rf", "/etc/tusk", "/etc/logrotate.d/tusk", "/var/cache/tusk",
                  "/var/log/tusk"])
        # ... but where tuskd once ran by hand as root (it happens: it left a root-owned cache
        # on this very machine once), which postinst must hand over to tusk.
        root.sh("mkdir -p /var/cache/tusk/tmp && touch /var/cache/tusk/tmp/spool "
                "&& mkdir /var/log/tusk && touch /var/log/tusk/by-hand.log")
        # The .deb goes in through the namespace (our view of root/tmp is not the tmpfs).
        with open(deb, "rb") as src:
            r = subprocess.run(root.argv(["sh", "-c", "cat > /tmp/tusk.deb"]), stdin=src,
                               capture_output=True, env=root.env(), timeout=120)
        assert r.returncode == 0, r.stderr
        installed = root.run(["dpkg", "-i", "/tmp/tusk.deb"], check=False, timeout=900)
        assert installed.returncode == 0, (
            f"dpkg -i failed ({installed.returncode}):\n{installed.stdout}\n{installed.stderr}")
        yield root
    finally:
        root.stop()


def test_postinst_makes_the_user_and_hands_it_the_cache(scratch):
    user = scratch.user("tusk")
    assert user, "postinst made no tusk user"
    _name, _pw, uid, gid, _gecos, home, shell = user
    assert int(uid) < 1000, f"tusk is not a system user (uid {uid})"
    group = scratch.run(["getent", "group", "tusk"]).stdout.split(":")
    assert group[2] == gid, "tusk's primary group is not the tusk group"
    assert shell in ("/usr/sbin/nologin", "/bin/false"), shell
    assert home == "/var/cache/tusk", home

    assert scratch.stat("/var/cache/tusk") == "tusk:tusk 750"
    assert scratch.stat("/var/log/tusk") == "tusk:adm 2750"
    # What was there before the package (see scratch()) is tusk's now.
    assert scratch.stat("/var/cache/tusk/tmp").startswith("tusk:tusk ")
    assert scratch.stat("/var/cache/tusk/tmp/spool").startswith("tusk:tusk ")
    assert scratch.stat("/var/log/tusk/by-hand.log").startswith("tusk:adm ")
    assert scratch.stat("/etc/tusk/tusk.yaml") == "root:root 644"
    assert scratch.stat("/usr/sbin/tuskd") == "root:root 755"
    overrides = scratch.run(["dpkg-statoverride", "--list"]).stdout
    assert "tusk tusk 750 /var/cache/tusk" in overrides, overrides
    assert "tusk adm 2750 /var/log/tusk" in overrides, overrides
    # Not enabled: the shipped configuration names a placeholder upstream.
    assert not scratch.exists("/etc/systemd/system/multi-user.target.wants/tuskd.service")


def test_shipped_config_passes_check_config(scratch):
    # As root, and as the user the unit runs it as (key files must be readable by tusk).
    for prefix in ([], ["setpriv", "--reuid=tusk", "--regid=tusk", "--init-groups", "--"]):
        r = scratch.run([*prefix, "/usr/sbin/tuskd", "--check-config", "/etc/tusk/tusk.yaml"],
                        check=False)
        assert r.returncode == 0, f"{prefix}: {r.stdout}{r.stderr}"
        assert r.stdout.startswith("/etc/tusk/tusk.yaml: OK"), r.stdout
        assert "warning" not in r.stderr, r.stderr
    # The check can fail: a broken copy is refused with file:line:column.
    scratch.sh("sed 's/^  max_connections: .*/  max_connections: lots/' /etc/tusk/tusk.yaml "
               "> /tmp/broken.yaml")
    r = scratch.run(["/usr/sbin/tuskd", "--check-config", "/tmp/broken.yaml"], check=False)
    assert r.returncode == 1 and re.match(r"/tmp/broken\.yaml:\d+:\d+: ", r.stderr), r


def test_systemd_analyze_verify(scratch, capsys):
    if not scratch.exists("/usr/bin/systemd-analyze"):
        pytest.fail("systemd-analyze is missing (the systemd package): run scripts/install-deps.sh")
    # No systemd runs as PID 1 here (nor in CI's chroots): verify loads the unit offline, with
    # the package's binary and the tusk user in place. --man=no: the man page's presence is
    # tested above; man-db's index in the scratch root is not the point.
    r = scratch.run(["systemd-analyze", "verify", "--man=no",
                     "/lib/systemd/system/tuskd.service"], check=False, timeout=120)
    out = (r.stdout + r.stderr).strip()
    with capsys.disabled():
        print(f"\nsystemd-analyze verify tuskd.service: exit {r.returncode}"
              f"{': ' + out if out else ', no output'}")
    assert r.returncode == 0, out
    about_unit = [line for line in out.splitlines() if "tuskd" in line]
    assert not about_unit, "systemd-analyze verify:\n" + out

    # The exposure score systemd computes from the sandboxing directives (0 = locked down,
    # 10 = none): reported, and held below 2.0 so a lost directive shows.
    r = scratch.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                     "/lib/systemd/system/tuskd.service"], check=False, timeout=120)
    m = re.search(r"Overall exposure level for tuskd\.service: ([0-9.]+) (\S+)", r.stdout)
    assert m, f"systemd-analyze security: {r.stdout[-2000:]}{r.stderr}"
    with capsys.disabled():
        print(f"systemd-analyze security: exposure {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) < 2.0, r.stdout


def test_tuskd_runs_from_the_package(scratch, tmp_path):
    """tuskd from the package with the shipped configuration, started as the unit starts it:
    user tusk, LimitNOFILE from the unit, UMask 0027, no new privileges, no capabilities."""
    unit = unit_entries(scratch.run(["cat", "/lib/systemd/system/tuskd.service"]).stdout)
    service = unit["Service"]
    # LimitNOFILE as systemd would set it, but no higher than our own hard limit: raising that
    # needs CAP_SYS_RESOURCE, which containers (this CI's among them) often withhold.
    limit = int(last(service, "LimitNOFILE"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    umask = last(service, "UMask") or "0022"
    start = (last(service, "ExecStart") or "").split()
    log = tmp_path / "tuskd.log"
    tuskd = scratch.popen(
        ["prlimit", f"--nofile={limit}:{limit}", "setpriv", "--reuid=tusk", "--regid=tusk",
         "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
         "sh", "-c", f'umask {umask} && exec "$@"', "tuskd", *start], log)
    try:
        def ready() -> bool:
            assert tuskd.poll() is None, f"tuskd exited {tuskd.returncode}:\n{log.read_text()}"
            r = scratch.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "http://127.0.0.1:8081/readyz"], check=False, timeout=30)
            return r.stdout == "200"

        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline, f"tuskd never became ready:\n{log.read_text()}"
            time.sleep(0.2)
        # It made its cache as tusk, inside the directory postinst handed it.
        assert scratch.stat("/var/cache/tusk/index") == "tusk:tusk 750"
        # A request (its upstream is a placeholder with no network here: an error) is logged.
        code = scratch.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:8080/catalog.json"], check=False, timeout=120)
        assert code.stdout in ("502", "504"), code.stdout
        deadline = time.monotonic() + 10
        while "/catalog.json" not in scratch.run(["cat", "/var/log/tusk/access.log"],
                                                 check=False).stdout:
            assert time.monotonic() < deadline, "no access log line for /catalog.json"
            time.sleep(0.2)
        assert scratch.stat("/var/log/tusk/access.log") == "tusk:adm 640"

        # ExecReload: SIGHUP reloads, tuskd stays up.
        reload = (last(service, "ExecReload") or "").replace("$MAINPID", str(tuskd.pid)).split()
        run(reload)
        deadline = time.monotonic() + 10
        while "SIGHUP: reloading" not in log.read_text():
            assert time.monotonic() < deadline, f"no reload logged:\n{log.read_text()}"
            time.sleep(0.1)
        assert ready()

        # systemctl stop: SIGTERM drains and exits 0 within TimeoutStopSec.
        tuskd.terminate()
        stop = seconds(last(service, "TimeoutStopSec") or "90s")
        assert tuskd.wait(timeout=stop) == 0, log.read_text()
    finally:
        if tuskd.poll() is None:
            tuskd.kill()
            tuskd.wait()


def test_logrotate_rotates_the_access_log(scratch):
    if not scratch.exists("/usr/sbin/logrotate"):
        pytest.fail("logrotate is missing: run scripts/install-deps.sh")
    scratch.sh("test -s /var/log/tusk/access.log || echo line >> /var/log/tusk/access.log")
    before = scratch.run(["cat", "/var/log/tusk/access.log"]).stdout
    r = scratch.run(["logrotate", "--force", "--verbose", "--state", "/tmp/logrotate.state",
                     "/etc/logrotate.d/tusk"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert scratch.run(["cat", "/var/log/tusk/access.log.1"]).stdout == before
    assert scratch.stat("/var/log/tusk/access.log") == "tusk:adm 640"
    assert scratch.run(["cat", "/var/log/tusk/access.log"]).stdout == ""


def test_reinstall_remove_and_purge(scratch, deb):
    uid = scratch.user("tusk")[2]
    # Installing again (an upgrade to the same version) keeps the user and the overrides.
    scratch.run(["dpkg", "-i", "/tmp/tusk.deb"], timeout=900)
    assert scratch.user("tusk")[2] == uid
    assert scratch.stat("/var/cache/tusk") == "tusk:tusk 750"

    # remove: programs go; configuration, user, cache and logs stay.
    scratch.run(["dpkg", "--remove", "tusk"], timeout=900)
    assert not scratch.exists("/usr/sbin/tuskd")
    assert not scratch.exists("/lib/systemd/system/tuskd.service")
    assert scratch.exists("/etc/tusk/tusk.yaml")
    assert scratch.user("tusk")
    # purge: all of it goes.
    scratch.run(["dpkg", "--purge", "tusk"], timeout=900)
    status = scratch.run(["dpkg-query", "-W", "-f=${Status}", "tusk"], check=False).stdout
    assert "installed" not in status.replace("not-installed", ""), status
    for path in ("/etc/tusk", "/etc/logrotate.d/tusk", "/var/cache/tusk", "/var/log/tusk",
                 "/usr/share/doc/tusk"):
        assert not scratch.exists(path), f"{path} left after purge"
    assert scratch.user("tusk") is None, "purge left the tusk user"
    assert scratch.run(["getent", "group", "tusk"], check=False).returncode != 0, (
        "purge left the tusk group")
    assert "tusk" not in scratch.run(["dpkg-statoverride", "--list"]).stdout
