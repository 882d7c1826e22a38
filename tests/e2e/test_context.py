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
    async with session(env(), None, root=str(root)) as client:
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
