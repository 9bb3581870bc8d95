#!/usr/bin/env bash
# Runs every test and ends with one line: "N passed, N failed, N skipped".
# The embedded tests need nothing but the .NET SDK. The cluster tests run on real PostgreSQL (two shards), Redis and
# NATS: scripts/services.sh installs them when missing (Debian packages) and starts them on free loopback ports for
# this run; they are stopped, by PID, when it ends. The browser tests drive Debian's headless Chromium through npm
# playwright-core: scripts/browser.sh installs both when missing.
set -uo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp -d /tmp/switchboard-tests.XXXXXX)
services=$(mktemp -d /tmp/switchboard-services.XXXXXX)
cleanup() {
  bash scripts/services.sh down "$services" >/dev/null 2>&1 || true
  rm -rf "$results" "$services"
}
trap cleanup EXIT
if ! bash scripts/services.sh up "$services"; then
  echo "could not start the services the cluster tests need" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if ! bash scripts/browser.sh install; then
  echo "could not install what the browser tests need (chromium, playwright-core)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
# shellcheck disable=SC1091
source "$services/services.env"
dotnet test Switchboard.slnx --logger trx --results-directory "$results" "$@"
rc=$?
bash ci/trx-summary.sh "$results" || rc=1
dotnet build-server shutdown >/dev/null 2>&1 || true
exit $rc
