"""docs/tour.md cannot rot: every fenced block runs, and prints exactly what the text claims.

The runner: the tour is split into chapters at its ``## `` headings; each chapter's
```` ```python ```` blocks run in order in one fresh namespace (compiled under the tour's own
path and line numbers, so a traceback points at the line of the tour). A block's
``# prints: TEXT`` lines are the output it must print, line for line (trailing spaces
ignored); a block without them must print nothing. Every fenced block must be Python, and
every repository path the tour names in backticks must exist.

    python tests/test_tour.py      # print each block's actual output (to write the claims)
"""
import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "docs" / "tour.md"
CLAIM = "# prints:"
# named in the tour before it lands in this tree (another branch adds it)
PENDING_PATHS = set()  # paths the tour may name before they land


def chapters(text=None):
    """[(title, [(first line number, code)])] in the tour's order."""
    text = TOUR.read_text(encoding="utf-8") if text is None else text
    out, block, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if block is None and line.startswith("## "):
            out.append((line[3:].strip(), []))
        elif block is None and line.startswith("```"):
            if line.strip() != "```python":
                raise AssertionError(f"docs/tour.md:{number}: every block must be ```python, "
                                     f"got {line.strip()!r}")
            if not out:
                raise AssertionError(f"docs/tour.md:{number}: a block before the first chapter")
            block, start = [], number + 1
        elif block is not None and line.startswith("```"):
            out[-1][1].append((start, "\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    if block is not None:
        raise AssertionError(f"docs/tour.md:{start - 1}: an unclosed block")
    return out


def claimed_output(code):
    """The lines the block says it prints (its ``# prints:`` lines, in order)."""
    lines = []
    for line in code.splitlines():
        stripped = line.strip()
        if stripped.startswith(CLAIM):
            lines.append(stripped[len(CLAIM):].removeprefix(" ").rstrip())
    return lines


def run_block(code, first_line, namespace):
    """Run one block in ``namespace``; returns its stdout lines (right-stripped)."""
    padded = "\n" * (first_line - 1) + code  # line numbers of the tour itself
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(padded, str(TOUR), "exec"), namespace)  # noqa: S102 - the tour's own code
    return [line.rstrip() for line in out.getvalue().splitlines()]


CHAPTERS = chapters()


def test_the_tour_has_its_eight_chapters_each_with_code():
    titles = [title for title, _ in CHAPTERS]
    assert len(titles) == 8, titles
    assert [t.split(".")[0] for t in titles] == [str(i) for i in range(1, 9)]
    assert all(blocks for _, blocks in CHAPTERS), "a chapter without a runnable block"
    assert all(any(claimed_output(code) for _, code in blocks) for _, blocks in CHAPTERS), \
        "a chapter that claims no output"


@pytest.mark.parametrize("title, blocks", CHAPTERS, ids=[t.split(".")[0] for t, _ in CHAPTERS])
def test_chapter_runs_and_prints_what_it_claims(title, blocks, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the tour's examples run from the repository root
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))  # nothing written to the user's cache
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the tour's temporary files
    namespace = {"__name__": f"tour_chapter_{title.split('.')[0]}"}
    for first_line, code in blocks:
        printed = run_block(code, first_line, namespace)
        assert printed == claimed_output(code), (
            f"docs/tour.md:{first_line}: the block printed\n" + "\n".join(printed)
            + "\nbut the tour says\n" + "\n".join(claimed_output(code)))


def test_every_path_the_tour_names_exists():
    text = TOUR.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:minigrad|models|weights|tests|benchmarks|docs)/[\w/.-]+)`",
                           text))
    assert len(paths) >= 10
    missing = sorted(p for p in paths - PENDING_PATHS if not (ROOT / p).exists())
    assert not missing, f"docs/tour.md names files that do not exist: {missing}"
    for link in re.findall(r"\]\(([\w.-]+\.md)\)", text):
        assert (TOUR.parent / link).exists(), link


def test_the_runner_catches_a_wrong_claim_and_a_silent_print():
    text = ("## 1. x\n\n```python\nprint(1 + 1)\n# prints: 3\n```\n\n"
            "```python\nprint('unclaimed')\n```\n")
    (_, blocks), = chapters(text)
    ns = {}
    assert run_block(blocks[0][1], blocks[0][0], ns) != claimed_output(blocks[0][1])
    assert run_block(blocks[1][1], blocks[1][0], ns) == ["unclaimed"]
    assert claimed_output(blocks[1][1]) == []
    with pytest.raises(AssertionError, match="must be ```python"):
        chapters("## 1. x\n```sh\nls\n```\n")


if __name__ == "__main__":  # show what every block prints
    sys.path.insert(0, str(ROOT))
    for title, blocks in CHAPTERS:
        ns = {"__name__": "tour"}
        print(f"== {title}")
        for first_line, code in blocks:
            print(f"-- line {first_line}")
            print("\n".join(run_block(code, first_line, ns)))
