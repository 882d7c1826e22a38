"""Code actions, the explain and refactor commands, and explain-on-hover.

Code actions carry a command, so nothing is generated until the user picks one.
``tandem.refactor`` computes a checked, minimal edit and hands it to the client
with ``workspace/applyEdit`` (the server never writes files). ``tandem.explain``
streams its text in ``$/progress`` reports and returns the final Markdown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from tandem.assist.assistant import CloudRefused, NoSafeEdit, Routing, TooLarge
from tandem.assist.edits import TextChange
from tandem.assist.prompts import TASKS, Task
from tandem.backends import BackendError
from tandem.context.symbols import language_of
from tandem.engine import BackendMissing, Document
from tandem.server import TandemServer

logger = logging.getLogger(__name__)

CMD_EXPLAIN = "tandem.explain"
CMD_REFACTOR = "tandem.refactor"
REPORT_EVERY_S = 0.1
"""Streamed explanation text is reported at most this often."""
OFFERED = ("docstring", "typehints", "simplify", "extract")
"""Tasks offered as code actions on any selection ("fix" is offered per diagnostic)."""


def snapshot(ls: TandemServer, doc: TextDocument) -> Document:
    """The engine's view of an open document."""
    return ls.snapshot(doc.uri)[1]


def position_at(doc: TextDocument, offset: int) -> types.Position:
    """The client position (UTF-16 by default) of a character offset."""
    text = doc.source
    line = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    column = doc.position_codec.client_num_units(text[line_start:offset])
    return types.Position(line=line, character=column)


def range_at(doc: TextDocument, start: int, end: int) -> types.Range:
    """The client range of character offsets ``start``..``end``."""
    return types.Range(start=position_at(doc, start), end=position_at(doc, end))


def _target(
    ls: TandemServer, args: tuple[Any, ...]
) -> tuple[TextDocument, int, int, dict[str, Any]]:
    """The document and selection offsets a command's argument names."""
    if len(args) != 1 or not isinstance(args[0], dict):
        raise JsonRpcInvalidParams(
            message='expected one argument: {"uri": ..., "range": {...}}'
        )
    arg: dict[str, Any] = args[0]
    doc = ls.document(arg.get("uri"))
    try:
        where = arg.get("range") or {"start": arg["position"], "end": arg["position"]}
        rng = ls.protocol._converter.structure(where, types.Range)
        start = doc.offset_at_position(rng.start)
        end = doc.offset_at_position(rng.end)
    except Exception as e:
        raise JsonRpcInvalidParams(message=f"invalid range or position: {e}") from e
    if start > end:
        start, end = end, start
    return doc, start, end, arg


def _edit(
    ls: TandemServer,
    doc: TextDocument,
    version: int | None,
    changes: tuple[TextChange, ...],
) -> types.WorkspaceEdit:
    text_edits = [
        types.TextEdit(range=range_at(doc, c.start, c.end), new_text=c.new_text)
        for c in changes
    ]
    caps = ls.client_capabilities.workspace
    edit_caps = caps.workspace_edit if caps is not None else None
    if edit_caps is not None and edit_caps.document_changes:
        # With the version, a client refuses the edit if the file changed since.
        identifier = types.OptionalVersionedTextDocumentIdentifier(
            uri=doc.uri, version=version
        )
        return types.WorkspaceEdit(
            document_changes=[
                types.TextDocumentEdit(text_document=identifier, edits=list(text_edits))
            ]
        )
    return types.WorkspaceEdit(changes={doc.uri: list(text_edits)})


def _grammar(doc: TextDocument) -> str | None:
    return language_of(doc.path or doc.uri, doc.language_id or "")


def _command_arg(
    doc: TextDocument, rng: types.Range, task: str, **extra: Any
) -> dict[str, Any]:
    return {
        "uri": doc.uri,
        "range": {
            "start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character},
        },
        "task": task,
        **extra,
    }


def code_actions(
    ls: TandemServer, params: types.CodeActionParams
) -> list[types.CodeAction]:
    """The actions offered for a selection and the diagnostics in it."""
    if not ls.settings.actions.enabled:
        return []
    doc = ls.document(params.text_document.uri)
    rng = params.range
    grammar = _grammar(doc)
    empty = rng.start == rng.end
    actions = [
        types.CodeAction(
            title="tandem: Explain" + (" selection" if not empty else ""),
            kind=types.CodeActionKind.Empty,
            command=types.Command(
                title="tandem: Explain",
                command=CMD_EXPLAIN,
                arguments=[_command_arg(doc, rng, "explain")],
            ),
        )
    ]
    for task_id in OFFERED:
        task = TASKS[task_id]
        if task.needs_selection and empty:
            continue
        if task.languages is not None and grammar not in task.languages:
            continue
        actions.append(
            types.CodeAction(
                title=f"tandem: {task.title}",
                kind=task.kind,
                command=types.Command(
                    title=f"tandem: {task.title}",
                    command=CMD_REFACTOR,
                    arguments=[_command_arg(doc, rng, task.id)],
                ),
            )
        )
    for diagnostic in params.context.diagnostics:
        if diagnostic.source == "tandem":
            continue
        message = diagnostic.message.strip().split("\n", 1)[0]
        title = f"tandem: Fix '{message[:60]}'"
        actions.append(
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                command=types.Command(
                    title=title,
                    command=CMD_REFACTOR,
                    arguments=[
                        _command_arg(doc, diagnostic.range, "fix", instruction=message)
                    ],
                ),
            )
        )
    only = params.context.only
    if only:
        actions = [a for a in actions if _kind_matches(a.kind, only)]
    return actions


def _kind_matches(kind: str | None, only: Sequence[str]) -> bool:
    kind = kind or ""
    return any(kind == k or kind.startswith(f"{k}.") for k in only)


def _routing(ls: TandemServer, arg: dict[str, Any]) -> Routing:
    """Escalation hints: the command's ``cloud`` flag, the size limit."""
    return Routing(
        cloud=arg.get("cloud") is True,
        escalate_lines=ls.settings.routing.escalate_lines,
    )


async def explain(ls: TandemServer, *args: Any) -> dict[str, Any]:
    """Explain the selection or the definition at the cursor, streaming."""
    doc, start, end, arg = _target(ls, args)
    await ls.wait_for_backend()
    settings = ls.settings.actions
    last = 0.0
    async with ls.work_done("tandem: explaining", cancellable=True) as report:

        def on_text(text: str) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S:
                last = now
                report(text, None)

        try:
            found = await ls.assistant.explain(
                snapshot(ls, doc),
                start,
                end,
                max_tokens=settings.explain_max_tokens,
                max_lines=settings.max_lines,
                context_budget=settings.context_budget_tokens,
                on_text=on_text,
                routing=_routing(ls, arg),
            )
        except (BackendMissing, BackendError, TooLarge, CloudRefused) as e:
            ls.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning, message=f"tandem: {e}"
                )
            )
            return {"markdown": "", "error": str(e)}
        report(found.text, None)
    return {
        "markdown": found.text,
        "range": ls.protocol._converter.unstructure(range_at(doc, *found.region)),
        "backend": found.backend,
    }


async def refactor(ls: TandemServer, *args: Any) -> dict[str, Any]:
    """Rewrite code per a task; apply the checked edit through the client."""
    doc, start, end, arg = _target(ls, args)
    task: Task | None = TASKS.get(arg.get("task", "rewrite"))
    if task is None:
        known = ", ".join(TASKS)
        raise JsonRpcInvalidParams(
            message=f"unknown task {arg.get('task')!r}; known: {known}"
        )
    instruction = arg.get("instruction") or ""
    if not isinstance(instruction, str) or (
        task.needs_instruction and not instruction.strip()
    ):
        raise JsonRpcInvalidParams(message=f"task {task.id!r} needs an instruction")
    await ls.wait_for_backend()
    settings = ls.settings.actions
    version = doc.version
    before = doc.source
    async with ls.work_done(f"tandem: {task.title}", cancellable=True) as report:
        try:
            found = await ls.assistant.rewrite(
                snapshot(ls, doc),
                start,
                end,
                task,
                text=instruction,
                max_lines=settings.max_lines,
                context_budget=settings.context_budget_tokens,
                retries=settings.retries,
                progress=lambda message: report(message, None),
                routing=_routing(ls, arg),
            )
        except (NoSafeEdit, BackendMissing, BackendError, TooLarge, CloudRefused) as e:
            ls.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning, message=f"tandem: {e}"
                )
            )
            return {"applied": False, "message": str(e)}
    current = ls.workspace.get_text_document(doc.uri)
    if current.source != before:
        message = "the file changed while the model worked; run the action again"
        ls.window_show_message(
            types.ShowMessageParams(
                type=types.MessageType.Info, message=f"tandem: {message}"
            )
        )
        return {"applied": False, "message": message}
    edit = _edit(ls, current, version, found.changes)
    try:
        result = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=f"tandem: {task.title}")
        )
    except Exception as e:  # the client cannot apply edits: nothing is lost
        logger.warning("workspace/applyEdit failed: %s", e)
        result = types.ApplyWorkspaceEditResult(
            applied=False, failure_reason=f"the editor cannot apply edits ({e})"
        )
    outcome = {
        "applied": result.applied,
        "changes": len(found.changes),
        "attempts": found.attempts,
        "backend": found.backend,
        "rejected": list(found.rejected),
    }
    if not result.applied:
        outcome["message"] = (
            result.failure_reason or "the editor did not apply the edit"
        )
    return outcome


async def hover(ls: TandemServer, params: types.HoverParams) -> types.Hover | None:
    """An explanation of the definition under the cursor, when the setting is on."""
    await ls.wait_for_settings()
    settings = ls.settings.actions
    if not (settings.enabled and settings.hover):
        return None
    doc = ls.document(params.text_document.uri)
    try:
        offset = doc.offset_at_position(params.position)
    except (IndexError, ValueError):
        return None
    await ls.wait_for_backend()
    try:
        found = await ls.assistant.explain(
            snapshot(ls, doc),
            offset,
            offset,
            max_tokens=min(settings.explain_max_tokens, 200),
            max_lines=settings.max_lines,
            context_budget=settings.context_budget_tokens,
        )
    except (BackendMissing, BackendError, TooLarge) as e:
        logger.info("no hover explanation: %s", e)
        return None
    if not found.text:
        return None
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=found.text),
        range=range_at(doc, *found.region),
    )


def register(server: TandemServer) -> None:
    """Register code actions, the commands and hover."""
    kinds = [
        types.CodeActionKind.Empty,
        types.CodeActionKind.QuickFix,
        types.CodeActionKind.RefactorRewrite,
        types.CodeActionKind.RefactorExtract,
    ]
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=kinds),
    )(code_actions)
    server.command(CMD_EXPLAIN)(explain)
    server.command(CMD_REFACTOR)(refactor)
    server.feature(types.TEXT_DOCUMENT_HOVER)(hover)
