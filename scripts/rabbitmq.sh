#!/usr/bin/env bash
# Runs a throw-away RabbitMQ node (Debian's rabbitmq-server) as the current user, on free
# 127.0.0.1 ports, with everything it writes under DIR: the real broker tusk's queue tests use.
#   rabbitmq.sh start DIR   start a fresh node, wait until it answers, print DIR/env
#   rabbitmq.sh stop DIR    stop the PIDs recorded in DIR/env (the node, then its epmd) and wait
#   rabbitmq.sh ctl DIR ARGS...   rabbitmqctl ARGS against that node (bounded: 30 s)
# DIR/env holds RABBITMQ_URL (amqp://tusk:<password>@127.0.0.1:<port>/), the ports and the PIDs.
# Tricky: Erlang would start a shared epmd daemon we could not tell apart, so we run our own epmd
# in the foreground on a private port; the node's own OS pid comes from its pid file (the
# rabbitmq-server script stays as its parent). The user is made by the config's default_user on
# first boot, so no slow rabbitmqctl round trips are needed for it. Apt's service never runs.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop DIR | ctl DIR ARGS..." >&2
  exit 2
}
(($# == 2)) || [[ $# -gt 2 && $1 == ctl ]] || usage
cmd=$1
[[ $cmd == start ]] && mkdir -p "$2"
[[ -d $2 ]] || { echo "rabbitmq.sh: error: no directory $2" >&2; exit 1; }
DIR=$(cd "$2" && pwd)
START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-60}  # seconds until the node must answer
STOP_TIMEOUT=${RABBITMQ_STOP_TIMEOUT:-20}    # seconds before SIGKILL
SBIN=/usr/lib/rabbitmq/bin

die() {
  echo "rabbitmq.sh: error: $*" >&2
  exit 1
}

# die_log MESSAGE: fail and show the end of the logs that explain why.
die_log() {
  echo "rabbitmq.sh: error: $*" >&2
  local log
  for log in "$DIR/log/rabbit.log" "$DIR/log/startup.log" "$DIR/log/epmd.log"; do
    if [[ -s $log ]]; then
      echo "--- last lines of $log ---" >&2
      tail -n 30 "$log" >&2
    fi
  done
  exit 1
}

# free_port, port_busy, pick_port, alive PID WORD
# shellcheck source=scripts/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# stop_pid PID WORD: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; only if PID still runs WORD.
stop_pid() {
  local pid=$1 word=$2
  alive "$pid" "$word" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" "$word" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if alive "$pid" "$word"; then
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid" "$word"; do sleep 0.1; done
  fi
}

# The environment every rabbitmq-server / rabbitmqctl call of this node needs.
node_env() {
  export HOME=$DIR/home
  export RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$DIR/mnesia
  export RABBITMQ_LOG_BASE=$DIR/log
  export RABBITMQ_LOGS=$DIR/log/rabbit.log
  export RABBITMQ_PID_FILE=$DIR/rabbit.pid
  export RABBITMQ_NODENAME=tusk-test-$NODE_PORT@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$NODE_PORT
  [[ -z ${DIST_PORT:-} ]] || export RABBITMQ_DIST_PORT=$DIST_PORT
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=$EPMD_PORT
}

start() {
  [[ -x $SBIN/rabbitmq-server ]] || die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
  command -v epmd >/dev/null || die "epmd (erlang-base) is not installed"
  if [[ -f $DIR/env ]]; then
    local old_pids
    old_pids=$(sed -n "s/^RABBITMQ_PIDS='\\(.*\\)'$/\\1/p" "$DIR/env")
    [[ -z $old_pids ]] || die "$DIR already has a node (RABBITMQ_PIDS=$old_pids): stop it first"
  fi
  rm -rf "$DIR/mnesia" "$DIR/log" "$DIR/home" "$DIR/env" "$DIR/rabbit.pid"
  mkdir -p "$DIR/log" "$DIR/home" "$DIR/mnesia"
  NODE_PORT=$(pick_port)
  DIST_PORT=$(pick_port)
  EPMD_PORT=$(pick_port)
  local password
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
  : >"$DIR/rabbitmq-env.conf"
  echo "[]." >"$DIR/enabled_plugins"
  echo "[]." >"$DIR/advanced.config"
  umask 077
  cat >"$DIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$NODE_PORT
default_user = tusk
default_pass = $password
default_vhost = /
loopback_users = none
log.file.level = info
log.console = false
disk_free_limit.absolute = 1MB
collect_statistics = none
EOF
  umask 022
  node_env

  # Our own epmd, in the foreground so that its PID is ours.
  epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$DIR/log/epmd.log" 2>&1 </dev/null &
  local epmd_pid=$!
  local deadline=$((SECONDS + 10))
  until port_busy "$EPMD_PORT"; do
    alive "$epmd_pid" epmd || die_log "epmd exited at start"
    ((SECONDS < deadline)) || { stop_pid "$epmd_pid" epmd; die_log "epmd did not listen on $EPMD_PORT"; }
    sleep 0.1
  done

  setsid "$SBIN/rabbitmq-server" >"$DIR/log/startup.log" 2>&1 </dev/null &
  local script_pid=$!
  # Recorded at once, so that `stop` can clean up even if the wait below fails.
  cat >"$DIR/env" <<EOF
RABBITMQ_DIR='$DIR'
RABBITMQ_PORT='$NODE_PORT'
RABBITMQ_EPMD_PORT='$EPMD_PORT'
RABBITMQ_NODENAME='$RABBITMQ_NODENAME'
RABBITMQ_PIDS='$script_pid $epmd_pid'
EOF

  # Bounded wait: the node's AMQP listener opens last, after the default user exists.
  local beam_pid=""
  deadline=$((SECONDS + START_TIMEOUT))
  until [[ -n $beam_pid ]] && port_busy "$NODE_PORT"; do
    if ! alive "$script_pid" rabbitmq; then
      stop_pid "$epmd_pid" epmd
      die_log "rabbitmq-server exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      "$0" stop "$DIR" || true
      die_log "rabbitmq-server did not answer on 127.0.0.1:$NODE_PORT within ${START_TIMEOUT}s"
    fi
    [[ -z $beam_pid && -s $DIR/rabbit.pid ]] && beam_pid=$(tr -dc 0-9 <"$DIR/rabbit.pid")
    sleep 0.2
  done
  cat >"$DIR/env" <<EOF
RABBITMQ_DIR='$DIR'
RABBITMQ_URL='amqp://tusk:$password@127.0.0.1:$NODE_PORT/'
RABBITMQ_PORT='$NODE_PORT'
RABBITMQ_EPMD_PORT='$EPMD_PORT'
RABBITMQ_NODENAME='$RABBITMQ_NODENAME'
RABBITMQ_PIDS='$beam_pid $script_pid $epmd_pid'
EOF
  chmod 600 "$DIR/env"
  echo "rabbitmq.sh: node $RABBITMQ_NODENAME on 127.0.0.1:$NODE_PORT (pids $beam_pid $script_pid $epmd_pid)" >&2
}

stop() {
  [[ -f $DIR/env ]] || return 0
  local pids
  pids=$(sed -n "s/^RABBITMQ_PIDS='\\(.*\\)'$/\\1/p" "$DIR/env")
  read -r -a list <<<"$pids"
  local n=${#list[@]}
  if ((n == 3)); then
    stop_pid "${list[0]}" beam
    stop_pid "${list[1]}" rabbitmq
    stop_pid "${list[2]}" epmd
  elif ((n == 2)); then
    # Start-up failed before the node wrote its pid: the script's whole process group.
    if alive "${list[0]}" rabbitmq; then
      kill -TERM -- "-${list[0]}" 2>/dev/null || true
    fi
    stop_pid "${list[0]}" rabbitmq
    stop_pid "${list[1]}" epmd
  fi
  sed -i "s/^RABBITMQ_PIDS=.*/RABBITMQ_PIDS=''/" "$DIR/env"
}

# ctl ARGS...: rabbitmqctl with the node's environment (cookie, epmd port, node name).
ctl() {
  [[ -f $DIR/env ]] || die "no node in $DIR"
  NODE_PORT=$(sed -n "s/^RABBITMQ_PORT='\\(.*\\)'$/\\1/p" "$DIR/env")
  EPMD_PORT=$(sed -n "s/^RABBITMQ_EPMD_PORT='\\(.*\\)'$/\\1/p" "$DIR/env")
  DIST_PORT=""
  node_env
  timeout 30 "$SBIN/rabbitmqctl" --node "$RABBITMQ_NODENAME" "$@"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  ctl) shift 2 && ctl "$@" ;;
  *) usage ;;
esac
