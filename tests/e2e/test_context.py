"""Workspace context end to end: a call to a function defined in another file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.helpers import complete, edit, open_doc, session, status
from tests.models import FIXTURES, qwen_model

WORKSPACE = FIXTURES / "workspace"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the fixture workspace (tests may change its files)."""
    copy = tmp_path / "workspace"
    shutil.copytree(WORKSPACE, copy)
    return copy


def env() -> dict[str, str]:
    return {"TANDEM_MODEL": str(qwen_model())}


async def wait_for_index(client: LanguageClient) -> dict[str, object]:
    """The index stats once the background build has finished."""
    while "files" not in (state := await status(client))["index"]:
        await client.wait_for_notification("$/tandem/status")
    index: dict[str, object] = state["index"]
    return index


async def complete_dusk(client: LanguageClient, root: Path) -> str:
    app = root / "app.py"
    text = app.read_text()
    open_doc(client, app.as_uri(), text)
    last = text.rstrip("\n").split("\n")
    position = types.Position(line=len(last) - 1, character=len(last[-1]))
    return await complete(client, app.as_uri(), position)


@pytest.mark.slow
async def test_call_uses_the_other_files_signature(root: Path) -> None:
    async with session(env(), None, root=str(root)) as client:
        index = await wait_for_index(client)
        assert index["files"] == 3  # app.py and palette/; generated/ is gitignored
        reports = [r for rs in client.progress_reports.values() for r in rs]
        assert any(
            getattr(r, "title", "") == "tandem: indexing the workspace" for r in reports
        )

        completion = await complete_dusk(client, root)
        # blend_colors(weight, first, second): the weight comes first.
        assert completion.replace(" ", "").startswith("blend_colors(0.5,"), (
            completion,
            (await status(client))["stats"]["last_context"],
        )

        # What the prompt held: the definition from palette/mixing.py, by path.
        context = (await status(client))["stats"]["last_context"]
        assert context["files"] == ["palette/mixing.py"]
        assert "blend_colors" in context["symbols"]
        assert (
            "def blend_colors(weight: float, first: Color, second: Color)"
            in (context["text"])
        )
        assert "old_mixing" not in context["text"]
        assert 0 < context["tokens"] <= 512


@pytest.mark.slow
async def test_context_off_prompt_has_no_other_files(root: Path) -> None:
    options = {"context": {"enabled": False}}
    async with session(env(), options, root=str(root)) as client:
        completion = await complete_dusk(client, root)
        assert completion.startswith("blend_colors(")  # it still sees the import
        state = await status(client)
        assert state["stats"]["last_context"] == {}
        assert "files" not in state["index"]  # no workspace indexing ran


@pytest.mark.slow
async def test_saved_changes_in_another_file_are_used(root: Path) -> None:
    async with session(env(), None, root=str(root)) as client:
        await wait_for_index(client)
        mixing = root / "palette" / "mixing.py"
        text = mixing.read_text().replace(
            "def blend_colors(weight: float, first: Color, second: Color)",
            "def blend_colors(first: Color, second: Color, *, weight: float)",
        )
        mixing.write_text(text)
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(
                        uri=mixing.as_uri(), type=types.FileChangeType.Changed
                    )
                ]
            )
        )
        await complete_dusk(client, root)
        context = (await status(client))["stats"]["last_context"]
        assert (
            "def blend_colors(first: Color, second: Color, *, weight: float)"
            in (context["text"])
        )


@pytest.mark.slow
async def test_recent_edit_in_another_open_file_is_in_the_prompt(
    root: Path,
) -> None:
    notes = root / "notes.py"
    notes.write_text("\n".join(f"STEP_{i} = {i}" for i in range(30)) + "\n")
    # The whole budget whatever this machine's speed: recent edits are extras.
    whole_budget = {"completion": {"latencyTargetMs": 0}}
    async with session(env(), whole_budget, root=str(root)) as client:
        await wait_for_index(client)
        open_doc(client, notes.as_uri(), notes.read_text())
        here = types.Position(line=15, character=0)
        edit(
            client,
            notes.as_uri(),
            2,
            here,
            "TWILIGHT = blend_colors(0.8, SKY, SUNSET)\n",
        )
        await complete_dusk(client, root)
        context = (await status(client))["stats"]["last_context"]
        assert "notes.py" in context["files"]
        assert "TWILIGHT = blend_colors(0.8, SKY, SUNSET)" in context["text"]
        assert "STEP_0 = 0" not in context["text"]  # only the edited region


SHOP = {
    "shop/__init__.py": "",
    "shop/pricing.py": (
        '"""Prices of the shop."""\n\n'
        "TAX_RATE = 0.2\n\n\n"
        "def apply_volume_discount(unit_price: float, quantity: int) -> float:\n"
        '    """Unit price after the discount for buying ``quantity`` at once."""\n'
        "    rate = 0.1 if quantity >= 10 else 0.0\n"
        "    return unit_price * (1 - rate)\n\n\n"
        "def with_tax(amount: float) -> float:\n"
        '    """``amount`` with the sales tax added."""\n'
        "    return amount * (1 + TAX_RATE)\n"
    ),
    "shop/cart.py": (
        "from shop import pricing\n\n\n"
        "def line_total(unit_price: float, quantity: int) -> float:\n"
        '    """What a line of the cart costs, discount applied."""\n'
        "    return pricing.\n"
    ),
}


def write_shop(root: Path) -> Path:
    for name, text in SHOP.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "shop" / "cart.py"


@pytest.mark.slow
@pytest.mark.parametrize("speed", ["4000/400", "60/15"], ids=["fast", "slow"])
async def test_member_after_dot_gets_the_imported_modules_members(
    tmp_path: Path, speed: str
) -> None:
    """``from shop import pricing`` ... ``pricing.``: the module's functions are in
    the prompt with default settings, on a fast machine and on a slow one."""
    cart = write_shop(tmp_path)
    async with session({**env(), "TANDEM_SPEED": speed}, None, root=str(tmp_path)) as (
        client
    ):
        await wait_for_index(client)
        text = cart.read_text()
        open_doc(client, cart.as_uri(), text)
        lines = text.rstrip("\n").split("\n")
        at = types.Position(line=len(lines) - 1, character=len(lines[-1]))
        completion = await complete(client, cart.as_uri(), at)
        state = await status(client)
        context = state["stats"]["last_context"]
        assert context["files"] == ["shop/pricing.py"]
        assert (
            "def apply_volume_discount(unit_price: float, quantity: int)"
            in (context["text"])
        )
        assert completion.startswith("apply_volume_discount("), (completion, context)
        latency = state["latency"]
        assert latency["speed"]["pinned"] is True
        assert latency["contextFloor"] == 384
        if speed == "60/15":  # too slow for any context by speed alone: the floor
            assert latency["contextBudget"] == 0
            assert "at least 384" in latency["contextBudgetWhy"]
