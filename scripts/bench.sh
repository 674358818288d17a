#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md: builds the release handler and the bench
# driver, starts the local stack if needed, runs the subcommands and prints
# their results. Everything stays on 127.0.0.1.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: scripts/bench.sh [size] [cold-start] [per-record] [burst] [rate] [starts] [all]   (default: all but rate and starts)

  size        release binary size and profile
  cold-start  spawn -> first response, RUNS runs (default 20), also under
              cargo lambda watch if cargo-lambda is installed
  per-record  handler CPU per record at batch sizes 1 and 10, BATCHES batches (default 200)
  burst       the burst matrix: MaximumConcurrency {2,5} x double limit {5,20}/s,
              BURST_SUBMISSIONS submissions (default 2000) by BURST_WORKERS
              workers (default 714, the issue's 70000:25000 ratio), each run
              bounded by BURST_TIME_LIMIT seconds (default 1800)
  rate        the rate matrix: the same 1/35-scale burst, the
              handler NOT told R (MTURK_MAX_RPS unset: the adaptive limit
              under its default ceiling), for each CONCURRENCYxRPS cell of
              RATE_MATRIX (default "2x5 5x5 2x20 5x20 2x2 5x2 2x50 5x50");
              with OLD_BINARY set, each cell again with that (pre-adaptive)
              handler binary at the old fixed MTURK_MAX_RPS=2 per instance
  starts      the rate's bad starts, SEEDS seeds each (default
              "1 2 3 4 5"), the handler not told R: 120 submissions by 100
              workers at R = 8 with 10 % stray throttles, each instance's
              first call throttled (--throttle-first 2), then the bucket full
              (case D), then empty (--empty-bucket yes); with OLD_BINARY set,
              each run again with that handler, also not told R

Environment:
  AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS  use these local services
              (both must be set); otherwise scripts/local-stack.sh starts
              DynamoDB Local and moto (and stops them again afterwards)
  RUNS, BATCHES, BURST_SUBMISSIONS, BURST_WORKERS, BURST_TIME_LIMIT, BURST_MATRIX
              (BURST_MATRIX: space-separated CONCURRENCYxRPS, default "2x20 5x20 2x5 5x5")
  RATE_MATRIX, OLD_BINARY  (rate; OLD_BINARY e.g. a release exclusion-handler
              built from commit 4ce9aad)
  BENCH_OUT   where the full output goes (default .local/bench/bench-<time>.log)

The full issue-scale burst (70000 submissions, 25000 workers) needs
(70000 + 25000) / R seconds: 79 min at R=20 (measured: 79.3 min), 5.3 h at
R=5. Run it by hand, e.g.
  BURST_SUBMISSIONS=70000 BURST_WORKERS=25000 BURST_MATRIX=5x20 BURST_TIME_LIMIT=9000 scripts/bench.sh burst
EOF
}

WHAT=()
for a in "$@"; do
  case "$a" in
    -h | --help) usage; exit 0 ;;
    size | cold-start | per-record | burst | rate | starts) WHAT+=("$a") ;;
    all) WHAT+=(size cold-start per-record burst) ;;
    *) usage >&2; die "unknown argument: $a" ;;
  esac
done
((${#WHAT[@]})) || WHAT=(size cold-start per-record burst)

RUNS="${RUNS:-20}"
BATCHES="${BATCHES:-200}"
BURST_SUBMISSIONS="${BURST_SUBMISSIONS:-2000}"
BURST_WORKERS="${BURST_WORKERS:-714}"
BURST_TIME_LIMIT="${BURST_TIME_LIMIT:-1800}"
BURST_MATRIX="${BURST_MATRIX:-2x20 5x20 2x5 5x5}"
RATE_MATRIX="${RATE_MATRIX:-2x5 5x5 2x20 5x20 2x2 5x2 2x50 5x50}"
SEEDS="${SEEDS:-1 2 3 4 5}"
OLD_BINARY="${OLD_BINARY:-}"
mkdir -p "$LOCAL_DIR/bench"
BENCH_OUT="${BENCH_OUT:-$LOCAL_DIR/bench/bench-$(date -u +%Y%m%dT%H%M%SZ).log}"

if [[ -n "${AWS_ENDPOINT_URL_DYNAMODB:-}" && -n "${AWS_ENDPOINT_URL_SQS:-}" ]]; then
  say "using the local services at $AWS_ENDPOINT_URL_DYNAMODB and $AWS_ENDPOINT_URL_SQS"
else
  use_local_stack
fi
for var in AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SQS; do
  [[ "${!var}" == http://127.* || "${!var}" == http://localhost* ]] || die "$var=${!var} is not on loopback"
done

t="$(now)"
say "building the release handler and the bench driver (fat LTO: several minutes on 2 cores)"
cargo build --release "${LOCKED[@]}" -p exclusion-handler
cargo build --release "${LOCKED[@]}" -p bench
say "built in $(elapsed "$t")"
BENCH="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/bench"
[[ -x "$BENCH" ]] || BENCH="$REPO_ROOT/target/release/bench"

{
  echo "# scripts/bench.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
} | tee "$BENCH_OUT"

run() {
  say "bench $*"
  echo "\$ bench $*" >>"$BENCH_OUT"
  "$BENCH" "$@" 2>&1 | tee -a "$BENCH_OUT"
}

for w in "${WHAT[@]}"; do
  case "$w" in
    size) run size ;;
    cold-start) run cold-start --runs "$RUNS" ;;
    per-record) run per-record --batches "$BATCHES" ;;
    burst)
      for cell in $BURST_MATRIX; do
        run burst --submissions "$BURST_SUBMISSIONS" --workers "$BURST_WORKERS" \
          --concurrency "${cell%x*}" --rps "${cell#*x}" --time-limit "$BURST_TIME_LIMIT" || warn "burst $cell failed"
      done
      ;;
    rate)
      for cell in $RATE_MATRIX; do
        run burst --submissions "$BURST_SUBMISSIONS" --workers "$BURST_WORKERS" \
          --concurrency "${cell%x*}" --rps "${cell#*x}" --time-limit "$BURST_TIME_LIMIT" \
          --handler-rps default --label "new $cell" || warn "rate $cell (new) failed"
        if [[ -n "$OLD_BINARY" ]]; then
          run burst --submissions "$BURST_SUBMISSIONS" --workers "$BURST_WORKERS" \
            --concurrency "${cell%x*}" --rps "${cell#*x}" --time-limit "$BURST_TIME_LIMIT" \
            --handler-rps 2 --binary "$OLD_BINARY" --label "old $cell" || warn "rate $cell (old) failed"
        fi
      done
      ;;
    starts)
      for start in "--throttle-first 2" "" "--empty-bucket yes"; do
        for seed in $SEEDS; do
          for binary in "" ${OLD_BINARY:+"$OLD_BINARY"}; do
            # shellcheck disable=SC2086 # $start is two words or none
            run burst --submissions 120 --workers 100 --concurrency 2 --rps 8 \
              --stray-throttle 0.1 --timeout 60 --prefill yes --time-limit 300 \
              --handler-rps default --seed "$seed" $start ${binary:+--binary "$binary"} \
              --label "${binary:+old }${start:-bucket full} seed $seed" || warn "starts $start seed $seed failed"
          done
        done
      done
      ;;
  esac
done

say "results (also in ${BENCH_OUT#"$REPO_ROOT"/}):"
grep '^RESULT ' "$BENCH_OUT" || true
