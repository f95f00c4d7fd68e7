#!/bin/bash
# Runs the cache-tests.fyi suite (http-cache-tests 0.4.5) against tuskd.
#   ./run.sh              full run -> results-tusk.json, then prints the scores
#   ./run.sh --id=TEST    one test with its request/response dump (-> dumps/TEST.txt too)
# Starts origin, tuskd and shim on free 127.0.0.1 ports, stops them (by PID) at exit.
# Needs node (Debian's nodejs + npm) and the npm registry the first time (the suite is fetched
# into $TUSK_CACHETESTS_DIR/pkg). Not part of ./scripts/test.sh: it needs the network; the rules
# it measures have their own tests (tests/integration/test_http_cache.py).
# TUSKD (default: build/proxy/tuskd), TUSK_CACHETESTS_DIR (default: /tmp/tusk-cachetests).
set -u
S=$(cd "$(dirname "$0")" && pwd)
D=${TUSK_CACHETESTS_DIR:-/tmp/tusk-cachetests}
TUSKD=${TUSKD:-$S/../../build/proxy/tuskd}
mkdir -p "$D" && cp "$S/origin.mjs" "$S/score.mjs" "$D/"
ID=""
for a in "$@"; do case $a in --id=*) ID=${a#--id=};; esac; done
cd $D || exit 1

# the suite itself (once): http-cache-tests 0.4.5 from the npm registry, unpacked into pkg/
if [ ! -d $D/pkg/node_modules/node-fetch ]; then
  rm -rf $D/pkg && mkdir -p $D/pkg && (cd $D &&
    npm pack http-cache-tests@0.4.5 >/dev/null 2>&1 &&
    tar xzf http-cache-tests-0.4.5.tgz -C pkg --strip-components=1 &&
    cd pkg && npm install --omit=dev --no-audit --no-fund >/dev/null) || exit 1
fi

freeports() { python3 - "$1" <<'EOF'
import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}
read ORIGIN TUSK ADMIN SHIM <<<"$(freeports 4)"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

waitport() { # port name
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: $2 did not listen on $1" >&2; exit 1
}

rm -rf $D/cache && mkdir -p $D/cache $D/logs
cat > $D/tuskd.yaml <<EOF
server: {listen: ["127.0.0.1:$TUSK"], workers: 1, drain_delay: 0s}
admin: {listen: "127.0.0.1:$ADMIN"}
cache: {dir: $D/cache, max_size: 1GiB, chunk_size: 8MiB, min_free: 0}
log: {level: info, access_log: $D/logs/access.log}
upstreams:
  origin:
    endpoint: http://127.0.0.1:$ORIGIN
    signature: none
    retries: 0
    connect_timeout: 2s
    stall_timeout: 10s
    forward_headers: [Req-Num, Test-Name, Test-ID, Foo, Bar, Baz, Abc, Accept-Language, Accept-Encoding]
routes:
  - {prefix: /test/, upstream: origin, bucket: test, ttl: 0s, query: key, prefetch: whole}
  - {prefix: /state/, upstream: origin, bucket: state, ttl: 0s}
EOF
$TUSKD --check-config $D/tuskd.yaml >/dev/null || exit 1

# origin (the suite's server, bound to 127.0.0.1 by origin.mjs)
npm_config_port=$ORIGIN npm_config_protocol=http npm_config_pidfile=$D/logs/origin.pid \
  node --no-warnings $D/origin.mjs > $D/logs/origin.log 2>&1 &
PIDS+=($!); waitport $ORIGIN origin
$TUSKD --config $D/tuskd.yaml > $D/logs/tuskd.log 2>&1 &
PIDS+=($!); waitport $TUSK tuskd
python3 $S/shim.py $SHIM $TUSK $ORIGIN > $D/logs/shim.log 2>&1 &
PIDS+=($!); waitport $SHIM shim
echo "origin :$ORIGIN  tuskd :$TUSK (admin :$ADMIN)  shim :$SHIM" >&2

cd $D/pkg
if [ -n "$ID" ]; then   # --id=a,b,c: each test alone, one after the other
  mkdir -p $D/dumps
  for one in ${ID//,/ }; do
    off=$(stat -c%s $D/logs/origin.log)
    npm_config_base=http://127.0.0.1:$SHIM npm_config_id="$one" \
      timeout 120 node --no-warnings cli.mjs > $D/dumps/$one.cli 2>&1
    sleep 0.2
    # the CLI prints the client side, the origin prints the server side
    { cat $D/dumps/$one.cli; echo "---- origin side ----"; tail -c +$((off+1)) $D/logs/origin.log; } \
      | sed 's/\x1b\[[0-9;]*m//g' > $D/dumps/$one.txt
    rm -f $D/dumps/$one.cli
    [ "${ID//,/}" = "$ID" ] && cat $D/dumps/$one.txt || echo "$one: $(grep -A1 '==== Results' $D/dumps/$one.txt | tail -1)"
  done
  exit 0
fi

start=$(date +%s)
npm_config_base=http://127.0.0.1:$SHIM npm_config_id="" npm_package_config_id="" \
  timeout 900 node --no-warnings cli.mjs > $D/results-tusk.json.tmp 2> $D/logs/cli.err
rc=$?
echo "CLI exit $rc after $(( $(date +%s) - start ))s" >&2
if [ $rc -ne 0 ] || ! python3 -c "import json,sys; json.load(open(sys.argv[1]))" $D/results-tusk.json.tmp; then
  echo "run.sh: CLI failed, see $D/results-tusk.json.tmp and $D/logs/" >&2; exit 1
fi
mv $D/results-tusk.json.tmp $D/results-tusk.json
cleanup; PIDS=()
cd $D && node --no-warnings $D/score.mjs $D/results-tusk.json
