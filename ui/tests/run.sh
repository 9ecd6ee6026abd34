#!/usr/bin/env bash
# The console's browser tests against a real broker (target/debug/obelisk, or $OBELISK_BIN):
# installs what they need (setup.sh), then runs them; screenshots land in target/ui-screenshots/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bash "$here/setup.sh"
# The console's files are embedded in the binary: build it (a no-op when it is up to date).
if [[ -z "${OBELISK_BIN:-}" ]]; then
  (cd "$root" && cargo build --bin obelisk --locked)
fi
cd "$here"
# Bounded as a whole too: each step has its own limit, this catches anything else.
timeout --kill-after=10 900 node --test --test-concurrency=1 console.test.js
