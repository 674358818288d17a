#!/usr/bin/env bash
# Checks the deployment offline: cfn-lint, sam validate (with and without
# --lint), sam build (the arm64 release builds of exclusion-handler,
# exclusion-check and exclusion-watch through cargo-lambda and zig), and
# that each result is an aarch64 ELF executable.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SAM_BUILD_TIMEOUT="${SAM_BUILD_TIMEOUT:-2400}"

usage() {
  cat <<EOF
Usage: scripts/check-template.sh [--no-build] [--help]

  1. scripts/setup.sh --deploy-tools (cfn-lint, SAM CLI, cargo-lambda + zig,
     rustup target aarch64-unknown-linux-gnu)
  2. cfn-lint template.yaml
  3. sam validate, sam validate --lint   (offline; dummy credentials)
  4. sam build  -> .aws-sam/build/ExclusionFunction/bootstrap (exclusion-handler)
     .aws-sam/build/ExclusionCheckFunction/bootstrap (exclusion-check) and
     .aws-sam/build/ExclusionWatchFunction/bootstrap (exclusion-watch) (every
     function of template.yaml), each checked to be an ARM aarch64 ELF
     executable (and, if dist/ holds its zip, to be that zip's bootstrap byte
     for byte). A clean release build
     (fat LTO) takes 5+ minutes on 2 cores (the second function reuses the
     first one's dependencies in the workspace's shared target/); bounded by
     SAM_BUILD_TIMEOUT (default 2400 s).

--no-build   stop after step 3
EOF
}

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

T0="$(now)"
bash "$REPO_ROOT/scripts/setup.sh" --deploy-tools
# sam runs `cargo lambda`, which finds zig through the venv's python (ziglang).
export PATH="$VENV_DIR/bin:$PATH"

step() { say "== $* =="; }

step "cfn-lint template.yaml"
t="$(now)"
cfn-lint --version
cfn-lint -- template.yaml || die "cfn-lint found problems in template.yaml"
say "cfn-lint: clean ($(elapsed "$t"))"

# Neither needs AWS: SAM CLI 1.170 translates the template locally (no IAM
# call for the managed policies) and --lint runs cfn-lint.
step "sam validate"
t="$(now)"
sam --version
timeout 300 sam validate --template-file template.yaml --region us-east-1 ||
  die "sam validate failed"
timeout 300 sam validate --lint --template-file template.yaml --region us-east-1 ||
  die "sam validate --lint failed"
say "sam validate: clean ($(elapsed "$t"))"

if ((BUILD == 0)); then
  say "skipping sam build (--no-build); all checks passed in $(elapsed "$T0")"
  exit 0
fi

# Logical id -> binary, as template.yaml's BuildProperties name them (every
# function with BuildMethod rust-cargolambda).
mapfile -t FUNCTIONS < <("$VENV_DIR/bin/python" "$REPO_ROOT/scripts/release-template.py" functions template.yaml |
  awk '{ print $1 ":" $2 }')

step "sam build (cargo lambda build --release --arm64, one --bin per function)"
t="$(now)"
cargo lambda --version
# No --beta-features: SAM CLI 1.170 has rust-cargolambda as a regular build
# method (older versions needed the flag). --use-container would need Docker.
for f in "${FUNCTIONS[@]}"; do rm -f ".aws-sam/build/${f%%:*}/bootstrap"; done
set +e
timeout "$SAM_BUILD_TIMEOUT" sam build --build-in-source --template-file template.yaml
rc=$?
set -e
if ((rc == 124)); then
  die "sam build did not finish within ${SAM_BUILD_TIMEOUT}s"
elif ((rc != 0)); then
  die "sam build failed (exit $rc): see the cargo/cargo-lambda output above"
fi
say "sam build: done ($(elapsed "$t"))"

# check_aarch64 PATH LABEL: an executable 64-bit little-endian aarch64 ELF.
check_aarch64() {
  local bootstrap="$1" label="$2" desc size
  step "checking $bootstrap ($label)"
  [[ -f "$bootstrap" ]] || die "sam build produced no $bootstrap"
  [[ -x "$bootstrap" ]] || die "$bootstrap is not executable"
  # ELF header: magic 7f 45 4c 46, class 02 (64-bit), data 01 (little-endian),
  # e_machine (bytes 18-19, little-endian) b7 00 = EM_AARCH64.
  local -a hdr
  read -r -a hdr <<<"$(od -An -tx1 -N20 "$bootstrap" | tr -s ' \n' ' ')"
  if [[ "${hdr[*]:0:6}" != "7f 45 4c 46 02 01" || "${hdr[18]}${hdr[19]}" != "b700" ]]; then
    die "$bootstrap is not a 64-bit little-endian aarch64 ELF (header: ${hdr[*]})"
  fi
  if command -v file >/dev/null; then
    desc="$(file -b "$bootstrap")"
    say "file: $desc"
    [[ "$desc" == *"ARM aarch64"* ]] || die "file(1) does not call $bootstrap an ARM aarch64 binary"
  fi
  size="$(stat -c %s "$bootstrap")"
  say "$label: aarch64 ELF, $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
}

for f in "${FUNCTIONS[@]}"; do
  check_aarch64 ".aws-sam/build/${f%%:*}/bootstrap" "${f#*:}"
done

# After scripts/release.sh (as in CI), sam build must have compiled nothing:
# the bootstrap it copied is byte for byte the one in dist/<binary>.zip.
for f in "${FUNCTIONS[@]}"; do
  zip="dist/${f#*:}.zip"
  [[ -f "$zip" ]] || continue
  built="$(sha256sum <".aws-sam/build/${f%%:*}/bootstrap" | cut -d' ' -f1)"
  zipped="$("$VENV_DIR/bin/python" -c 'import hashlib, sys, zipfile
print(hashlib.sha256(zipfile.ZipFile(sys.argv[1]).read("bootstrap")).hexdigest())' "$zip")"
  [[ "$built" == "$zipped" ]] ||
    die "sam build's ${f#*:} differs from the bootstrap in $zip: release.sh and sam build disagree"
  say "${f#*:}: sam build's bootstrap is the one in $zip"
done
say "all template checks passed in $(elapsed "$T0")"
