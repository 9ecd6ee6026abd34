#!/usr/bin/env bash
# Installs what the console's browser tests need: Debian's Chromium (when /usr/bin/chromium is
# missing) and playwright-core from this directory's package-lock.json. No browser is downloaded
# by Playwright itself: the tests drive /usr/bin/chromium.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "ui/tests/setup.sh: /usr/bin/chromium is missing; install it: apt-get install -y chromium" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
cd "$here"
npm ci --no-audit --no-fund --silent
