"""Every ``refsuite`` command line shown in the README and the docs parses with the real parser.

A renamed flag or command breaks the documented examples silently otherwise; parsing is cheap
(no work runs), so every shell block of README.md and docs/*.md is checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from refsuite.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_lines(path: Path) -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if re.search(r"(^|/)refsuite\s", line):
                lines.append(line)
    return lines


CASES = [(p.relative_to(ROOT).as_posix(), line) for p in DOCS for line in _command_lines(p)]


def test_the_readme_shows_commands():
    assert sum(doc == "README.md" for doc, _ in CASES) >= 15


@pytest.mark.parametrize(("doc", "line"), CASES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(CASES)])
def test_documented_command_parses(doc, line):
    argv = shlex.split(line)
    start = next(i for i, a in enumerate(argv) if re.search(r"(^|/)refsuite$", a)) + 1
    argv = argv[start:]
    try:
        build_parser(argv[0]).parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on an unknown flag or a bad value
        pytest.fail(f"{doc}: `{line}` does not parse (exit {exc.code})")
