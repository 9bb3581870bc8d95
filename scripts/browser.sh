#!/usr/bin/env bash
# What the browser tests need, installed when missing: Debian's Chromium (headless, no recommends) and the npm
# package playwright-core (it drives that Chromium; it downloads no browser).
#   bash scripts/browser.sh install
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  install)
    missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if ((${#missing[@]})); then
      [[ $EUID -eq 0 ]] || { echo "missing ${missing[*]}; run as root to install them" >&2; exit 1; }
      echo "installing ${missing[*]}" >&2
      apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update
      DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
    fi
    if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
      (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    fi
    ;;
  *)
    echo "usage: bash scripts/browser.sh install" >&2
    exit 2
    ;;
esac
