#!/usr/bin/env bash
# Prepares this checkout: Debian packages (when root and missing), a virtual environment in .venv
# and the project installed into it with the extras asked for (default: dev).
# Idempotent: a stamp keyed on pyproject.toml and the extras skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [[ ",$extras," == *",dev,"* ]]; then
  # The dashboard test drives Debian's Chromium through chromedriver (selenium).
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages first: ${need_apt[*]}" >&2
    exit 1
  fi
fi
# The Debian mosquitto package starts a system broker on 1883; the project never needs it
# (tests and the demo start their own on free ports), so it is left as the system has it.

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.ami-edge-$(sha256sum pyproject.toml | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing ami-edge[$extras] into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
