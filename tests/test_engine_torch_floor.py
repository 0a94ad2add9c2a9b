"""The torch release that pyproject.toml and environment.yml declare has every torch call
the package makes: a user who installs the floor must not meet an AttributeError."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A torch call made somewhere in sfer/ -> the first torch release that has it (torch docs
# and release notes). A call newer than every entry here belongs in this table.
FIRST_RELEASE = {
    "get_total_norm": (2, 6),
    "sdpa_kernel": (2, 3),
    "FlopCounterMode": (2, 1),
    "torch.compile": (2, 0),
    "scaled_dot_product_attention": (2, 0),
    "weights_only=True": (1, 13),
}


def declared_floor(text: str, path: Path) -> tuple[int, int]:
    found = re.search(r"torch>=(\d+)\.(\d+)", text)
    assert found, f"{path} declares no torch floor"
    return int(found[1]), int(found[2])


def used_calls() -> dict[str, list[str]]:
    """Each call of FIRST_RELEASE -> the package files that make it."""
    sources = {path: path.read_text() for path in sorted((ROOT / "sfer").rglob("*.py"))}
    return {call: [str(path.relative_to(ROOT)) for path, text in sources.items() if call in text]
            for call in FIRST_RELEASE}


@pytest.mark.parametrize("name", ["pyproject.toml", "environment.yml"])
def test_the_declared_torch_floor_has_every_call_the_package_makes(name):
    path = ROOT / name
    floor = declared_floor(path.read_text(), path)
    used = used_calls()
    assert used["get_total_norm"], "the table is stale: sfer no longer calls get_total_norm"
    too_new = {call: (FIRST_RELEASE[call], files) for call, files in used.items()
               if files and FIRST_RELEASE[call] > floor}
    assert not too_new, f"{name} declares torch>={floor[0]}.{floor[1]}, but sfer calls {too_new}"
