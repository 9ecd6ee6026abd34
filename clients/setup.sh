#!/usr/bin/env bash
# Installs what the client tests need, on a fresh Debian machine as on a developer's:
#   - python3 with venv, node and npm, from Debian's packages when they are missing (as root, or
#     through sudo);
#   - a virtual environment clients/.venv with the pinned Python packages (so the system Python,
#     which Debian marks externally managed, is left alone);
#   - the TypeScript client's npm lockfile (npm ci).
# Prints nothing but progress; clients/.venv/bin/python is the interpreter to use afterwards.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv"
  python3 -m venv "$venv"
fi
# Pins: must match clients/python/pyproject.toml [project.optional-dependencies] dev (the generated
# stubs embed the grpcio-tools and protobuf versions that produced them).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  grpcio==1.85.3 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
  protobuf==7.36.2 pytest==9.2.0

(cd "$here/typescript" && npm ci --no-audit --no-fund --loglevel=error)
