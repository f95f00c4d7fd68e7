# Sourced by radosgw.sh and rabbitmq.sh: free 127.0.0.1 ports and PID checks for the throw-away
# servers the tests start. The caller defines die MESSAGE. Tricky: a port the kernel gave us is
# released again before the server binds it, so pick_port double-checks that nobody listens.

# free_port: a port nobody listens on now on 127.0.0.1 (the kernel picks it; we release it again).
free_port() {
  /usr/bin/python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# port_busy PORT: true when something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port: a free port, double-checked against a live listener (some servers exit silently).
pick_port() {
  local p
  for _ in 1 2 3 4 5; do
    p=$(free_port)
    if ! port_busy "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "could not find a free port on 127.0.0.1"
}

# alive PID WORD: PID runs a command line containing WORD (guards against a recycled PID; a
# zombie has an empty command line, so it counts as gone).
alive() {
  local pid=$1 word=$2
  [[ -n $pid && -d /proc/$pid ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$word"* ]]
}
