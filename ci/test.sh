#!/usr/bin/env bash
# Runs every test and ends with one line: "N passed, N failed, N skipped".
# The embedded tests need nothing but the .NET SDK; services for cluster tests are started here when they exist.
set -uo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp -d /tmp/switchboard-tests.XXXXXX)
dotnet test Switchboard.slnx --logger trx --results-directory "$results" "$@"
rc=$?
bash ci/trx-summary.sh "$results" || rc=1
rm -rf "$results"
dotnet build-server shutdown >/dev/null 2>&1 || true
exit $rc
