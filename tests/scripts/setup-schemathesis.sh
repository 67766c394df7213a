#!/usr/bin/env bash
# Installs schemathesis (PyPI) for the generated API tests (tests/tests/schemathesis.rs)
# into a virtualenv of its own under .data/, with every package pinned by
# schemathesis-requirements.txt, and prints the variable that names its command.
# Idempotent: a venv made from the same requirements is reused.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REQUIREMENTS="$HERE/schemathesis-requirements.txt"
VENV="$ROOT/.data/schemathesis"
STAMP="$VENV/requirements.txt"
if ! cmp -s "$REQUIREMENTS" "$STAMP" || ! "$VENV/bin/st" --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  "${SOHBET_PYTHON:-python3}" -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  cp "$REQUIREMENTS" "$STAMP"
fi
echo "export SOHBET_SCHEMATHESIS=$VENV/bin/st"
