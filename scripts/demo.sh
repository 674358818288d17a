#!/usr/bin/env bash
# Quick start: runs a whole study locally (MTurk double, DynamoDB Local, moto's
# SQS, the handler, one run of the watch) through the example `local_study`.
# No AWS account needed.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<EOF
Usage: scripts/demo.sh [arguments for the local_study example...]

Installs what is missing (scripts/setup.sh), starts the local stack
(scripts/local-stack.sh; stopped again on exit if this script started it),
builds the example (cargo's progress shows), then runs:
  cargo run --quiet --example local_study -- ARGS...
and sums up the CloudWatch metrics (EMF lines) the handler, the check and
the watch wrote during the run (scripts/emf-summary.py).
To see the example's own options:  scripts/demo.sh --help-example
EOF
  exit 0
fi
ARGS=("$@")
if [[ "${1:-}" == "--help-example" ]]; then ARGS=(--help); fi

bash "$REPO_ROOT/scripts/setup.sh"

use_local_stack

# The functions' EMF lines (what the deployed functions write into their
# logs for CloudWatch) go to this file; summed up after the run.
# (No trap of its own: use_local_stack owns the EXIT trap.)
EMF_LOG=$(mktemp "${TMPDIR:-/tmp}/mturk-exclusion-emf.XXXXXX")
export EMF_LOG

# Built first, with cargo's progress showing: on a fresh machine this is
# the long part (several minutes on 2 cores); the run itself takes seconds.
say "building the demo (the first time takes a few minutes; later runs start at once)"
t="$(now)"
cargo build "${LOCKED[@]}" --example local_study
say "built in $(elapsed "$t")"

set +e
cargo run --quiet "${LOCKED[@]}" --example local_study -- "${ARGS[@]}"
rc=$?
set -e
((rc == 0)) || warn "the local_study example exited with $rc"
if [[ -s "$EMF_LOG" ]]; then
  echo
  python3 "$REPO_ROOT/scripts/emf-summary.py" "$EMF_LOG" ||
    warn "could not sum up the metrics in $EMF_LOG"
fi
rm -f "$EMF_LOG"
exit "$rc"
