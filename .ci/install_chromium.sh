#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian/Ubuntu packages (never a downloaded
# browser build) for the real-browser tests (tests/test_web_browser.py). Idempotent: does
# nothing when both are already there. Outside CI a missing root/apt only prints why (the
# browser tests then skip with that reason); under CI=true any failure exits non-zero.
set -uo pipefail

have_all() {
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
        && command -v chromedriver >/dev/null 2>&1
}

fail() {
    echo "install_chromium: $1" >&2
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    echo "install_chromium: the browser tests will skip" >&2
    exit 0
}

if have_all; then
    echo "install_chromium: chromium and chromedriver already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    fail "no apt-get on this machine"
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        fail "not root and no passwordless sudo"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# other installers (SLURM) may hold the dpkg lock: wait for it rather than fail
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq || fail "apt-get update failed"
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null \
    || fail "apt-get install chromium chromium-driver failed"

if have_all; then
    echo "install_chromium: installed $(chromium --version 2>/dev/null || chromium-browser --version)"
else
    fail "installation incomplete (chromium or chromedriver missing)"
fi
