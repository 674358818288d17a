#!/usr/bin/env bash
# Builds dist/: what a lab deploys and runs without a Rust toolchain. See
# docs/release-artifacts.md for what each file is and how it is tested
# (scripts/check-dist.sh).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The CLI's static builds (cargo-zigbuild; zig links against musl).
CLI_TARGETS_DEFAULT="${RELEASE_RUST_TARGETS[*]}"

usage() {
  cat <<EOF
Usage: scripts/release.sh [--allow-dirty] [--out DIR] VERSION

Builds, from a clean checkout of the current commit, into DIR (default dist/,
emptied first):

  <binary>.zip      one per function of template.yaml built with BuildMethod
                    rust-cargolambda (read from the template): the arm64
                    \`bootstrap\`, built as \`sam build\` builds it (cargo lambda
                    build --release --arm64 --bin <binary>, in the function's
                    CodeUri, into the workspace's target/), so a later
                    \`sam build\` finds it fresh and compiles nothing
  template.yaml     the packaged template: CodeUri -> the zips, no BuildMethod,
                    plus AWS::ServerlessRepo::Application metadata (and
                    README.md, which it names as ReadmeUrl)
  mturk-exclusion-VERSION-<target>.tar.gz
                    the static CLI (profile dist-cli), for each of
                    CLI_TARGETS (default: $CLI_TARGETS_DEFAULT)
  SHA256SUMS        sha256sum of every other file (check: sha256sum -c SHA256SUMS)

Reproducible: every file's time is SOURCE_DATE_EPOCH (default: the commit's
time), archives are sorted, owner-less and without gzip/zip timestamps.

VERSION must equal the workspace's version (Cargo.toml): --version prints it.
--allow-dirty     build even with uncommitted changes (the archives then do not
                  match the commit they name)
--out DIR         write to DIR instead of dist/
Environment: CLI_TARGETS (space-separated), SOURCE_CODE_URL (adds SourceCodeUrl
and HomePageUrl to the metadata), SOURCE_DATE_EPOCH.
EOF
}

ALLOW_DIRTY=0
OUT="$REPO_ROOT/dist"
VERSION=""
while (($#)); do
  case "$1" in
    --allow-dirty) ALLOW_DIRTY=1 ;;
    --out) shift; OUT="$(realpath -m "${1:?--out needs a directory}")" ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$VERSION" ]] || die "one VERSION only"; VERSION="$1" ;;
  esac
  shift
done
[[ -n "$VERSION" ]] || { usage >&2; die "VERSION is missing"; }
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION must be MAJOR.MINOR.PATCH (got $VERSION)"
CARGO_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' crates/cli/Cargo.toml | head -1)"
[[ "$VERSION" == "$CARGO_VERSION" ]] ||
  die "VERSION $VERSION is not the workspace's version $CARGO_VERSION (crates/cli/Cargo.toml): bump the Cargo.toml files first"
[[ "$OUT" != "$REPO_ROOT" && "$OUT" != / ]] || die "--out must not be the repository or /"

T0="$(now)"
TIMINGS=()
step() { say "== $* =="; }
timed() { TIMINGS+=("$(printf '%-44s %s' "$1" "$(elapsed "$2")")"); }

# --- Source: a clean tree, its commit and time -----------------------------------
command -v git >/dev/null || die "git not found"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "not a git checkout: release.sh names the commit it builds"
DIRTY="$(git status --porcelain --untracked-files=normal)"
if [[ -n "$DIRTY" ]]; then
  if ((ALLOW_DIRTY)); then
    warn "building from a dirty tree (--allow-dirty): the artifacts do not match commit $(git rev-parse --short=12 HEAD)"
  else
    printf '%s\n' "$DIRTY" | head -20 >&2
    die "the tree has uncommitted changes (above): commit or stash them, or pass --allow-dirty"
  fi
fi
COMMIT="$(git rev-parse HEAD)"
SHORT="${COMMIT:0:12}"
# Not exported: the cc crate reruns a build script when SOURCE_DATE_EPOCH
# changes (C compilers read it), so exporting it to cargo would make ring
# build anew here and again in a later `sam build`. Only the archiving
# steps get it, and only the CLI's build gets the commit.
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"
unset SOURCE_DATE_EPOCH MTURK_EXCLUSION_COMMIT
[[ "$EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since the epoch (got $EPOCH)"
read -r -a CLI_TARGETS <<<"${CLI_TARGETS:-$CLI_TARGETS_DEFAULT}"
say "release $VERSION from commit $SHORT (SOURCE_DATE_EPOCH=$EPOCH) into ${OUT#"$REPO_ROOT"/}"

t="$(now)"
bash "$REPO_ROOT/scripts/setup.sh" --release-tools
# cargo lambda and cargo zigbuild find zig through the venv's python (ziglang).
export PATH="$VENV_DIR/bin:$PATH"
timed "setup.sh --release-tools" "$t"
PY="$VENV_DIR/bin/python"

rm -rf "$OUT"
mkdir -p "$OUT"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/mturk-exclusion-release.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

# is_elf PATH MACHINE: a 64-bit little-endian ELF for e_machine MACHINE
# (bytes 18-19 as hex, little-endian: b700 aarch64, 3e00 x86_64).
is_elf() {
  local -a hdr
  read -r -a hdr <<<"$(od -An -tx1 -N20 "$1" | tr -s ' \n' ' ')"
  [[ "${hdr[*]:0:6}" == "7f 45 4c 46 02 01" && "${hdr[18]}${hdr[19]}" == "$2" ]]
}
size_of() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- The functions: arm64 bootstraps, as sam build makes them ------------------
mapfile -t FUNCTIONS < <("$PY" scripts/release-template.py functions template.yaml)
say "functions in template.yaml: $(printf '%s; ' "${FUNCTIONS[@]}")"
cargo lambda --version
for f in "${FUNCTIONS[@]}"; do
  read -r lid binary code_uri <<<"$f"
  step "$lid: cargo lambda build --release --arm64 --bin $binary (in $code_uri)"
  t="$(now)"
  # Exactly what SAM's rust-cargolambda workflow runs (aws-lambda-builders,
  # rust_cargo/actions.py): the same command in the same directory with
  # CARGO_TARGET_DIR = the workspace's target directory. Same command, same
  # environment: cargo's fingerprints match, and `sam build` afterwards is
  # a no-op rebuild that copies this very file.
  (cd "$REPO_ROOT/$code_uri" &&
    CARGO_TARGET_DIR="$REPO_ROOT/target" cargo lambda build --release --arm64 --bin "$binary") ||
    die "cargo lambda build failed for $binary"
  bootstrap="$REPO_ROOT/target/lambda/$binary/bootstrap"
  [[ -x "$bootstrap" ]] || die "no executable $bootstrap after the build"
  is_elf "$bootstrap" b700 || die "$bootstrap is not a 64-bit aarch64 ELF"
  cp "$bootstrap" "$STAGE/bootstrap-$binary"
  touch -d "@$EPOCH" "$STAGE/bootstrap-$binary"
  SOURCE_DATE_EPOCH="$EPOCH" "$PY" scripts/release-archive.py zip "$OUT/$binary.zip" "bootstrap=$STAGE/bootstrap-$binary"
  say "$binary.zip: bootstrap $(mib "$(size_of "$bootstrap")"), zip $(mib "$(size_of "$OUT/$binary.zip")")"
  timed "$binary.zip (arm64 bootstrap)" "$t"
done

# --- The packaged template -------------------------------------------------------
step "template.yaml (packaged)"
t="$(now)"
"$PY" scripts/release-template.py package template.yaml "$OUT/template.yaml" \
  "$VERSION" "$SHORT" "${SOURCE_CODE_URL:-}"
cp README.md "$OUT/README.md"
"$PY" scripts/release-template.py check "$OUT/template.yaml" "$OUT"
timed "template.yaml + README.md" "$t"

# --- The CLI: static binaries --------------------------------------------------------
cargo-zigbuild --version
for target in "${CLI_TARGETS[@]}"; do
  step "CLI for $target: cargo zigbuild --profile dist-cli"
  t="$(now)"
  MTURK_EXCLUSION_COMMIT="$SHORT" cargo zigbuild "${LOCKED[@]}" --profile dist-cli --target "$target" \
    -p mturk-exclusion-cli --bin mturk-exclusion ||
    die "cargo zigbuild failed for $target"
  exe=mturk-exclusion
  [[ "$target" == *windows* ]] && exe=mturk-exclusion.exe
  bin="$REPO_ROOT/target/$target/dist-cli/$exe"
  [[ -f "$bin" ]] || die "no $bin after the build"
  name="mturk-exclusion-$VERSION-$target"
  mkdir -p "$STAGE/$name"
  cp "$bin" "$STAGE/$name/$exe"
  chmod 0755 "$STAGE/$name/$exe"
  chmod 0755 "$STAGE/$name"
  touch -d "@$EPOCH" "$STAGE/$name/$exe" "$STAGE/$name"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
    --format=gnu -C "$STAGE" -cf - "$name" | gzip -9 -n >"$OUT/$name.tar.gz"
  say "$name.tar.gz: binary $(mib "$(size_of "$bin")"), archive $(mib "$(size_of "$OUT/$name.tar.gz")")"
  timed "CLI $target" "$t"
done

# --- Checksums and times -------------------------------------------------------------
step "SHA256SUMS"
(cd "$OUT" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort |
  xargs sha256sum >SHA256SUMS)
find "$OUT" -type f -exec touch -d "@$EPOCH" {} +
(cd "$OUT" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS does not verify"

say "dist: ${OUT#"$REPO_ROOT"/}"
(cd "$OUT" && LC_ALL=C ls -l --time-style=+ | awk 'NR > 1 { printf "  %12s  %s\n", $5, $NF }') >&2
say "timings:"
for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
say "release $VERSION ($SHORT) built in $(elapsed "$T0")"
