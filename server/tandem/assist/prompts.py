"""The assistant's tasks and their chat prompts. Pure data and string building.

Prompts are laid out so that requests on the same code share a prefix: the system
message, then the definitions from other files, then the code, and the task's
instruction last (llama.cpp keeps the shared prefix in its KV cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from tandem.backends.base import ChatMessage, ChatRequest
from tandem.context.builder import ContextFile

Scope = Literal["selection", "definition"]


@attrs.frozen
class Task:
    """One kind of rewrite offered as a code action."""

    id: str
    title: str
    kind: str
    """The LSP code action kind: ``refactor.rewrite`` or ``quickfix``."""
    scope: Scope
    """``definition``: the function or class around the selection is rewritten."""
    inserts_only: bool = False
    """The result may only add lines (a docstring), never change existing ones."""
    needs_selection: bool = False
    needs_instruction: bool = False
    languages: frozenset[str] | None = None
    """Grammars the task makes sense for; None: all."""


TASKS: dict[str, Task] = {
    t.id: t
    for t in (
        Task("docstring", "Add docstring", "refactor.rewrite", "definition", True),
        Task(
            "typehints",
            "Add type hints",
            "refactor.rewrite",
            "definition",
            languages=frozenset({"python", "typescript", "tsx"}),
        ),
        Task("simplify", "Simplify", "refactor.rewrite", "selection"),
        Task(
            "extract",
            "Extract function",
            "refactor.extract",
            "definition",
            needs_selection=True,
        ),
        Task(
            "rewrite",
            "Rewrite with an instruction",
            "refactor.rewrite",
            "selection",
            needs_instruction=True,
        ),
        Task("fix", "Fix", "quickfix", "definition"),
    )
}

_DOC_STYLE = {
    "python": "a docstring (PEP 257) as the first statement of its body",
    "javascript": "a JSDoc comment (/** ... */) directly above it",
    "typescript": "a TSDoc comment (/** ... */) directly above it",
    "tsx": "a TSDoc comment (/** ... */) directly above it",
    "java": "a Javadoc comment directly above it",
    "rust": "/// doc comments directly above it",
    "go": "a // doc comment directly above it, starting with its name",
    "c": "a /** ... */ doc comment directly above it",
    "cpp": "a /** ... */ doc comment directly above it",
}

SYSTEM_EDIT = (
    "You are an expert {language} programmer editing code in the user's editor. "
    "Reply with the complete rewritten code in one fenced code block and nothing "
    "else. Keep the code's style, names and indentation. Do not add example usage "
    "or tests."
)

SYSTEM_EXPLAIN = (
    "You are an expert {language} programmer. Explain code to a colleague in "
    "Markdown: what it does and how, then anything surprising or risky. Be brief "
    "and concrete; no preamble."
)


def instruction(
    task: Task,
    language: str,
    *,
    text: str = "",
    selection: str = "",
    line: int | None = None,
) -> str:
    """The user's request for ``task``.

    ``text`` is a free-text instruction or a diagnostic message, ``selection`` the
    code to extract, ``line`` the 1-based line of a diagnostic in the code.
    """
    if task.id == "docstring":
        style = _DOC_STYLE.get(language, "a doc comment directly above it")
        return (
            "Add documentation to the outermost function or class above: "
            f"{style}. Describe what it does, its parameters and what it returns. "
            "Do not change, reformat or remove any existing line."
        )
    if task.id == "typehints":
        return (
            "Add type annotations to every parameter and return value of the code "
            "above. Change nothing else."
        )
    if task.id == "simplify":
        return (
            "Simplify the code above: same behaviour, clearer and shorter. "
            "Keep its names and its interface."
        )
    if task.id == "extract":
        return (
            "Move this part of the code above into a new, well-named function "
            "defined just before it, and call that function in its place:\n"
            f"```{language}\n{selection.rstrip()}\n```"
        )
    if task.id == "fix":
        where = f" at line {line} of the code above" if line is not None else ""
        return f"Fix this problem reported{where}: {text}\nChange as little as you can."
    return f"{text.strip()}\nRewrite the code above accordingly."


def context_block(context: Sequence[ContextFile], language: str) -> str:
    """Definitions from other files, as a chat prompt shows them."""
    if not context:
        return ""
    parts = [f"{f.path}:\n```{language}\n{f.text}\n```" for f in context]
    return "Definitions from other files that the code uses:\n\n" + "\n\n".join(parts)


def with_context(req: ChatRequest) -> ChatRequest:
    """``req`` with its context files written into the first user message."""
    if not req.context:
        return req
    block = context_block(req.context, req.language)
    messages = list(req.messages)
    for i, message in enumerate(messages):
        if message.role == "user":
            messages[i] = ChatMessage("user", f"{block}\n\n{message.content}")
            break
    return attrs.evolve(req, messages=tuple(messages), context=())


def edit_messages(
    code: str, language: str, path: str, request: str
) -> tuple[ChatMessage, ...]:
    """The chat for a rewrite of ``code`` (dedented) in file ``path``."""
    user = f"{path}:\n```{language}\n{code}\n```\n\n{request}"
    return (
        ChatMessage("system", SYSTEM_EDIT.format(language=language)),
        ChatMessage("user", user),
    )


def explain_messages(code: str, language: str, path: str) -> tuple[ChatMessage, ...]:
    """The chat for an explanation of ``code``."""
    user = f"{path}:\n```{language}\n{code}\n```\n\nExplain this code."
    return (
        ChatMessage("system", SYSTEM_EXPLAIN.format(language=language)),
        ChatMessage("user", user),
    )
