#!/usr/bin/env bash
# The test command: installs what is missing, starts the local stack (and
# stops it again if it started it), runs the whole workspace's tests.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  cat <<EOF
Usage: scripts/test.sh [cargo test arguments...]

  1. scripts/setup.sh              (idempotent; moto, DynamoDB Local), then
     scripts/moto-server.py --self-check (its fixes leave moto's answers alone)
  2. scripts/local-stack.sh start  (DynamoDB Local + moto's SQS on 127.0.0.1;
                                    stopped again on exit if this script started it)
  3. cargo test --workspace [--locked] ARGS...  with AWS_ENDPOINT_URL_DYNAMODB,
                                    AWS_ENDPOINT_URL_SQS and dummy credentials set

Exits with cargo's status. Examples:
  scripts/test.sh
  scripts/test.sh --test it ops::            the library's tests (one binary), one module
  scripts/test.sh --test cli -- --nocapture  the CLI binary's tests
  scripts/test.sh --test docs                the docs' drift checks: links and anchors, the
                                             CLI's --help blocks, docs/deploy.md's tables
                                             (scripts/docs.sh update regenerates help blocks)
  (with plain cargo: cargo test -p mturk-exclusion --test it,
                     cargo test -p mturk-exclusion-cli --test cli)
  DDB_PORT=19000 SQS_PORT=19001 scripts/test.sh
EOF
  exit 0
fi

T0="$(now)"
bash "$REPO_ROOT/scripts/setup.sh"
# The local SQS is moto with speed fixes: first show that they change none of
# its answers (a scenario run on stock and on fixed moto, in process, ~3 s).
"$VENV_DIR/bin/python" "$REPO_ROOT/scripts/moto-server.py" --self-check

use_local_stack

say "cargo test --workspace ${LOCKED[*]} $*"
t="$(now)"
set +e
cargo test --workspace "${LOCKED[@]}" "$@"
rc=$?
set -e
say "cargo test exited with $rc after $(elapsed "$t") (whole script $(elapsed "$T0"))"
exit "$rc"
