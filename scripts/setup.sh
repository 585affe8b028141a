#!/usr/bin/env bash
# Create .venv and install edgevit-deploy with every extra, torch pinned by constraints.txt.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.edgevit-deploy-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,lint]"
  # the `ios` extra apart (pyproject.toml says why): pip warns about xdsl's typing-extensions pin and goes on
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[ios]"
  echo "$want" > "$stamp"
fi
# Debian's adb client: the device-benchmark tests drive the stand-in adbd with it as well.
if ! command -v adb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb) >/dev/null 2>&1 \
    || echo "warning: could not install Debian's adb; tests that drive the real adb client will fail" >&2
fi
# Debian's JDK and JUnit 4: `make test` compiles android_app/bench-core with javac and runs its JUnit tests.
if { ! command -v javac >/dev/null 2>&1 || [ ! -f /usr/share/java/junit4.jar ]; } && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless junit4) >/dev/null 2>&1 \
    || echo "warning: could not install default-jdk-headless / junit4; the bench-core tests will fail" >&2
fi
