#!/usr/bin/env bash
# Node compatibility suite: the official @google-cloud/tasks client (gRPC and REST fallback)
# against a real `stratus serve`.
#
#   bash tests/node/run.sh
#
# Environment: STRATUS_BIN (server binary, default <repo>/target/debug/stratus),
# STRATUS_COMPAT_RESULTS (directory for node-grpc.json / node-rest.json; a temp dir when unset),
# VERBOSE=1 (more output).
# The last line is "node checks: N passed, M failed" (checklist scenarios of both pairs that
# passed or passed with a known client limitation, plus the two migration runs, plus the
# receivers.mjs checks of the proof-of-origin middleware, plus the auth.mjs checks of API tokens
# over gRPC and TLS, plus the dashboard.mjs checks of the web dashboard in headless Chromium).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# npm ci only when node_modules is missing or package-lock.json changed since the last install.
stamp=node_modules/.stratus-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "tests/node: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

tmp=""
if [[ -z "${STRATUS_COMPAT_RESULTS:-}" ]]; then
  tmp=$(mktemp -d)
  export STRATUS_COMPAT_RESULTS=$tmp
fi

status=0
node checklist.mjs || status=1
migration_ok=0
if node migration.mjs; then
  migration_ok=2
else
  status=1
fi
# receivers.mjs ends with "receiver checks: N passed, M failed"; no such line counts as 1 failed.
receivers_log=$(mktemp)
node receivers.mjs | tee "$receivers_log" || status=1
receivers_counts=$(sed -n 's/^receiver checks: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$receivers_log" | tail -n 1)
rm -f "$receivers_log"
read -r receivers_ok receivers_bad <<<"${receivers_counts:-0 1}"
# auth.mjs ends with "auth checks: N passed, M failed"; no such line counts as 1 failed.
auth_log=$(mktemp)
node auth.mjs 2>/dev/null | tee "$auth_log" || status=1
auth_counts=$(sed -n 's/^auth checks: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$auth_log" | tail -n 1)
rm -f "$auth_log"
read -r auth_ok auth_bad <<<"${auth_counts:-0 1}"
# dashboard.mjs (the web dashboard in headless Chromium; writes docs/img/dashboard-*.png) ends
# with "dashboard checks: N passed, M failed"; no such line counts as 1 failed.
dashboard_log=$(mktemp)
node dashboard.mjs | tee "$dashboard_log" || status=1
dashboard_counts=$(sed -n 's/^dashboard checks: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$dashboard_log" | tail -n 1)
rm -f "$dashboard_log"
read -r dashboard_ok dashboard_bad <<<"${dashboard_counts:-0 1}"

counts=$(node -e '
  const fs = require("fs"), path = require("path");
  let ok = 0, bad = 0;
  for (const pair of ["node-grpc", "node-rest"]) {
    const f = path.join(process.env.STRATUS_COMPAT_RESULTS, `${pair}.json`);
    if (!fs.existsSync(f)) { bad += 20; continue; }
    for (const r of Object.values(JSON.parse(fs.readFileSync(f, "utf8")).results)) {
      if (r.status === "pass" || r.status === "limitation") ok++;
      else if (r.status === "fail") bad++;
    }
  }
  console.log(`${ok} ${bad}`);
')
[[ -n "$tmp" ]] && rm -rf "$tmp"
read -r ok bad <<<"$counts"
echo "node checks: $((ok + migration_ok + receivers_ok + auth_ok + dashboard_ok)) passed, $((bad + 2 - migration_ok + receivers_bad + auth_bad + dashboard_bad)) failed"
exit "$status"
