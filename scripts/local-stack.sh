#!/usr/bin/env bash
# The local stand-ins for AWS: DynamoDB Local and moto's SQS, both on
# 127.0.0.1 only. State in .local/run/ (pid files), logs in .local/log/.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: scripts/local-stack.sh start|stop|status|env|--help

  start   start DynamoDB Local (port \$DDB_PORT, default 18000) and moto's SQS
          (port \$SQS_PORT, default 15000) on 127.0.0.1 and wait until both
          answer (at most \$STACK_WAIT_SECONDS, default 60). moto runs through
          scripts/moto-server.py (speed fixes; MOTO_STOCK=1 for stock moto).
          Already running:
          nothing to do. Runs scripts/setup.sh first if something is missing.
  stop    stop exactly the processes recorded in .local/run/*.pid
  status  say what runs; exit 0 if both run, 3 otherwise
  env     print export lines for the AWS SDKs, for
            eval "\$(scripts/local-stack.sh env)"
A second stack beside the usual one: set STACK_NAME (its pid files and logs
go to .local/run-NAME/ and .local/log-NAME/) and other ports, e.g.
  STACK_NAME=bench DDB_PORT=19200 SQS_PORT=19201 scripts/local-stack.sh start

Both servers keep everything in memory: a restart starts empty.
Logs: .local/log/dynamodb-local.log, .local/log/moto.log
EOF
}

STACK_WAIT_SECONDS="${STACK_WAIT_SECONDS:-60}"
# Own session: a Ctrl-C meant for a test run, or a closing terminal, does not
# reach the servers; they stop by `stop` (by pid) only. setsid execs in place
# here (the child is no process-group leader), so $! is the server's pid.
if command -v setsid >/dev/null; then SETSID=(setsid); else SETSID=(); fi
SERVICES=(dynamodb-local moto)

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
port_file() { printf '%s/%s.port' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
# A string the process's command line must contain, so that a pid file
# left behind never makes us signal some unrelated process that reused it.
cmd_marker() {
  case "$1" in
    dynamodb-local) printf 'LoopbackDynamoDBLocal' ;;
    moto) printf 'moto-server.py' ;;
  esac
}
wanted_port() {
  case "$1" in
    dynamodb-local) printf '%s' "$DDB_PORT" ;;
    moto) printf '%s' "$SQS_PORT" ;;
  esac
}

# Prints the recorded pid if that process is alive and is ours.
running_pid() {
  local svc="$1" pid
  pid="$(cat "$(pid_file "$svc")" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(cmd_marker "$svc")" || return 1
  printf '%s\n' "$pid"
}

# The port a running service was started on (it may differ from the default).
recorded_port() {
  local svc="$1" p
  p="$(cat "$(port_file "$svc")" 2>/dev/null || true)"
  if [[ "$p" =~ ^[0-9]+$ ]]; then printf '%s' "$p"; else wanted_port "$svc"; fi
}

# Does anything answer HTTP on 127.0.0.1:PORT? (Any status code will do:
# DynamoDB Local answers 400 to an unsigned GET.)
answers() {
  local code
  code="$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null || true)"
  [[ "$code" =~ ^[1-5][0-9][0-9]$ ]]
}

port_in_use() {
  # bash's /dev/tcp: connects, so it sees listeners on 127.0.0.1 and 0.0.0.0.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_port() {
  local svc="$1" port var
  port="$(wanted_port "$svc")"
  var="$([[ $svc == moto ]] && echo SQS_PORT || echo DDB_PORT)"
  if [[ ! "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "$svc: bad port $var='$port'"; fi
  if port_in_use "$port"; then
    die "$svc: port $port on 127.0.0.1 is already taken by another process (choose another with $var=...)"
  fi
}

launch() {
  local svc="$1" port log pid
  port="$(wanted_port "$svc")"
  log="$(log_file "$svc")"
  : >"$log"
  case "$svc" in
    dynamodb-local)
      local lib
      lib="$(ddb_local_dir)" || die "DynamoDB Local is not installed: run scripts/setup.sh"
      # DynamoDB Local itself has no listen-address option and binds every
      # interface; LoopbackDynamoDBLocal (built by setup.sh) runs it bound to
      # 127.0.0.1. -disableTelemetry: it would otherwise send telemetry.
      # cwd = the log dir: DynamoDB Local may write files where it runs.
      (cd "$LOG_DIR" && exec "${SETSID[@]}" java -Xms64m -Xmx512m -Dddb.host=127.0.0.1 \
        -Djava.library.path="$lib/DynamoDBLocal_lib" \
        -cp "$SHIM_DIR/classes:$lib/DynamoDBLocal.jar" LoopbackDynamoDBLocal \
        -inMemory -sharedDb -disableTelemetry -port "$port" \
        </dev/null >>"$log" 2>&1) &
      pid=$!
      ;;
    moto)
      # moto with three speed fixes that keep its behaviour (see the file);
      # MOTO_STOCK=1 runs it unchanged.
      (cd "$LOG_DIR" && exec "${SETSID[@]}" "$VENV_DIR/bin/python" "$REPO_ROOT/scripts/moto-server.py" -H 127.0.0.1 -p "$port" \
        </dev/null >>"$log" 2>&1) &
      pid=$!
      ;;
  esac
  printf '%s\n' "$pid" >"$(pid_file "$svc")"
  printf '%s\n' "$port" >"$(port_file "$svc")"
  say "$svc: started (pid $pid, 127.0.0.1:$port, log ${log#"$REPO_ROOT"/})"
}

wait_ready() {
  local svc="$1" port deadline
  port="$(recorded_port "$svc")"
  deadline=$((SECONDS + STACK_WAIT_SECONDS))
  until answers "$port"; do
    if ! running_pid "$svc" >/dev/null; then
      printf '%s\n' "--- last lines of $(log_file "$svc") ---" >&2
      tail -n 30 "$(log_file "$svc")" >&2 || true
      rm -f "$(pid_file "$svc")" "$(port_file "$svc")"
      die "$svc exited before answering on 127.0.0.1:$port"
    fi
    if ((SECONDS >= deadline)); then
      printf '%s\n' "--- last lines of $(log_file "$svc") ---" >&2
      tail -n 30 "$(log_file "$svc")" >&2 || true
      die "$svc did not answer on 127.0.0.1:$port within ${STACK_WAIT_SECONDS}s"
    fi
    sleep 0.2
  done
}

# Stops the given services: SIGTERM to all of them first (moto takes ~2 s
# to exit), then wait for each; SIGKILL after 15 s.
stop_services() {
  local svc pid i
  local -A pids=()
  for svc in "$@"; do
    if pid="$(running_pid "$svc")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids[$svc]="$pid"
    elif [[ -f "$(pid_file "$svc")" ]]; then
      say "$svc: not running (removing stale pid file)"
    else
      say "$svc: not running"
    fi
  done
  for svc in "$@"; do
    pid="${pids[$svc]:-}"
    if [[ -n "$pid" ]]; then
      for ((i = 0; i < 150; i++)); do # up to 15 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        warn "$svc (pid $pid) ignored SIGTERM for 15 s: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.1
        done
      fi
      kill -0 "$pid" 2>/dev/null && die "$svc (pid $pid) is still running"
      say "$svc: stopped (pid $pid)"
    fi
    rm -f "$(pid_file "$svc")" "$(port_file "$svc")"
  done
}

LAUNCHED=() # services this `start` launched: stopped again if it fails
START_OK=0
on_start_exit() {
  if ((!START_OK && ${#LAUNCHED[@]})); then
    warn "start failed: stopping what it launched (${LAUNCHED[*]})"
    stop_services "${LAUNCHED[@]}" || true
  fi
}

cmd_start() {
  local t svc pid need_setup=0 to_launch=()
  t="$(now)"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  [[ -x "$VENV_DIR/bin/moto_server" ]] || need_setup=1
  ddb_local_dir >/dev/null || need_setup=1
  [[ -f "$SHIM_DIR/classes/LoopbackDynamoDBLocal.class" ]] || need_setup=1
  if ((need_setup)); then
    say "local tools missing: running scripts/setup.sh"
    bash "$REPO_ROOT/scripts/setup.sh"
  fi
  command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
  for svc in "${SERVICES[@]}"; do
    if pid="$(running_pid "$svc")"; then
      say "$svc: already running (pid $pid, 127.0.0.1:$(recorded_port "$svc"))"
    else
      rm -f "$(pid_file "$svc")" "$(port_file "$svc")"
      check_port "$svc"
      to_launch+=("$svc")
    fi
  done
  trap on_start_exit EXIT
  for svc in "${to_launch[@]}"; do
    launch "$svc"
    LAUNCHED+=("$svc")
  done
  for svc in "${SERVICES[@]}"; do wait_ready "$svc"; done
  START_OK=1
  say "local stack ready in $(elapsed "$t"): DynamoDB http://127.0.0.1:$(recorded_port dynamodb-local), SQS http://127.0.0.1:$(recorded_port moto)"
}

cmd_stop() {
  stop_services "${SERVICES[@]}"
}

cmd_status() {
  local svc pid port all=0
  for svc in "${SERVICES[@]}"; do
    port="$(recorded_port "$svc")"
    if pid="$(running_pid "$svc")"; then
      if answers "$port"; then
        echo "$svc: running (pid $pid, http://127.0.0.1:$port)"
      else
        echo "$svc: starting or not answering (pid $pid, http://127.0.0.1:$port)"
        all=3
      fi
    else
      echo "$svc: stopped"
      all=3
    fi
  done
  return "$all"
}

cmd_env() {
  printf 'export %s\n' "${LOCAL_AWS_ENV[@]}"
  cat <<EOF
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(recorded_port dynamodb-local)
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$(recorded_port moto)
EOF
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command: $1" ;;
esac
