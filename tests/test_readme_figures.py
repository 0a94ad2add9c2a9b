"""Every figure in the README's "Figures measured so far" table is the one on the page it cites.

One source of truth: a number in the README must be found, to the README's precision, on the
docs page (or in the shipped metrics files) its row names. A README number matches a source
number that rounds to it, or whose percentage does (0.950 on the page, 95.0% in the README).
"""

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\d+(?:\.\d+)?")
HEADING = "## Figures measured so far"


def figure_rows(readme: str) -> list[tuple[str, str, str]]:
    """(what, figure, where) of every row of the table under HEADING."""
    lines = readme[readme.index(HEADING):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:  # skip the header and the |---| line
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"README figures table: a row without three cells: {line!r}"
        rows.append(tuple(cells))
    return rows


def numbers(text: str) -> list[str]:
    """The numbers written in ``text`` outside backticks (paths and code carry none that count)."""
    return NUMBER.findall(re.sub(r"`[^`]*`", " ", text))


def matches(written: str, source: set[Decimal]) -> bool:
    places = Decimal(1).scaleb(-len(written.partition(".")[2]))
    target = Decimal(written)
    return any(y.quantize(places, ROUND_HALF_UP) == target or (100 * y).quantize(places, ROUND_HALF_UP) == target
               for y in source)


def source_numbers(where: str) -> set[Decimal]:
    """Every number on the docs pages and in the metrics files the ``where`` cell names."""
    texts = []
    for path in re.findall(r"`([^`]+)`", where):
        if path.startswith("docs/") and path.endswith(".md"):
            texts.append((ROOT / path).read_text(encoding="utf-8"))
        elif path.startswith("data_samples/") and path.endswith(".json"):
            for file in sorted(ROOT.glob(path)):
                texts.append(json.dumps(json.loads(file.read_text(encoding="utf-8"))))
    return {Decimal(n) for text in texts for n in NUMBER.findall(text)}


README = (ROOT / "README.md").read_text(encoding="utf-8")
ROWS = figure_rows(README)


def test_the_table_has_rows():
    assert len(ROWS) >= 5


@pytest.mark.parametrize("what, figure, where", ROWS, ids=[row[0][:40] for row in ROWS])
def test_readme_figure_is_on_the_page_it_cites(what, figure, where):
    source = source_numbers(where)
    assert source, f"README row {what!r} cites no page under docs/ or shipped metrics file: {where!r}"
    missing = [n for n in numbers(what) + numbers(figure) if not matches(n, source)]
    assert not missing, f"README row {what!r}: {missing} not found in {where}"


def test_matching_rounds_and_reads_percentages():
    assert matches("228", {Decimal("227.5")}) and matches("95.0", {Decimal("0.950")})
    assert matches("0.10", {Decimal("0.104")}) and not matches("0.11", {Decimal("0.104")})
    assert not matches("2", {Decimal("13")})
