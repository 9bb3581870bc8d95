#!/usr/bin/env bash
# Fuzzes one of the parsers that read what anyone on the network sends, with afl++ through SharpFuzz.
#   bash ci/fuzz.sh frames 10      # the frame parser, ten minutes
#   bash ci/fuzz.sh upgrade 10     # the WebSocket upgrade parser
# Installs afl++ (Debian) and the SharpFuzz instrumenter if they are missing, builds the target in Release,
# instruments the assemblies under test, and runs afl-fuzz for the given minutes from fuzz/seeds/<target>.
# Every crash found is copied to fuzz/cases/<target>/, where the test suite replays it (FuzzCaseTests):
# commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-frames}
minutes=${2:-5}
case "$target" in frames|upgrade) ;; *) echo "usage: ci/fuzz.sh frames|upgrade [MINUTES]" >&2; exit 2 ;; esac

if ! command -v afl-fuzz >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends afl++ >/dev/null
fi

tools=artifacts/tools
[ -x "$tools/sharpfuzz" ] || dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tools" >/dev/null

out=artifacts/fuzz/$target
rm -rf "$out"
dotnet publish fuzz/Switchboard.Fuzz -c Release -o "$out/bin" --nologo -v quiet
for dll in Switchboard.Protocol.dll Switchboard.Server.dll; do
  "$tools/sharpfuzz" "$out/bin/$dll" >/dev/null
done

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_SKIP_BIN_CHECK=1
echo "fuzzing '$target' for $minutes minute(s); findings in $out/findings"
afl-fuzz -i "fuzz/seeds/$target" -o "$out/findings" -t 10000 -m none -V $((minutes * 60)) -- \
  dotnet "$out/bin/Switchboard.Fuzz.dll" "$target" || true

found=0
for crash in "$out"/findings/default/crashes/id*; do
  [ -e "$crash" ] || continue
  name=$(sha1sum "$crash" | cut -c1-12)
  cp "$crash" "fuzz/cases/$target/crash-$name"
  found=$((found + 1))
done
execs=$(awk -F: '/execs_done/ {gsub(/ /, "", $2); print $2}' "$out/findings/default/fuzzer_stats" 2>/dev/null || echo "?")
echo "$execs inputs tried, $found crash(es) copied to fuzz/cases/$target/"
