"""Getting a model: download with progress, and no model at all (real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tandem.system import memory
from tests.e2e.helpers import complete, open_doc, session, wait_for_state
from tests.fakes.hub import serve
from tests.models import qwen_model, smollm_model


@pytest.mark.slow
async def test_default_model_is_downloaded_with_progress(tmp_path: Path) -> None:
    hub = serve(smollm_model(), "tandem-test/smol", "smol-q4.gguf")
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_address[1]}",
        "HF_HOME": str(tmp_path / "hf"),
    }
    options = {"local": {"modelRepo": "tandem-test/smol", "modelFile": "smol-q4.gguf"}}
    try:
        async with session(env, options) as client:
            state = await wait_for_state(client, "ready", "unavailable")
            assert state["model"]["state"] == "ready", state["model"]
            assert state["model"]["path"].startswith(str(tmp_path / "hf"))
            reports = [r for rs in client.progress_reports.values() for r in rs]
            titles = [
                r.title for r in reports if isinstance(r, types.WorkDoneProgressBegin)
            ]
            assert "tandem: downloading smol-q4.gguf" in titles
            percents = [
                r.percentage
                for r in reports
                if isinstance(r, types.WorkDoneProgressReport) and r.percentage
            ]
            assert percents and percents[-1] == 100
            uri = "file:///work/project/add.py"
            open_doc(client, uri, "def add(a, b):\n    return ")
            assert "a" in await complete(
                client, uri, types.Position(line=1, character=11)
            )
        # A second start finds it in the cache: no download, even when offline.
        async with session(env, {**options, "offline": True}) as client:
            state = await wait_for_state(client, "ready", "unavailable")
            assert state["model"]["state"] == "ready"
            assert not client.progress_reports or all(
                "downloading" not in getattr(r, "title", "")
                for rs in client.progress_reports.values()
                for r in rs
            )
    finally:
        hub.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "options", "expected"),
    [
        pytest.param(
            {"TANDEM_MODEL": "/nonexistent/model.gguf"},
            None,
            "model file not found",
            id="missing-file",
        ),
        pytest.param(
            {"TANDEM_MODEL": __file__}, None, "is not a GGUF model file", id="not-gguf"
        ),
        pytest.param({}, {"offline": True}, "offline is on", id="offline-not-cached"),
        pytest.param(
            {"TANDEM_MODEL": "TRUNCATED"},
            None,
            "the file may be truncated",
            id="truncated-gguf",
        ),
        pytest.param(
            {"TANDEM_MODEL": "HUGE"},
            None,
            "7B model needs ~8 GB",
            id="too-big-for-ram",
        ),
    ],
)
async def test_no_model_one_clear_message(
    tmp_path: Path, env: dict[str, str], options: Any, expected: str
) -> None:
    if env.get("TANDEM_MODEL") == "TRUNCATED":  # the first 4 MB of the real model
        truncated = tmp_path / "qwen-truncated.gguf"
        with qwen_model().open("rb") as f:
            truncated.write_bytes(f.read(4 << 20))
        env = {"TANDEM_MODEL": str(truncated)}
    if env.get("TANDEM_MODEL") == "HUGE":  # a 70B-sized GGUF (sparse: no disk used)
        huge = tmp_path / "llama-70b.Q4_K_M.gguf"
        with huge.open("wb") as f:
            f.write(b"GGUF")
            f.truncate(max(42 * 10**9, 2 * (memory()["total"] or 0)))
        env = {"TANDEM_MODEL": str(huge)}
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", **env}
    async with session(env, options) as client:
        await wait_for_state(client, "unavailable")
        uri = "file:///work/project/pal.py"
        open_doc(client, uri, "def f():\n    ")
        for _ in range(3):  # typing on: no message per keystroke
            result = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=1, character=4),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
            assert result is None
        messages = [m.message for m in client.messages]
        assert len(messages) == 1, messages
        assert expected in messages[0]
        assert "modelPath" in messages[0] or "GGUF" in messages[0]


@pytest.mark.slow
def test_doctor_names_the_fim_family_of_a_model_file(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from tests import gguf_vocab

    # An old CodeLlama GGUF (no FIM ids in its metadata), as TheBloke's are.
    path = gguf_vocab.write("codellama", tmp_path / "codellama-7b.Q4_K_M.gguf", False)
    done = subprocess.run(
        [sys.executable, "-m", "tandem", "doctor", "--model", str(path), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    found = json.loads(done.stdout)
    assert found["model"]["path"] == str(path)
    assert found["model"]["fim"]["fim_family"] == "codellama"
    assert found["model"]["fim"]["llama_cpp_fim"]["pre"] == "▁<PRE>"
    assert "fits_in_ram" in found["model"] and found["recommended"]["size"]
