#!/usr/bin/env bash
# Runs a throw-away single-node Ceph cluster (1 mon, 1 memstore OSD, no mgr) plus radosgw entirely
# inside DIR, on free 127.0.0.1 ports: the real S3 server tusk's integration tests sign against.
#   radosgw.sh start DIR   create a fresh cluster (or reuse the one already running in DIR), print env
#   radosgw.sh stop DIR    stop the recorded PIDs: radosgw, then the OSD, then the monitor
#   radosgw.sh env DIR     print DIR/env (RGW_ENDPOINT, keys of users `tusk` and `other`, RGW_PIDS)
# Tricky: radosgw exits silently when its port is taken (we check, then verify it answers), and a
# memstore OSD keeps data only across a clean SIGTERM, so `start` always builds a fresh cluster.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
}
(($# == 2)) || usage
cmd=$1
[[ $cmd == start ]] && mkdir -p "$2"
[[ -d $2 ]] || { echo "radosgw.sh: error: no directory $2" >&2; exit 1; }
DIR=$(cd "$2" && pwd)  # absolute: ceph.conf and the daemons need it
RGW_NAME=client.rgw.tusk
STOP_TIMEOUT=${RGW_STOP_TIMEOUT:-20}  # seconds before SIGKILL
export CEPH_CONF=$DIR/ceph.conf

die() {
  echo "radosgw.sh: error: $*" >&2
  exit 1
}

# die_log FILE MESSAGE: fail and show the end of the log that explains why.
die_log() {
  local log=$1
  shift
  echo "radosgw.sh: error: $*" >&2
  if [[ -f $log ]]; then
    echo "--- last lines of $log ---" >&2
    tail -n 30 "$log" >&2
  fi
  exit 1
}

now_ms() { date +%s%3N; }

# free_port, port_busy, pick_port, alive PID WORD
# shellcheck source=scripts/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# rgw_answers PORT: GET / returns a ListAllMyBucketsResult (anonymous: an empty list).
rgw_answers() {
  curl -s -m 2 "http://127.0.0.1:$1/" 2>/dev/null | grep -q ListAllMyBucketsResult
}

# ceph CLI with a bounded wait (it would wait forever for a dead monitor).
cephc() { timeout 30 ceph --connect-timeout 20 "$@"; }

# The PIDs file holds "name pid exe" lines in stop order.
PIDS_FILE=$DIR/pids

running() {
  [[ -f $PIDS_FILE && -f $DIR/env ]] || return 1
  local name pid exe
  while read -r name pid exe; do
    alive "$pid" "$exe" || return 1
  done <"$PIDS_FILE"
  # shellcheck disable=SC1091
  local port
  port=$(sed -n "s/^RGW_PORT='\(.*\)'$/\1/p" "$DIR/env")
  [[ -n $port ]] && rgw_answers "$port"
}

do_stop() {
  [[ -f $PIDS_FILE ]] || {
    echo "radosgw.sh: nothing recorded in $DIR (already stopped)"
    return 0
  }
  local order=(radosgw osd mon) n name pid exe
  for n in "${order[@]}"; do
    while read -r name pid exe; do
      [[ $name == "$n" ]] || continue
      alive "$pid" "$exe" || continue
      kill -TERM "$pid" 2>/dev/null || true
      local waited=0
      while alive "$pid" "$exe" && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
      done
      if alive "$pid" "$exe"; then
        echo "radosgw.sh: $name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid" "$exe"; do sleep 0.1; done
      fi
    done <"$PIDS_FILE"
  done
  rm -f "$PIDS_FILE"
  echo "radosgw.sh: stopped cluster in $DIR"
}

# rand_chars N CLASS: N random characters from the tr character class.
# (A bounded read: `tr </dev/urandom | head` would die of SIGPIPE under pipefail.)
rand_chars() { head -c 4096 /dev/urandom | LC_ALL=C tr -dc "$2" | cut -c "1-$1"; }

do_start() {
  if running; then
    cat "$DIR/env"
    return 0
  fi
  do_stop >/dev/null  # stale half-started state: stop what we recorded, then start afresh
  local t0
  t0=$(now_ms)

  # Fresh layout; only the paths this script owns are removed.
  rm -rf "$DIR/mon.a" "$DIR/osd.0" "$DIR/run" "$DIR/log" "$DIR/crash" "$DIR/keyring" \
    "$DIR/monmap" "$DIR/ceph.conf" "$DIR/radosgw.log" "$DIR/env"
  mkdir -p "$DIR/mon.a" "$DIR/osd.0" "$DIR/run" "$DIR/log" "$DIR/crash"

  local fsid mon_port rgw_port osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  mon_port=$(pick_port)
  rgw_port=$(pick_port)
  while [[ $rgw_port == "$mon_port" ]]; do rgw_port=$(pick_port); done

  # Settings and their reasons: /work/shared/UPSTREAMS.md (radosgw section).
  cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
keyring = $DIR/keyring
run dir = $DIR/run
crash dir = $DIR/crash
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
log to stderr = false
err to stderr = true
mon data = $DIR/mon.\$id
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = 8G
osd fast shutdown = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
paxos propose interval = 0.1
mon data avail warn = 1
mon data avail crit = 0
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false

[$RGW_NAME]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw thread pool size = 64
rgw enable lc threads = false
# Deleted objects' tails go to garbage collection, by default two hours later: a whole test
# session then holds every byte it ever wrote, and the memstore OSD fills up (radosgw hangs once
# the cluster is full). Collected within seconds instead.
rgw gc obj min wait = 1
rgw gc processor period = 5
rgw gc processor max time = 5
rgw data = $DIR/run
log file = $DIR/radosgw.log
debug rgw = 1
EOF

  # One keyring for everybody, as vstart.sh does.
  local kr=$DIR/keyring
  {
    ceph-authtool --create-keyring --gen-key -n mon. --cap mon 'allow *' "$kr"
    ceph-authtool --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
      --cap mds 'allow *' --cap mgr 'allow *' "$kr"
    ceph-authtool --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
      --cap mgr 'allow profile osd' "$kr"
    ceph-authtool --gen-key -n "$RGW_NAME" --cap mon 'allow rw' --cap osd 'allow rwx' \
      --cap mgr 'allow rw' "$kr"
    chmod 600 "$kr"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap"
  } >"$DIR/log/setup.out" 2>&1 || die_log "$DIR/log/setup.out" "keyring or monmap creation failed"

  # Monitor.
  ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$kr" >>"$DIR/log/setup.out" 2>&1 ||
    die_log "$DIR/log/setup.out" "ceph-mon --mkfs failed"
  ceph-mon -f -i a </dev/null >"$DIR/log/mon.out" 2>&1 &
  local mon_pid=$!
  echo "mon $mon_pid ceph-mon" >"$PIDS_FILE"

  # OSD: register it with the monitor (this also waits for the monitor), make it, start it.
  cephc osd new "$osd_uuid" 0 >>"$DIR/log/setup.out" 2>&1 ||
    die_log "$DIR/log/mon.a.log" "monitor did not accept 'osd new' (see also $DIR/log/setup.out)"
  ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/setup.out" 2>&1 ||
    die_log "$DIR/log/setup.out" "ceph-osd --mkfs failed"
  ceph-osd -f -i 0 </dev/null >"$DIR/log/osd.out" 2>&1 &
  local osd_pid=$!
  echo "osd $osd_pid ceph-osd" >>"$PIDS_FILE"

  local deadline=$(($(date +%s) + 60))
  until cephc osd dump 2>/dev/null | grep -q '^osd\.0 up .*in '; do
    alive "$osd_pid" ceph-osd || die_log "$DIR/log/osd.0.log" "ceph-osd exited during start-up"
    (($(date +%s) < deadline)) || die_log "$DIR/log/osd.0.log" "osd.0 not up+in after 60 s"
    sleep 0.2
  done

  # radosgw: it creates its pools on first start. It exits silently if its port is taken, so
  # re-check the port right before and watch the PID while waiting.
  port_busy "$rgw_port" && die "port $rgw_port was taken between the check and radosgw's start"
  radosgw -f -n "$RGW_NAME" </dev/null >"$DIR/log/radosgw.out" 2>&1 &
  local rgw_pid=$!
  echo "radosgw $rgw_pid radosgw" >>"$PIDS_FILE"
  deadline=$(($(date +%s) + 60))
  until rgw_answers "$rgw_port"; do
    alive "$rgw_pid" radosgw ||
      die_log "$DIR/radosgw.log" "radosgw exited during start-up (port $rgw_port taken?)"
    (($(date +%s) < deadline)) || die_log "$DIR/radosgw.log" "radosgw did not answer GET / in 60 s"
    sleep 0.1
  done

  # Users. The secret of `tusk` always holds '+' and '/' (signers must not mangle them).
  local ak1 sk1 ak2 sk2
  ak1=TUSK$(rand_chars 16 'A-Z0-9')
  sk1=$(rand_chars 18 'A-Za-z0-9')+$(rand_chars 10 'A-Za-z0-9')/$(rand_chars 10 'A-Za-z0-9')
  ak2=OTHR$(rand_chars 16 'A-Z0-9')
  sk2=$(rand_chars 40 'A-Za-z0-9')
  radosgw-admin user create --uid tusk --display-name "tusk tests" \
    --access-key "$ak1" --secret-key "$sk1" >"$DIR/log/user-tusk.out" 2>&1 &
  local u1=$!
  radosgw-admin user create --uid other --display-name "other user" \
    --access-key "$ak2" --secret-key "$sk2" >"$DIR/log/user-other.out" 2>&1 &
  local u2=$!
  wait "$u1" || die_log "$DIR/log/user-tusk.out" "radosgw-admin user create tusk failed"
  wait "$u2" || die_log "$DIR/log/user-other.out" "radosgw-admin user create other failed"
  # The outputs echo the secrets: keep them private like the env file.
  chmod 600 "$DIR/log/user-tusk.out" "$DIR/log/user-other.out"

  local env_tmp=$DIR/env.tmp
  (
    umask 077
    cat >"$env_tmp" <<EOF
RGW_ENDPOINT='http://127.0.0.1:$rgw_port'
RGW_PORT='$rgw_port'
RGW_ACCESS_KEY='$ak1'
RGW_SECRET_KEY='$sk1'
RGW_OTHER_ACCESS_KEY='$ak2'
RGW_OTHER_SECRET_KEY='$sk2'
RGW_PIDS='$rgw_pid $osd_pid $mon_pid'
RGW_DIR='$DIR'
RGW_LOG='$DIR/radosgw.log'
CEPH_CONF='$CEPH_CONF'
EOF
  )
  mv "$env_tmp" "$DIR/env"
  cat "$DIR/env"
  echo "radosgw.sh: started in $(($(now_ms) - t0)) ms" >&2
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
env)
  [[ -f $DIR/env ]] || die "no $DIR/env: run '$0 start $DIR' first"
  cat "$DIR/env"
  ;;
*) usage ;;
esac
