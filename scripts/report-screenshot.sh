#!/usr/bin/env bash
# Makes docs/report.png the honest way: the browser test of `report`
# (crates/cli/tests/cli/report.rs) fills a ledger on the local stack with
# two weeks of three studies, runs the real `mturk-exclusion report`, opens
# the page in headless Chromium (scripts/browser/report-page.mjs, which also
# checks it loads nothing) and saves a screenshot at a fixed viewport
# (1000 x 1500). The data are made up; the page and the picture are not.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "Usage: scripts/report-screenshot.sh [OUTPUT]   (default docs/report.png)"
  exit 0
fi
OUT="$(realpath -m "${1:-$REPO_ROOT/docs/report.png}")"

bash "$REPO_ROOT/scripts/setup.sh"
use_local_stack
mkdir -p "$(dirname "$OUT")"
say "REPORT_SCREENSHOT=$OUT cargo test -p mturk-exclusion-cli --test cli report::report_page"
REPORT_SCREENSHOT="$OUT" cargo test "${LOCKED[@]}" -p mturk-exclusion-cli --test cli \
  report::report_page_renders_in_chromium_and_loads_nothing -- --exact --nocapture
[[ -s "$OUT" ]] || die "no screenshot at $OUT"
say "wrote $OUT ($(stat -c %s "$OUT") bytes)"
