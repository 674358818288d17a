#!/usr/bin/env bash
# Tests dist/ as deployed: the bytes in the archives, unpacked, not a
# rebuild of them. See docs/release-artifacts.md.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: scripts/check-dist.sh [DIST]      (DIST defaults to dist/, from scripts/release.sh)

  1. SHA256SUMS verifies (sha256sum -c) and lists every file in DIST
  2. template.yaml: no BuildMethod/BuildProperties left, every CodeUri and
     ReadmeUrl names a file in DIST, cfn-lint, sam validate, sam validate --lint
  3. each function zip holds exactly one executable \`bootstrap\`, an aarch64 ELF;
     unpacked, it runs under qemu-aarch64 (-L $AARCH64_SYSROOT) through the
     project's Runtime API emulator against the local stack:
       exclusion-handler.zip  excludes workers end to end (crates/handler/tests/process.rs,
                              with EXCLUSION_HANDLER_BOOTSTRAP and BOOTSTRAP_RUNNER)
       exclusion-check.zip    answers Function URL requests (crates/check/tests/check
                              contract::, with EXCLUSION_CHECK_BOOTSTRAP)
       exclusion-watch.zip    subscribes and backfills a HIT type nobody subscribed
                              (crates/watch/tests/process.rs, with
                              EXCLUSION_WATCH_BOOTSTRAP)
       any other zip          answers one invocation with {} (testkit's example
                              invoke_bootstrap, with the function's environment
                              from the template)
  4. the CLI archives: each holds mturk-exclusion-VERSION-TARGET/mturk-exclusion,
     a static binary (file, ldd); the x86_64 one runs --version and then
     exclude + status against the local stack from an empty directory with a
     bare environment (crates/cli/tests/cli/dist.rs); the aarch64 one runs
     --version under qemu-aarch64.

Starts the local stack if it is not running (and stops it again). The tests
are cargo's debug test binaries, built with --workspace (as scripts/test.sh
builds them, so CI compiles nothing new); the artifacts are never rebuilt.
EOF
}
DIST="$REPO_ROOT/dist"
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) DIST="$(realpath "$1")" ;;
esac
[[ -d "$DIST" ]] || die "no $DIST: run scripts/release.sh VERSION first"

T0="$(now)"
TIMINGS=()
step() { say "== $* =="; }
timed() { TIMINGS+=("$(printf '%-44s %s' "$1" "$(elapsed "$2")")"); }

bash "$REPO_ROOT/scripts/setup.sh" --release-tools
export PATH="$VENV_DIR/bin:$PATH"
PY="$VENV_DIR/bin/python"
RUNNER="qemu-aarch64 -L $AARCH64_SYSROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mturk-exclusion-check-dist.XXXXXX")"

# --- 1. Checksums ------------------------------------------------------------------
step "SHA256SUMS"
t="$(now)"
[[ -f "$DIST/SHA256SUMS" ]] || die "no SHA256SUMS in $DIST"
(cd "$DIST" && sha256sum --strict -c SHA256SUMS) || die "SHA256SUMS does not verify"
listed="$(awk '{ sub(/^\*/, "", $2); print $2 }' "$DIST/SHA256SUMS" | LC_ALL=C sort)"
present="$(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort)"
[[ "$listed" == "$present" ]] ||
  die "SHA256SUMS does not list exactly the files in $DIST: $(diff <(printf '%s\n' "$listed") <(printf '%s\n' "$present") | tr '\n' ' ')"
timed "SHA256SUMS" "$t"

# --- 2. The packaged template ---------------------------------------------------------
step "template.yaml"
t="$(now)"
"$PY" scripts/release-template.py check "$DIST/template.yaml" "$DIST"
(cd "$DIST" && cfn-lint -- template.yaml) || die "cfn-lint found problems in dist/template.yaml"
(cd "$DIST" && timeout 300 sam validate --template-file template.yaml --region us-east-1) ||
  die "sam validate failed on dist/template.yaml"
(cd "$DIST" && timeout 300 sam validate --lint --template-file template.yaml --region us-east-1) ||
  die "sam validate --lint failed on dist/template.yaml"
timed "template (cfn-lint, sam validate)" "$t"

# --- 3. The function zips ----------------------------------------------------------------
# unzip_bootstrap ZIP DIR: exactly one entry, `bootstrap`, mode 0755; an aarch64 ELF.
unzip_bootstrap() {
  "$PY" - "$1" "$2" <<'PY'
import os, stat, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    infos = z.infolist()
    names = [i.filename for i in infos]
    if names != ["bootstrap"]:
        sys.exit(f"{zip_path}: holds {names}, not just bootstrap")
    mode = (infos[0].external_attr >> 16) & 0o777
    if mode != 0o755:
        sys.exit(f"{zip_path}: bootstrap has mode {oct(mode)}, not 0o755 (Lambda would not run it)")
    os.makedirs(out, exist_ok=True)
    path = z.extract(infos[0], out)
    os.chmod(path, mode)
with open(path, "rb") as f:
    head = f.read(20)
if head[:6] != b"\x7fELF\x02\x01" or head[18:20] != b"\xb7\x00":
    sys.exit(f"{zip_path}: bootstrap is not a 64-bit aarch64 ELF")
PY
}

mapfile -t ZIPS < <(cd "$DIST" && find . -maxdepth 1 -name '*.zip' -printf '%f\n' | LC_ALL=C sort)
((${#ZIPS[@]})) || die "no function zips in $DIST"
for z in "${ZIPS[@]}"; do
  unzip_bootstrap "$DIST/$z" "$WORK/${z%.zip}" || die "$z is not a deployable zip"
  say "$z: bootstrap ($(file -b "$WORK/${z%.zip}/bootstrap" | cut -d, -f1-2))"
done

use_local_stack
say "the arm64 bootstraps run as: $RUNNER <bootstrap>"

run_logged() {
  local log="$1"
  shift
  set +e
  "$@" 2>&1 | tee "$log"
  local rc="${PIPESTATUS[0]}"
  set -e
  return "$rc"
}

for z in "${ZIPS[@]}"; do
  binary="${z%.zip}"
  bootstrap="$WORK/$binary/bootstrap"
  t="$(now)"
  case "$binary" in
    exclusion-handler)
      step "$z: the handler excludes workers end to end (under qemu)"
      run_logged "$WORK/handler.log" env EXCLUSION_HANDLER_BOOTSTRAP="$bootstrap" BOOTSTRAP_RUNNER="$RUNNER" \
        cargo test "${LOCKED[@]}" --workspace --test process -- --nocapture \
        a_cold_start_excludes_a_worker \
        the_binary_excludes_the_workers_of_submissions_from_the_queue \
        the_runtime_api_carries_responses_and_handler_errors \
        a_bad_configuration_fails_start_up_naming_the_variable ||
        die "the handler's bootstrap from $z failed its tests (above)"
      INIT="$(grep -o 'init duration: [0-9]* ms' "$WORK/handler.log" | head -1 || true)"
      [[ -n "$INIT" ]] && say "arm64 handler under qemu: $INIT (spawn to first poll; an indication only)"
      ;;
    exclusion-check)
      step "$z: the check answers Function URL requests (under qemu)"
      run_logged "$WORK/check.log" env EXCLUSION_CHECK_BOOTSTRAP="$bootstrap" BOOTSTRAP_RUNNER="$RUNNER" \
        cargo test "${LOCKED[@]}" --workspace --test check -- contract:: ||
        die "the check's bootstrap from $z failed its tests (above)"
      ;;
    exclusion-watch)
      step "$z: the watch subscribes and backfills (under qemu)"
      run_logged "$WORK/watch.log" env EXCLUSION_WATCH_BOOTSTRAP="$bootstrap" BOOTSTRAP_RUNNER="$RUNNER" \
        cargo test "${LOCKED[@]}" --workspace --test process -- --nocapture \
        a_scheduled_event_and_a_hand_invocation_run_the_same \
        without_a_queue_it_does_not_start ||
        die "the watch's bootstrap from $z failed its tests (above)"
      ;;
    *)
      step "$z: answers an invocation with {} (under qemu)"
      lid="$("$PY" scripts/release-template.py functions template.yaml | awk -v b="$binary" '$2 == b { print $1 }')"
      [[ -n "$lid" ]] || die "$z: no function of template.yaml builds $binary"
      cargo build "${LOCKED[@]}" --workspace --example invoke_bootstrap
      run_logged "$WORK/$binary.log" env BOOTSTRAP_RUNNER="$RUNNER" \
        "$REPO_ROOT/target/debug/examples/invoke_bootstrap" "$lid" "$bootstrap" '{}' ||
        die "the bootstrap from $z did not answer {} (above)"
      ;;
  esac
  timed "$z under qemu" "$t"
done

# --- 4. The CLI archives ----------------------------------------------------------------------
mapfile -t TARS < <(cd "$DIST" && find . -maxdepth 1 -name 'mturk-exclusion-*.tar.gz' -printf '%f\n' | LC_ALL=C sort)
((${#TARS[@]})) || die "no CLI archives in $DIST"
for a in "${TARS[@]}"; do
  name="${a%.tar.gz}"
  target="${name#mturk-exclusion-*-}"
  step "$a ($target)"
  t="$(now)"
  entries="$(tar -tzf "$DIST/$a" | LC_ALL=C sort | tr '\n' ' ')"
  exe=mturk-exclusion
  [[ "$target" == *windows* ]] && exe=mturk-exclusion.exe
  [[ "$entries" == "$name/ $name/$exe " ]] || die "$a holds: $entries (want $name/$exe)"
  tar -xzf "$DIST/$a" -C "$WORK"
  bin="$WORK/$name/$exe"
  [[ -x "$bin" ]] || die "$a: $exe is not executable"
  desc="$(file -b "$bin")"
  say "file: $desc"
  case "$target" in
    *-linux-musl)
      [[ "$desc" == *"statically linked"* || "$desc" == *"static-pie linked"* ]] ||
        die "$a: $exe is not static: $desc"
      ;;
  esac
  home="$WORK/home-$target"
  mkdir -p "$home"
  case "$target" in
    x86_64-unknown-linux-musl)
      ldd_out="$(ldd "$bin" 2>&1 || true)"
      [[ "$ldd_out" == *"not a dynamic executable"* || "$ldd_out" == *"statically linked"* ]] ||
        die "ldd sees libraries in $bin: $ldd_out"
      say "ldd: $ldd_out"
      v="$(cd "$home" && env -i PATH=/usr/bin:/bin HOME="$home" "$bin" --version)"
      say "--version: $v"
      commit="$(sed -n 's/.*(\([0-9a-f]\{12\}\))$/\1/p' <<<"$v")"
      [[ -n "$commit" ]] || die "--version names no commit: $v"
      # exclude + status against the local stack, bare environment, empty directory.
      MTURK_EXCLUSION_DIST_CLI="$bin" MTURK_EXCLUSION_DIST_COMMIT="$commit" \
        cargo test "${LOCKED[@]}" --workspace --test cli -- --exact \
        dist::the_released_cli_runs_in_a_bare_environment ||
        die "the CLI from $a failed against the local stack (above)"
      ;;
    aarch64-unknown-linux-musl)
      v="$(cd "$home" && env -i PATH=/usr/bin:/bin HOME="$home" qemu-aarch64 "$bin" --version)"
      say "--version (qemu-aarch64): $v"
      [[ "$v" =~ ^mturk-exclusion\ [0-9.]+\ \([0-9a-f]{12}\)$ ]] || die "unexpected --version: $v"
      ;;
    *)
      warn "$a: no runner for $target here; checked its contents only"
      ;;
  esac
  timed "$a" "$t"
done

rm -rf "$WORK"
say "timings:"
for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
say "dist checks passed in $(elapsed "$T0")"
