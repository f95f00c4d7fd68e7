#!/usr/bin/env bash
# Installs every Debian package tusk's build, tests and benchmarks need. Idempotent: packages that
# are already present are skipped, so a second run does no network work.
set -euo pipefail

pkgs=(
  # build
  build-essential cmake ninja-build pkg-config git ca-certificates
  libevent-dev libcurl4-openssl-dev liblmdb-dev libssl-dev libyaml-cpp-dev prometheus-cpp-dev
  nlohmann-json3-dev libarchive-dev libcli11-dev libspdlog-dev libfmt-dev libpugixml-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  # fuzzing: clang with its libFuzzer/ASan/UBSan runtimes (only Recommended by clang, so named)
  clang libclang-rt-dev
  # tests: the real S3 server (Ceph radosgw on a one-node cluster) and real clients
  ceph-mon ceph-osd radosgw ceph-common
  curl aria2 s3cmd wget lmdb-utils procps iproute2 openssl
  python3 python3-pytest python3-boto3 python3-botocore python3-requests
  # tests of the fleet and the package: the balancer sites run, Prometheus (and promtool) to
  # scrape and check the metrics, lintian to check the .deb, fakeroot and dpkg-dev for cpack,
  # systemd for `systemd-analyze verify` of the unit (no systemd runs as PID 1 in tests),
  # logrotate to rotate the package's access log
  haproxy prometheus lintian fakeroot dpkg-dev systemd logrotate
  # image intake (issue 12): RabbitMQ's C client and a real server for the queue tests, qemu-img
  # to convert qcow2/vmdk images to raw
  librabbitmq-dev rabbitmq-server qemu-utils
  # benchmarks: the peers tusk is measured against
  varnish nginx-light wrk
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# Debian's varnish and nginx packages start their system services on install; policy-rc.d 101
# keeps them (and ceph's) from starting, so nothing listens on ports our tests pick.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
