#!/usr/bin/env bash
# The one test command of the Stratus workspace (CI runs it through .ci/run).
#
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo test --workspace (PostgreSQL tests start their own server: Debian's postgresql
#      package is installed first when no initdb/pg_ctl is found and STRATUS_TEST_PG_URL is unset)
#   4. cargo build -p stratus, then the Python official-client suite (tests/python) against
#      the built binary, in a venv at .venv (requirements reinstalled only when
#      tests/python/requirements.txt changes)
#   5. the Node official-client suite (tests/node: `npm ci` from the lockfile when it changed;
#      Node.js and npm from apt when missing), with the web dashboard check in headless Chromium
#      (Debian's chromium from apt when missing)
#   6. the compatibility table: checklist scenarios x the five client/transport pairs
#      (tests/compat/README.md), from the results the Rust, Python and Node drivers wrote
#   7. a summary; the exit code is non-zero when any step failed (the first failure stops the run)
#
# Environment:
#   STRATUS_TEST_SKIP_LINT=1   skip steps 1-2 (quick local runs)
#   PYTHON=python3             interpreter used to create the venv
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
STAMP="$VENV/.stratus-requirements.sha256"
PYTHON="${PYTHON:-python3}"

# A CI checkout is built once, so incremental caches would only cost disk there.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

TARGET="$ROOT/target" # set from cargo below, before the first build
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/stratus-test.XXXXXX")"
T0=$SECONDS
SUMMARY=()
CURRENT=""
RUST_PASSED=0
RUST_FAILED=0
PY_PASSED=0
PY_FAILED=0
NODE_PASSED=0
NODE_FAILED=0

# Every checklist driver writes its pair's results here (tests/compat/README.md).
export STRATUS_COMPAT_RESULTS="$LOGDIR/compat"
mkdir -p "$STRATUS_COMPAT_RESULTS"

finish() {
    local rc=$?
    trap - EXIT
    echo
    echo "==================== scripts/test.sh summary ===================="
    local line
    for line in "${SUMMARY[@]+"${SUMMARY[@]}"}"; do
        echo "  $line"
    done
    if [[ $rc -ne 0 && -n "$CURRENT" ]]; then
        echo "  FAIL  $CURRENT"
    fi
    echo "  rust tests: $RUST_PASSED passed, $RUST_FAILED failed; python tests: $PY_PASSED passed, $PY_FAILED failed; node checks: $NODE_PASSED passed, $NODE_FAILED failed"
    echo "  wall time: $((SECONDS - T0))s"
    echo "  disk: $(du -sh "$TARGET" 2>/dev/null | cut -f1) in $TARGET, $(($(free_kb "$TARGET") / 1024)) MB free"
    if [[ $rc -eq 0 ]]; then
        echo "result: all steps passed"
    else
        echo "result: FAILED (exit $rc)"
    fi
    echo "total: $((RUST_PASSED + PY_PASSED + NODE_PASSED)) passed, $((RUST_FAILED + PY_FAILED + NODE_FAILED)) failed"
    rm -rf "$LOGDIR"
    exit "$rc"
}
trap finish EXIT

# run_step NAME CMD...: runs CMD; a failure ends the script (set -e) and the summary names it.
run_step() {
    local name="$1"
    shift
    CURRENT="$name"
    local t=$SECONDS
    echo
    echo "==================== $name ===================="
    "$@"
    SUMMARY+=("ok    $name ($((SECONDS - t))s)")
    CURRENT=""
}

skip_step() {
    SUMMARY+=("skip  $1 (STRATUS_TEST_SKIP_LINT=1)")
}

# Sums "N passed" / "N failed" over cargo's "test result:" lines in $1.
count_cargo() {
    local log="$1" p f
    p=$({ grep -E '^test result: ' "$log" || true; } | { grep -oE '[0-9]+ passed' || true; } | awk '{s+=$1} END {print s+0}')
    f=$({ grep -E '^test result: ' "$log" || true; } | { grep -oE '[0-9]+ failed' || true; } | awk '{s+=$1} END {print s+0}')
    RUST_PASSED=$p
    RUST_FAILED=$f
}

cargo_test() {
    local log="$LOGDIR/cargo-test.log"
    local rc=0
    cargo test --workspace 2>&1 | tee "$log" || rc=$?
    count_cargo "$log"
    return "$rc"
}

# The directory cargo builds into (honours CARGO_TARGET_DIR and .cargo/config).
target_dir() {
    cargo metadata --no-deps --format-version 1 |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Free space in KB on the filesystem that holds $1 (or its nearest existing parent).
free_kb() {
    local d="$1"
    while [[ ! -e "$d" ]]; do d="$(dirname "$d")"; done
    df -Pk "$d" | awk 'NR == 2 { print $4 }'
}

build_binary() {
    cargo build -p stratus
    STRATUS_BIN="$TARGET/debug/stratus"
    if [[ ! -x "$STRATUS_BIN" ]]; then
        echo "error: cargo build succeeded but $STRATUS_BIN is missing" >&2
        return 1
    fi
    export STRATUS_BIN
    echo "binary: $STRATUS_BIN"
}

make_venv() {
    rm -rf "$VENV"
    if "$PYTHON" -m venv "$VENV"; then
        return 0
    fi
    # Debian's system python3 ships venv/ensurepip separately (python3-venv).
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "python3 -m venv failed; installing Debian's python3-venv" >&2
        local ver
        ver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "python${ver}-venv" ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        "$PYTHON" -m venv "$VENV"
    else
        echo "error: '$PYTHON -m venv' failed; install python3-venv" >&2
        return 1
    fi
}

python_env() {
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "creating $VENV"
        make_venv
    else
        echo "reusing $VENV"
    fi
    local want have=""
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" != "$have" ]]; then
        echo "installing $REQUIREMENTS"
        rm -f "$STAMP"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
        echo "$want" >"$STAMP"
    else
        echo "requirements unchanged since the last install (stamp $STAMP)"
    fi
}

python_suite() {
    local log="$LOGDIR/pytest.log"
    local rc=0
    "$VENV/bin/python" -m pytest tests/python -q 2>&1 | tee "$log" || rc=$?
    local last
    last="$(grep -E '(passed|failed|error|no tests ran)' "$log" | tail -n 1 || true)"
    PY_PASSED=$(grep -oE '[0-9]+ passed' <<<"$last" | awk '{print $1}' || true)
    PY_FAILED=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$last" | awk '{s+=$1} END {print s+0}' || true)
    PY_PASSED=${PY_PASSED:-0}
    PY_FAILED=${PY_FAILED:-0}
    if [[ $rc -eq 5 ]]; then
        echo "error: pytest collected no tests (exit 5)" >&2
        return 1
    fi
    return "$rc"
}

postgres_env() {
    if [[ -n "${STRATUS_TEST_PG_URL:-}" ]]; then
        echo "PostgreSQL tests use STRATUS_TEST_PG_URL"
        return 0
    fi
    local bin
    for bin in $(command -v initdb 2>/dev/null) /usr/lib/postgresql/*/bin/initdb; do
        if [[ -x "$bin" && -x "$(dirname "$bin")/pg_ctl" ]]; then
            echo "PostgreSQL server binaries: $(dirname "$(readlink -f "$bin")")"
            return 0
        fi
    done
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "no PostgreSQL server binaries; installing Debian's postgresql"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    else
        echo "error: the PostgreSQL tests need initdb and pg_ctl (Debian: postgresql) or STRATUS_TEST_PG_URL" >&2
        return 1
    fi
}

node_env() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        echo "node $(node --version), npm $(npm --version)"
    elif command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "node or npm missing; installing Debian's nodejs and npm"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
    else
        echo "error: Node.js >= 20 and npm are needed for tests/node (install them)" >&2
        return 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [[ "$major" -lt 20 ]]; then
        echo "error: Node.js $(node --version) is too old for tests/node (needs >= 20, see tests/node/package.json)" >&2
        return 1
    fi
}

# The dashboard check (tests/node/dashboard.mjs) drives Debian's Chromium headless through
# playwright-core (which never downloads a browser of its own).
chromium_env() {
    local bin
    for bin in chromium chromium-browser; do
        if command -v "$bin" >/dev/null 2>&1; then
            echo "chromium: $(command -v "$bin") ($("$bin" --version 2>/dev/null || echo '?'))"
            return 0
        fi
    done
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "no chromium; installing Debian's chromium"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "error: the dashboard check of tests/node needs Chromium (Debian: chromium)" >&2
        return 1
    fi
}

node_suite() {
    local log="$LOGDIR/node.log"
    local rc=0
    bash tests/node/run.sh 2>&1 | tee "$log" || rc=$?
    # run.sh ends with "node checks: N passed, M failed".
    local last
    last="$(grep -E '^node checks: ' "$log" | tail -n 1 || true)"
    NODE_PASSED=$(grep -oE '[0-9]+ passed' <<<"$last" | awk '{print $1}' || true)
    NODE_FAILED=$(grep -oE '[0-9]+ failed' <<<"$last" | awk '{print $1}' || true)
    NODE_PASSED=${NODE_PASSED:-0}
    NODE_FAILED=${NODE_FAILED:-0}
    if [[ $rc -eq 0 && -z "$last" ]]; then
        echo "error: tests/node/run.sh printed no 'node checks:' line" >&2
        return 1
    fi
    return "$rc"
}

compat_table() {
    "$PYTHON" scripts/compat_summary.py "$STRATUS_COMPAT_RESULTS"
}

TARGET="$(target_dir)"
# The build needs a few GB (target/ is about 2.5 GB after a full run); say so up front
# rather than failing later with a linker crash.
if [[ "$(free_kb "$TARGET")" -lt $((5 * 1024 * 1024)) ]]; then
    echo "warning: only $(($(free_kb "$TARGET") / 1024)) MB free for $TARGET; the build may run out of disk" >&2
fi

if [[ "${STRATUS_TEST_SKIP_LINT:-0}" == "1" ]]; then
    skip_step "cargo fmt --check"
    skip_step "cargo clippy"
else
    run_step "cargo fmt --check" cargo fmt --all -- --check
    run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
run_step "postgresql (server binaries)" postgres_env
run_step "cargo test --workspace" cargo_test
run_step "cargo build -p stratus" build_binary
run_step "python venv (.venv)" python_env
run_step "pytest tests/python" python_suite
run_step "node (tests/node)" node_env
run_step "chromium (dashboard check)" chromium_env
run_step "node tests/node" node_suite
run_step "compatibility table (5 pairs)" compat_table
