#!/usr/bin/env bash
# Install what the tests drive zhiku with besides cargo: the `openai` Python client library
# (PyPI), used by tests/openai_client.py to check the OpenAI-compatible API with a real
# client. It goes into a venv under the cache, never into the system python:
#
#   ${ZHIKU_CACHE_DIR:-~/.cache/zhiku}/test-venv
#
# tests/openai_api.rs looks for it there (or takes ZHIKU_TEST_PYTHON, or a python3 that has
# `openai` already). Idempotent: a venv that already has the pinned version is left alone.
# pip honours PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, proxies etc. as usual.
# Environment: PYTHON (default python3), ZHIKU_CACHE_DIR.
set -euo pipefail

OPENAI_VERSION="3.54.0"

die() { echo "install-test-tools: $*" >&2; exit 1; }

PY="${PYTHON:-python3}"
CACHE="${ZHIKU_CACHE_DIR:-$HOME/.cache/zhiku}"
VENV="$CACHE/test-venv"

have_pinned() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "
import sys, openai
sys.exit(0 if openai.__version__ == '$OPENAI_VERSION' else 1)" >/dev/null 2>&1
}

# The browser test's playwright-core (pinned by tests/browser/package-lock.json), when npm
# is there; chromium itself comes from apt (see .ci/run).
here=$(cd "$(dirname "$0")/.." && pwd)
if command -v npm >/dev/null && [[ ! -d "$here/tests/browser/node_modules/playwright-core" ]]; then
    (cd "$here/tests/browser" && npm ci --no-audit --no-fund --silent) \
        || die "npm ci in tests/browser failed (npm registry reachable?)"
fi

if have_pinned; then
    echo "install-test-tools: openai $OPENAI_VERSION already in $VENV"
    exit 0
fi
command -v "$PY" >/dev/null || die "$PY not found; install python3 or set PYTHON"
mkdir -p "$CACHE"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV" || die "cannot create a venv in $VENV (Debian: apt-get install python3-venv)"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" \
    || die "pip install openai==$OPENAI_VERSION failed (network, index or proxy settings? PIP_INDEX_URL is honoured)"
have_pinned || die "openai $OPENAI_VERSION is not importable from $VENV/bin/python after installing it"
echo "install-test-tools: openai $OPENAI_VERSION installed in $VENV"
