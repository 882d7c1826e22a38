"""Explain and refactor end to end: the real server, the real Qwen model."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

from tandem.context.symbols import syntax_errors
from tests.e2e.helpers import open_doc, session, status
from tests.models import qwen_model

MIXING = (
    "import math\n"
    "\n"
    "\n"
    "def blend(weight, first, second):\n"
    "    r = first[0] * weight + second[0] * (1 - weight)\n"
    "    g = first[1] * weight + second[1] * (1 - weight)\n"
    "    b = first[2] * weight + second[2] * (1 - weight)\n"
    "    return (r, g, b)\n"
    "\n"
    "\n"
    "print(blend(0.5, (255, 0, 0), (0, 0, 255)))\n"
)
URI = "file:///work/project/mixing.py"
IN_BODY = types.Range(
    start=types.Position(line=4, character=4), end=types.Position(line=4, character=4)
)
BODY = types.Range(
    start=types.Position(line=4, character=0), end=types.Position(line=7, character=0)
)


def record_edits(client: LanguageClient) -> list[types.ApplyWorkspaceEditParams]:
    """Answer workspace/applyEdit as an editor does; return what was asked."""
    seen: list[types.ApplyWorkspaceEditParams] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(
        params: types.ApplyWorkspaceEditParams,
    ) -> types.ApplyWorkspaceEditResult:
        seen.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    return seen


def text_edits(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    if edit.document_changes:
        (change,) = edit.document_changes
        assert isinstance(change, types.TextDocumentEdit)
        assert change.text_document.uri == uri
        assert change.text_document.version == 1  # stale edits are refused
        return [e for e in change.edits if isinstance(e, types.TextEdit)]
    assert edit.changes is not None
    return list(edit.changes[uri])


def apply(text: str, edits: list[types.TextEdit]) -> str:
    """Apply edits (ASCII text: columns are characters)."""
    lines = text.splitlines(keepends=True)

    def offset(pos: types.Position) -> int:
        return sum(len(line) for line in lines[: pos.line]) + pos.character

    for e in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        start, end = offset(e.range.start), offset(e.range.end)
        text = text[:start] + e.new_text + text[end:]
    return text


def arg(task: str, rng: types.Range = IN_BODY, **extra: Any) -> dict[str, Any]:
    position = {"line": rng.start.line, "character": rng.start.character}
    end = {"line": rng.end.line, "character": rng.end.character}
    return {"uri": URI, "range": {"start": position, "end": end}, "task": task, **extra}


def explaining(client: LanguageClient) -> list[tuple[Any, list[Any]]]:
    """The progress reports of explanations: (token, reports)."""
    return [
        (token, reports)
        for token, reports in list(client.progress_reports.items())
        if reports
        and isinstance(reports[0], types.WorkDoneProgressBegin)
        and reports[0].title == "tandem: explaining"
    ]


async def execute(client: LanguageClient, command: str, argument: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=[argument])
    )


@pytest.mark.slow
async def test_code_actions_are_offered_for_a_selection(client: LanguageClient) -> None:
    open_doc(client, URI, MIXING)
    doc = types.TextDocumentIdentifier(uri=URI)
    problem = types.Diagnostic(
        range=types.Range(
            start=types.Position(line=7, character=11),
            end=types.Position(line=7, character=18),
        ),
        message="Tuple is not a Color",
        source="mypy",
    )
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc,
            range=BODY,
            context=types.CodeActionContext(diagnostics=[problem]),
        )
    )
    assert actions is not None
    titles = {a.title: a for a in actions if isinstance(a, types.CodeAction)}
    assert set(titles) == {
        "tandem: Explain selection",
        "tandem: Add docstring",
        "tandem: Add type hints",
        "tandem: Simplify",
        "tandem: Extract function",
        "tandem: Fix 'Tuple is not a Color'",
    }
    fix = titles["tandem: Fix 'Tuple is not a Color'"]
    assert fix.kind == types.CodeActionKind.QuickFix
    assert list(fix.diagnostics or ()) == [problem]
    assert fix.command is not None and fix.command.command == "tandem.refactor"

    only = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc,
            range=IN_BODY,
            context=types.CodeActionContext(
                diagnostics=[], only=[types.CodeActionKind.Refactor]
            ),
        )
    )
    assert only is not None
    kinds = {a.kind for a in only if isinstance(a, types.CodeAction)}
    assert kinds == {types.CodeActionKind.RefactorRewrite}  # no extract: no selection


@pytest.mark.slow
async def test_add_docstring_applies_a_checked_minimal_edit(
    client: LanguageClient,
) -> None:
    edits = record_edits(client)
    open_doc(client, URI, MIXING)
    result = await execute(client, "tandem.refactor", arg("docstring"))
    assert result["applied"] is True, result
    (request,) = edits
    assert request.label == "tandem: Add docstring"
    changes = text_edits(request.edit, URI)
    # An insertion below the signature, not a rewrite of the function.
    assert all(c.range.start == c.range.end for c in changes)
    assert changes[0].range.start.line == 4
    after = apply(MIXING, changes)
    assert syntax_errors(after, "python") == 0
    function = ast.parse(after).body[1]
    assert isinstance(function, ast.FunctionDef) and function.name == "blend"
    assert ast.get_docstring(function)
    # Every original line is still there, in order.
    remaining = iter(after.splitlines())
    assert all(line in remaining for line in MIXING.splitlines())

    state = await status(client)
    assert state["actions"]["rewrites_offered"] == 1
    assert state["actions"]["last"]["action"] == "docstring"


@pytest.mark.slow
@pytest.mark.parametrize("client", ["vscode"], indirect=True)
async def test_explain_streams_progress_then_returns_markdown(
    client: LanguageClient,
) -> None:
    open_doc(client, URI, MIXING)
    result = await execute(client, "tandem.explain", arg("explain"))
    text = result["markdown"]
    assert "blend" in text and len(text) > 40
    assert result["range"]["start"]["line"] == 3  # the whole function
    (reports,) = [r for _, r in explaining(client)]
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    streamed = [
        r.message for r in reports[1:-1] if isinstance(r, types.WorkDoneProgressReport)
    ]
    assert len(streamed) >= 2  # partial text arrived before the result
    assert all(m is not None and text.startswith(m.strip()) for m in streamed)


@pytest.mark.slow
@pytest.mark.parametrize("client", ["vscode"], indirect=True)
async def test_explain_can_be_cancelled_mid_generation(client: LanguageClient) -> None:
    open_doc(client, URI, MIXING)
    before = await status(client)
    running = asyncio.ensure_future(execute(client, "tandem.explain", arg("explain")))
    while True:  # wait for streamed text: generation is under way
        await client.wait_for_notification(types.PROGRESS)
        begun = explaining(client)
        if begun and any(
            isinstance(r, types.WorkDoneProgressReport) for r in begun[0][1]
        ):
            break
    token, _ = begun[0]
    client.protocol.notify(
        types.WINDOW_WORK_DONE_PROGRESS_CANCEL,
        types.WorkDoneProgressCancelParams(token=token),
    )
    with pytest.raises(JsonRpcRequestCancelled):
        await running
    # The worker thread notices the stop flag at its next token.
    stopped = before["backendCounters"].get("generation_stops", 0) + 1
    for _ in range(100):
        after = await status(client)
        if after["backendCounters"]["generation_stops"] == stopped:
            break
        await asyncio.sleep(0.05)
    assert after["backendCounters"]["generation_stops"] == stopped
    assert after["actions"]["explanations"] == 0
    # The model is free again: the next request is served.
    again = await execute(client, "tandem.explain", arg("explain"))
    assert again["markdown"]


@pytest.mark.slow
async def test_a_broken_model_answer_is_never_applied(tmp_path: Path) -> None:
    broken = "```python\ndef blend(weight, first, second:\n    return (r, g\n```"
    script = tmp_path / "script.json"
    script.write_text(json.dumps([broken, broken]))
    env = {"TANDEM_FAKE_SCRIPT": str(script)}
    async with session(env, {"backend": "fake"}) as client:
        edits = record_edits(client)
        open_doc(client, URI, MIXING)
        shown = asyncio.ensure_future(
            client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
        )
        result = await execute(client, "tandem.refactor", arg("simplify"))
        assert result["applied"] is False
        assert "no safe edit" in result["message"]
        assert "does not parse" in result["message"]
        assert edits == []
        message = await asyncio.wait_for(shown, 10)
        assert "no safe edit" in message.message
        state = await status(client)
        assert state["actions"]["answers_rejected"] == 2
        assert state["actions"]["rewrites_refused"] == 1


@pytest.mark.slow
async def test_shutdown_while_explaining_answers_both_requests() -> None:
    env = {"TANDEM_MODEL": str(qwen_model())}
    async with session(env, None) as client:
        open_doc(client, URI, MIXING)
        running = asyncio.ensure_future(
            execute(client, "tandem.explain", arg("explain"))
        )
        while not any(
            isinstance(r, types.WorkDoneProgressReport)
            for _, reports in explaining(client)
            for r in reports
        ):
            await client.wait_for_notification(types.PROGRESS)
        # session() shuts down on exit: that must answer, and so must explain.
    with pytest.raises(JsonRpcRequestCancelled):
        await running


@pytest.mark.slow
async def test_hover_explains_only_when_the_setting_is_on(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([["Blends ", "two colours."]]))
    env = {"TANDEM_FAKE_SCRIPT": str(script)}
    hover = types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=types.Position(line=5, character=8),
    )
    async with session(env, {"backend": "fake"}) as client:
        open_doc(client, URI, MIXING)
        assert await client.text_document_hover_async(hover) is None  # off: no call
    options = {"backend": "fake", "actions": {"hover": True}}
    async with session(env, options) as client:
        open_doc(client, URI, MIXING)
        found = await client.text_document_hover_async(hover)
        assert found is not None and isinstance(found.contents, types.MarkupContent)
        assert found.contents.value == "Blends two colours."
        assert found.range is not None and found.range.start.line == 3
