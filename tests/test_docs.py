"""The README and the documentation site stay true: examples run, tables match the code.

Code examples: every fenced ``bash`` or ``python`` block of the README and the user guide runs,
in order, one page at a time, with a private data folder shared by all pages (so that a page's
``run-screen`` reuses the predictions of the one before), except

- blocks whose first line starts with ``# not run`` (they say why: a network, a cluster, hours);
- the README's two set-up commands, which install packages: the test command is checked to be
  what ``.ci/run`` runs, verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from anisoscreen.errors import EXIT_CODE_MEANINGS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
NOT_RUN = "# not run"
SETUP_MARK = "pip install torch==2.13.0 && pip install -e "
EXAMPLE_PAGES = [
    README,
    DOCS / "index.md",
    *sorted((DOCS / "guide").glob("*.md")),
    DOCS / "models" / "index.md",
]
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced block, indentation removed, in page order."""
    blocks = []
    for match in FENCE.finditer(path.read_text()):
        indent = len(match.group(1))
        code = "\n".join(line[indent:] for line in match.group(3).splitlines())
        blocks.append((match.group(2), code.strip() + "\n"))
    return blocks


def runnable(blocks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (lang, code)
        for lang, code in blocks
        if lang in ("bash", "python")
        and not code.startswith(NOT_RUN)
        and not code.startswith(SETUP_MARK)
    ]


def test_readme_setup_commands_are_what_ci_runs():
    setup = [code for lang, code in code_blocks(README) if code.startswith(SETUP_MARK)]
    assert setup == [
        "pip install torch==2.13.0 && pip install -e . && anisoscreen run-screen\n",
        'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest\n',
    ]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert setup[1].strip() in ci_lines, "the README's test command is not in .ci/run verbatim"


def test_readme_is_a_short_users_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("## Quick start", "## Usage", "## Exit codes", "## Reliability"):
        assert any(h.startswith(wanted) for h in headings), wanted


def test_readme_exit_code_table_matches_the_code():
    text = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", text, re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == {
        int(code): meaning for code, meaning in EXIT_CODE_MEANINGS.items()
    }


def test_every_example_is_run_or_says_why_not():
    for page in EXAMPLE_PAGES:
        for lang, code in code_blocks(page):
            if lang in ("bash", "python") and ("mongodb://" in code or "sbatch" in code):
                assert code.startswith(NOT_RUN), f"{page.name}: a cluster example must say so"
            if code.startswith(NOT_RUN):
                assert re.match(r"# not run: \S", code), f"{page.name}: say why it is not run"


def test_architecture_page_matches_the_tree():
    page = (DOCS / "architecture.md").read_text()
    tree = page.split("```text", 1)[1].split("```", 1)[0]
    package = REPO / "anisoscreen"
    missing = []
    for path in sorted(package.rglob("*")):
        if "__pycache__" in path.parts or "static" in path.parts or "templates" in path.parts:
            continue
        if path.is_dir():
            if any(path.glob("*.py")) and not re.search(rf"\b{path.name}/", tree):
                missing.append(str(path.relative_to(REPO)))
        elif path.suffix in (".py", ".cpp") and path.name != "__init__.py":
            if not re.search(rf"(?<![\w.]){re.escape(path.name)}", tree):
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"not in docs/architecture.md: {missing}"
    existing = {p.name for p in package.rglob("*.py")} | {p.name for p in package.rglob("*.cpp")}
    named = set(re.findall(r"\b(\w+\.(?:py|cpp))\b", tree))
    assert named <= existing, f"docs/architecture.md names missing files: {named - existing}"


def test_every_model_card_has_a_generated_page():
    nav = (REPO / "mkdocs.yml").read_text()
    for card in sorted((REPO / "models").glob("*/MODEL_CARD.md")):
        name = card.parent.name
        page = DOCS / "models" / f"{name}.md"
        assert f'--8<-- "models/{name}/MODEL_CARD.md"' in page.read_text(), name
        assert f"models/{name}.md" in nav, name


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    card = (tmp_path / "models" / "anisonet-mp-v2" / "index.html").read_text()
    assert "Test-set metrics" in card  # the card's content, included from models/


@pytest.fixture(scope="module")
def example_env(tmp_path_factory):
    """Environment of the examples: this interpreter as ``python`` and ``anisoscreen``."""
    root = tmp_path_factory.mktemp("examples")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shims = {
        "anisoscreen": (
            f'exec "{sys.executable}" -c "import sys; from anisoscreen.cli import main; '
            'sys.argv[0] = \'anisoscreen\'; main()" "$@"'
        ),
        "python": f'exec "{sys.executable}" "$@"',
    }
    for name, body in shims.items():
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{body}\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "ANISOSCREEN_DATA_DIR": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),  # no user config file
        "MPLBACKEND": "Agg",
        "COLUMNS": "200",
    }
    for key in ("ANISOSCREEN_CONFIG", "ANISOSCREEN_STORE", "ANISOSCREEN_MODEL"):
        env.pop(key, None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_examples_run(page, example_env, tmp_path):
    assert shutil.which("bash")
    for number, (lang, code) in enumerate(runnable(code_blocks(page))):
        script = tmp_path / f"example-{number}.{'sh' if lang == 'bash' else 'py'}"
        script.write_text(code)
        command = ["bash", "-euo", "pipefail", str(script)] if lang == "bash" else None
        command = command or [sys.executable, str(script)]
        out = subprocess.run(
            command, cwd=tmp_path, env=example_env, capture_output=True, text=True, timeout=900
        )
        assert out.returncode == 0, (
            f"{page.name}, example {number + 1} ({lang}) failed:\n{code}\n"
            f"--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
        )
