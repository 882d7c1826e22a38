"""The assistant against the scripted backend: regions, checks, retries, streaming."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from tandem.assist.assistant import (
    Assistant,
    CloudRefused,
    NoSafeEdit,
    Routing,
    TooLarge,
)
from tandem.assist.prompts import TASKS, with_context
from tandem.backends.base import ChatRequest
from tandem.backends.fake import FakeBackend
from tandem.config import RoutingSettings, Settings
from tandem.context.symbols import enclosing_definition
from tandem.engine import CompletionEngine, Document
from tandem.routing import Router

SRC = (
    "import math\n"
    "\n"
    "\n"
    "@staticmethod\n"
    "def area(radius):\n"
    "    return math.pi * radius ** 2\n"
    "\n"
    "\n"
    "print(area(2))\n"
)
DOC = Document("file:///w/geo.py", SRC, "python", "geo.py", "/w/geo.py")
CURSOR = SRC.index("return")
GOOD = (
    "```python\n@staticmethod\ndef area(radius):\n"
    '    """The area of a circle."""\n'
    "    return math.pi * radius ** 2\n```"
)
BROKEN = "```python\n@staticmethod\ndef area(radius:\n    return math.pi\n```"


def assistant(*answers: str) -> tuple[Assistant, FakeBackend]:
    backend = FakeBackend()
    backend.enqueue(*answers)
    return Assistant(CompletionEngine(backend)), backend


def test_the_enclosing_definition_includes_its_decorator() -> None:
    line = SRC[:CURSOR].count("\n")
    assert enclosing_definition(SRC, "python", line, line) == (3, 5)
    assert enclosing_definition(SRC, "python", 8, 8) is None


async def test_a_docstring_rewrite_is_one_checked_insertion() -> None:
    helper, backend = assistant(GOOD)
    found = await helper.rewrite(
        DOC, CURSOR, CURSOR, TASKS["docstring"], max_lines=100, context_budget=0
    )
    assert found.attempts == 1 and found.backend == "fake"
    assert found.region == (SRC.index("@static"), SRC.index("\n\n\nprint") + 1)
    (change,) = found.changes
    assert change.start == change.end == CURSOR - 4
    assert change.new_text == '    """The area of a circle."""\n'
    req = backend.requests[0]
    assert isinstance(req, ChatRequest)
    assert req.temperature == 0.0
    user = req.messages[-1].content
    assert "geo.py" in user and "def area(radius):" in user and "docstring" in user


async def test_a_broken_answer_is_retried_warmer_and_never_returned() -> None:
    helper, backend = assistant(BROKEN, GOOD)
    found = await helper.rewrite(
        DOC, CURSOR, CURSOR, TASKS["simplify"], max_lines=100, context_budget=0
    )
    assert found.attempts == 2
    assert "does not parse" in found.rejected[0]
    second = backend.requests[1]
    assert isinstance(second, ChatRequest) and second.temperature > 0

    helper, backend = assistant(BROKEN, BROKEN)
    with pytest.raises(NoSafeEdit, match="does not parse"):
        await helper.rewrite(
            DOC, CURSOR, CURSOR, TASKS["simplify"], max_lines=100, context_budget=0
        )
    assert helper.stats.rewrites_refused == 1 and helper.stats.answers_rejected == 2


async def test_a_docstring_task_may_not_change_code() -> None:
    changed = GOOD.replace("radius ** 2", "radius * radius")
    unchanged = GOOD.replace('    """The area of a circle."""\n', "")
    helper, _ = assistant(changed, unchanged)
    with pytest.raises(NoSafeEdit) as failure:
        await helper.rewrite(
            DOC, CURSOR, CURSOR, TASKS["docstring"], max_lines=100, context_budget=0
        )
    assert "changed existing code" in str(failure.value)
    assert "no change" in str(failure.value)


async def test_explain_streams_the_definition_at_the_cursor() -> None:
    helper, backend = assistant(["It computes ", "the area."])
    seen: list[str] = []
    found = await helper.explain(
        DOC,
        CURSOR,
        CURSOR,
        max_tokens=50,
        max_lines=100,
        context_budget=0,
        on_text=seen.append,
    )
    assert seen == ["It computes ", "It computes the area."]
    assert found.text == "It computes the area."
    req = backend.requests[0]
    assert isinstance(req, ChatRequest) and req.max_tokens == 50
    assert "def area(radius):" in req.messages[-1].content


async def test_code_over_the_size_limit_is_refused_before_any_generation() -> None:
    helper, backend = assistant(GOOD)
    with pytest.raises(TooLarge, match="at most 2 lines"):
        await helper.rewrite(
            DOC, CURSOR, CURSOR, TASKS["docstring"], max_lines=2, context_budget=0
        )
    assert backend.requests == []


async def test_the_prompt_holds_definitions_the_code_uses_from_other_files() -> None:
    helper, backend = assistant("It scales.")
    other = "def scale(value, factor):\n    return value * factor\n"
    helper.engine.index.update("/w/util.py", other, "python")
    text = "from util import scale\n\n\ndef double(x):\n    return scale(x, 2)\n"
    doc = Document("file:///w/main.py", text, "python", "main.py", "/w/main.py")
    at = text.index("return")
    await helper.explain(doc, at, at, max_tokens=20, max_lines=100, context_budget=200)
    req = backend.requests[0]
    assert isinstance(req, ChatRequest)
    (context,) = req.context
    assert (context.path, context.text) == ("util.py", "def scale(value, factor):")
    # The router writes the definitions into the prompt, before the code.
    user = with_context(req).messages[-1].content
    assert user.index("def scale(value, factor)") < user.index("def double(x)")


def routed(
    tmp_path: Path, **routing: object
) -> tuple[Assistant, FakeBackend, FakeBackend, Router]:
    """An assistant whose tasks go through a router: local fake + cloud fake."""
    router = Router(tmp_path / "spend.json")
    router.settings = attrs.evolve(
        Settings(), routing=attrs.evolve(RoutingSettings(), **routing)
    )
    local, cloud = FakeBackend(), FakeBackend()
    router.local = local
    router.remote = {"anthropic": cloud}
    router.roots = lambda: ["/w"]  # the documents' workspace folder
    helper = Assistant(CompletionEngine(router.view("completion")))
    helper.backend_for = router.view  # type: ignore[assignment]
    return helper, local, cloud, router


ALLOWED = {"escalate_to": "anthropic", "allow_escalation": True}


async def test_a_local_rewrite_that_fails_its_checks_is_escalated(
    tmp_path: Path,
) -> None:
    helper, local, cloud, router = routed(tmp_path, **ALLOWED)
    local.enqueue(BROKEN, BROKEN)
    cloud.enqueue(GOOD)
    found = await helper.rewrite(
        DOC, CURSOR, CURSOR, TASKS["docstring"], max_lines=100, context_budget=0
    )
    assert (found.attempts, found.backend) == (3, "anthropic")
    assert (
        router.decisions[0].reason == "escalated: the local rewrite failed its checks"
    )


async def test_large_selections_go_to_the_cloud_and_small_ones_stay(
    tmp_path: Path,
) -> None:
    helper, local, cloud, router = routed(tmp_path, **ALLOWED)
    cloud.enqueue("from the cloud")
    local.enqueue("from here")
    limit = Routing(escalate_lines=2)
    big = await helper.explain(
        DOC, 0, len(SRC), max_tokens=9, max_lines=100, context_budget=0, routing=limit
    )
    assert big.backend == "anthropic"
    assert router.decisions[0].reason.startswith("escalated: 9 lines > 2")
    small = await helper.explain(
        DOC,
        CURSOR,
        CURSOR,
        max_tokens=9,
        max_lines=100,
        context_budget=0,
        routing=Routing(escalate_lines=50),
    )
    assert small.backend == "local"


async def test_asking_the_cloud_without_permission_says_why(tmp_path: Path) -> None:
    helper, local, cloud, _ = routed(tmp_path, escalate_to="anthropic")
    with pytest.raises(CloudRefused, match="allowEscalation"):
        await helper.explain(
            DOC,
            CURSOR,
            CURSOR,
            max_tokens=9,
            max_lines=100,
            context_budget=0,
            routing=Routing(cloud=True),
        )
    assert local.requests == [] and cloud.requests == []
