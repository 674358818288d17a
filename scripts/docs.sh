#!/usr/bin/env bash
# The docs' drift checks (crates/cli/tests/docs.rs): relative links and
# anchors, the CLI's --help blocks, template.yaml's parameters and outputs on
# docs/deploy.md. scripts/test.sh runs the same test with the others.
#   scripts/docs.sh check    fail when a doc drifted
#   scripts/docs.sh update   rewrite every <!-- help: … --> block from the built CLI, then check
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

case "${1:-check}" in
  check) cargo test "${LOCKED[@]}" -p mturk-exclusion-cli --test docs ;;
  update)
    UPDATE_DOCS=1 cargo test "${LOCKED[@]}" -p mturk-exclusion-cli --test docs every_quoted_help_text
    cargo test "${LOCKED[@]}" -p mturk-exclusion-cli --test docs
    ;;
  *)
    echo "usage: scripts/docs.sh check|update" >&2
    exit 2
    ;;
esac
