#!/usr/bin/env bash
# The wheel works on its own: build it, install it into a fresh venv outside the checkout, and
# run `anisoscreen predict` on a structure file and a bundled `run-screen` from there. The wheel
# ships the default models only (under 60 MB): another model by name is a one-line error that
# says where to get it, and loads from a folder named in $ANISOSCREEN_MODELS.
#
# WHEEL_CHECK_DEPS_FROM=<site-packages folder> reuses installed dependencies (a .pth file in the
# fresh venv) instead of downloading them; the wheel itself is always installed fresh.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/anisoscreen-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$python" -m pip wheel --no-deps --quiet -w "$work/dist" "$repo"
wheel="$(ls "$work"/dist/anisoscreen-*.whl)"
size=$(stat -c %s "$wheel")
echo "wheel: $(basename "$wheel"), $((size / 1000000)) MB ($size bytes)"
if [ "$size" -ge 60000000 ]; then
    echo "the wheel is over 60 MB" >&2
    exit 1
fi
"$python" -m venv "$work/venv"
bin="$work/venv/bin"
if [ -n "${WHEEL_CHECK_DEPS_FROM:-}" ]; then
    purelib="$("$bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$WHEEL_CHECK_DEPS_FROM" > "$purelib/zz_dependencies.pth"
    "$bin/pip" install --quiet --no-deps --ignore-installed "$work"/dist/anisoscreen-*.whl
else
    "$bin/pip" install --quiet torch==2.13.0
    "$bin/pip" install --quiet "$work"/dist/anisoscreen-*.whl
fi

cd "$work"  # nothing of the checkout is importable from here
export ANISOSCREEN_DATA_DIR="$work/data" MPLBACKEND=Agg
unset PYTHONPATH
"$bin/python" - "$work" <<'PY'
import sys
from pathlib import Path

import anisoscreen
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import DEFAULT_MODELS, resolve_model_path, shipped_models

venv = Path(sys.argv[1]) / "venv"
assert venv in Path(anisoscreen.__file__).resolve().parents, anisoscreen.__file__
assert venv in shipped_models().resolve().parents, shipped_models()
from anisoscreen.settings import get_settings

default = get_settings().model
print("default model:", resolve_model_path(default))
assert DEFAULT_MODELS == ("anisonet-mp-v3", "anisonet-mp-ionic-v1"), DEFAULT_MODELS
for name in DEFAULT_MODELS:
    assert venv in resolve_model_path(name).resolve().parents, name
shipped = sorted(p.name for p in shipped_models().iterdir() if (p / "model.pt").is_file())
assert shipped == sorted(DEFAULT_MODELS), shipped
for name in ("anisonet-mp-v1", "anisonet-mp-v2", "anisonet-mp-v2-sevennet"):
    try:
        resolve_model_path(name)
    except AnisoscreenError as exc:
        assert "ANISOSCREEN_MODELS" in str(exc) and "\n" not in str(exc), exc
    else:
        raise AssertionError(f"{name} should not ship in the wheel")
from anisoscreen.candidates.sources import load_bundled

load_bundled().candidates[0].structure.to(filename="structure.cif")
PY
"$bin/anisoscreen" predict structure.cif --output predictions.jsonl
"$bin/python" - <<'PY'
import json

(line,) = open("predictions.jsonl").read().splitlines()
doc = json.loads(line)
assert "error" not in doc and len(doc["dielectric_tensor"]) == 3, doc
print("predicted:", doc["formula"], "a_r", round(doc["anisotropy_ratio"], 3))
PY
# a model that does not ship: one line naming where to get it, exit status 1 ...
status=0
"$bin/anisoscreen" predict structure.cif --model anisonet-mp-v1 --output v1.jsonl 2> err.txt || status=$?
cat err.txt
[ "$status" -eq 1 ] || { echo "expected exit status 1, got $status" >&2; exit 1; }
[ "$(grep -c 'error' err.txt)" -eq 1 ] && grep 'error' err.txt | grep -q 'ANISOSCREEN_MODELS'
# ... and it loads by name from a models folder named in $ANISOSCREEN_MODELS
ANISOSCREEN_MODELS="$repo/models" "$bin/anisoscreen" predict structure.cif \
    --model anisonet-mp-v1 --output v1.jsonl
grep -q '"anisonet-mp-v1' v1.jsonl
"$bin/anisoscreen" run-screen
echo "wheel check passed"
