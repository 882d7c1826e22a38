"""Next-edit prediction: window, prompt formats, gating, and the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator

import pytest

from tandem.assist.edits import TextChange, apply
from tandem.backends.base import ChatRequest, GenerateRequest, GenerationStats
from tandem.backends.fake import FakeBackend
from tandem.config import NextEditSettings
from tandem.engine import CompletionEngine, Document
from tandem.nextedit import gate, prompts
from tandem.nextedit.history import EditHistory, Latest
from tandem.nextedit.pipeline import NextEditor, change_logprobs

CODE = """def area(width, height):
    scale = 2
    return width * height * scale


def main():
    print(area(2, 3))
"""
RENAMED = CODE.replace("area(width,", "area(w,")
AT = CODE.index("width")


def renamed_latest() -> Latest:
    """The user's edit: ``width`` selected and ``w`` typed over it."""
    return Latest(AT, AT + 1, "width", CODE)


def test_the_window_takes_in_the_latest_edit_and_its_original() -> None:
    cursor = RENAMED.index("scale")
    window = prompts.editable_window(RENAMED, cursor, renamed_latest(), 1, 1)
    assert window.text == "".join(RENAMED.splitlines(keepends=True)[0:3])
    assert window.original == "".join(CODE.splitlines(keepends=True)[0:3])
    assert window.at_file_start
    assert window.text[window.cursor :].startswith("scale")


def test_sweep_prompt_is_the_file_sep_layout() -> None:
    history = EditHistory(clock=lambda: 1.0)
    history.opened("a.py", CODE, "src/a.py")
    history.changed("a.py", RENAMED)
    window = prompts.editable_window(RENAMED, AT + 1, renamed_latest(), 0, 1)
    text = prompts.sweep_prompt("src/a.py", window, history.recent("a.py", 4))
    assert text == (
        "<|file_sep|>src/a.py.diff\n"
        "original:\n"
        "def area(width, height):\n"
        "updated:\n"
        "def area(w, height):\n"
        "<|file_sep|>original/src/a.py\n"
        "def area(width, height):\n"
        "    scale = 2\n"
        "<|file_sep|>current/src/a.py\n"
        "def area(w, height):\n"
        "    scale = 2\n"
        "<|file_sep|>updated/src/a.py\n"
    )


def test_zeta_prompt_marks_the_region_and_the_cursor() -> None:
    history = EditHistory(clock=lambda: 1.0)
    history.opened("a.py", CODE, "a.py")
    history.changed("a.py", RENAMED)
    window = prompts.editable_window(RENAMED, AT + 1, renamed_latest(), 0, 0)
    text = prompts.zeta_prompt("a.py", window, history.recent("a.py", 4))
    assert text.startswith("### Instruction:\n")
    assert '### User Edits:\n\nUser edited "a.py":\n```diff\n@@ -1,' in text
    assert text.endswith(
        "### User Excerpt:\n\n```a.py\n<|start_of_file|>\n"
        "<|editable_region_start|>\ndef area(w<|user_cursor_is_here|>, height):\n"
        "<|editable_region_end|>\n```\n\n### Response:\n"
    )
    answer = (
        "```a.py\n<|editable_region_start|>\ndef area(w, h<|user_cursor_is_here|>):"
        "\n<|editable_region_end|>\n```"
    )
    assert prompts.extract("zeta", answer) == "def area(w, h):\n"
    # The lines watched while generating have no cursor mark either.
    lines = prompts.answer_lines("zeta", answer)
    assert lines is not None and lines[0] == "def area(w, h):\n"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("sweep-next-edit-0.5b.Q8_0.gguf", "sweep", id="sweep"),
        pytest.param("Zeta 7B", "zeta", id="zeta"),
        pytest.param("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "chat", id="qwen"),
    ],
)
def test_format_from_the_model_name(name: str, kind: str) -> None:
    assert prompts.detect(name) == kind


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        pytest.param(["a\n", "b\n"], None, id="only-copying"),
        pytest.param(["a\n", "B\n", "c\n"], None, id="one-line-after"),
        pytest.param(["a\n", "B\n", "c\n", "d\n"], 4, id="settled"),
        pytest.param(["  a\n", "B\n", "c\n", "d\n"], 4, id="indent-ignored"),
        pytest.param(["a\n", "x\n", "b\n", "c\n"], 3, id="inserted-line"),
        pytest.param(["a\n", "d\n", "e\n"], None, id="skipped-lines"),
    ],
)
def test_generation_settles_two_lines_after_a_change(
    out: list[str], expected: int | None
) -> None:
    window = ["a\n", "b\n", "c\n", "d\n", "e\n", "f\n"]
    assert prompts.settled(window, out) == expected


def test_answer_lines_of_a_chat_answer_are_inside_the_fence() -> None:
    assert prompts.answer_lines("chat", "Sure:\n```py") is None
    assert prompts.answer_lines("chat", "```python\na\nb") == ["a\n"]
    assert prompts.answer_lines("chat", "```python\na\nb\n```\n") == ["a\n", "b\n"]


def test_char_changes_are_minimal() -> None:
    new = RENAMED.replace("return width", "return w")
    start, end = 0, len(RENAMED)
    [change] = gate.char_changes(RENAMED, start, end, new)
    assert RENAMED[change.start : change.end] == "idth"
    assert change.new_text == ""
    assert apply(RENAMED, [change]) == new


def _judge(replacement: str, cursor: int = AT + 1) -> gate.Verdict:
    return gate.judge(
        RENAMED, (0, len(RENAMED)), replacement, renamed_latest(), "python", cursor
    )


def test_the_rename_elsewhere_is_offered_with_high_confidence() -> None:
    verdict = _judge(RENAMED.replace("return width", "return w"))
    assert verdict.reason == ""
    assert verdict.confidence == 0.9
    [change] = verdict.changes
    assert RENAMED[change.start : change.end] == "idth"
    assert change.start == RENAMED.index("width") + 1


def test_extending_what_was_typed_is_not_quiet() -> None:
    verdict = _judge(RENAMED.replace("area(w,", "area(wide,"))
    assert verdict.reason == ""


@pytest.mark.parametrize(
    ("replacement", "reason"),
    [
        pytest.param(RENAMED, "no change", id="empty"),
        pytest.param(CODE, "reverts the latest edit", id="revert"),
        pytest.param(
            RENAMED.replace("area(w,", "area(v,"),
            "only changes what was just typed",
            id="typed-only",
        ),
        pytest.param(
            RENAMED.replace("return width", "return (width"),
            "breaks the parse",
            id="parse",
        ),
    ],
)
def test_quiet_cases(replacement: str, reason: str) -> None:
    assert _judge(replacement).reason == reason


def test_the_offered_change_decides_the_confidence() -> None:
    replacement = RENAMED.replace("return width", "return w").replace(
        "print(area(2, 3))", "print(area(2, 4))"
    )
    verdict = _judge(replacement)
    assert len(verdict.changes) == 2
    assert verdict.confidence == 0.9  # the rename offered first


def test_lines_written_past_the_window_are_no_edit() -> None:
    window = RENAMED.index("def main")
    replacement = RENAMED[:window] + "x = 1\n"
    verdict = gate.judge(
        RENAMED, (0, window), replacement, renamed_latest(), "python", AT + 1
    )
    assert verdict.reason == "no change"


def test_an_unrelated_rewrite_gets_a_low_confidence() -> None:
    verdict = _judge(RENAMED.replace("scale = 2", "scale = 3"))
    assert verdict.changes and verdict.confidence == 0.3


def test_log_probabilities_decide_when_given() -> None:
    verdict = gate.judge(
        RENAMED,
        (0, len(RENAMED)),
        RENAMED.replace("scale = 2", "scale = 3"),
        renamed_latest(),
        "python",
        0,
        [-0.1, -0.2, -0.3],
    )
    # The tokens' mean probability (0.8187) and the heuristic's 0.3 (an
    # unrelated change) together.
    assert verdict.confidence == pytest.approx(math.sqrt(0.8187 * 0.3), abs=1e-3)
    assert verdict.logprobs == (-0.1, -0.2, -0.3)


def test_changes_after_the_cursor_come_first() -> None:
    changes = (TextChange(0, 1, "x"), TextChange(40, 41, "y"))
    text = "".join(f"v{i} = {i}\n" for i in range(10))
    verdict = gate.judge(
        text, (0, len(text)), apply(text, changes), None, None, 20, [-0.01]
    )
    assert [c.start for c in verdict.changes] == [40, 0]


def editor(fake: FakeBackend) -> NextEditor:
    engine = CompletionEngine(fake)
    nexted = NextEditor(engine)
    nexted.history.opened("file:///a.py", CODE, "a.py")
    nexted.history.changed("file:///a.py", RENAMED)
    return nexted


async def started(fake: FakeBackend) -> None:
    """Wait until the fake backend has a request (its first chunk is on the way)."""
    for _ in range(500):
        if fake.requests:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no request reached the backend")


DOC = Document("file:///a.py", RENAMED, "python", "a.py")
SETTINGS = NextEditSettings(lines_before=1, lines_after=4)


async def test_pipeline_chat_answer_becomes_the_next_use() -> None:
    fake = FakeBackend()
    body = RENAMED.splitlines(keepends=True)[:5]
    body[2] = body[2].replace("width", "w")
    fake.enqueue(["```python\n", *body, "```\n"])
    nexted = editor(fake)
    prediction = await nexted.predict(DOC, AT + 1, SETTINGS)
    assert prediction is not None and prediction.shown, prediction
    first = prediction.changes[0]
    assert RENAMED[first.start : first.end] == "idth"
    assert first.start == RENAMED.index("width") + 1
    [req] = fake.requests
    assert isinstance(req, ChatRequest)
    assert "-def area(width, height):\n+def area(w, height):" in req.messages[1].content
    assert nexted.stats.shown == 1


async def test_pipeline_stops_generating_once_the_change_is_made() -> None:
    fake = FakeBackend()
    lines = RENAMED.splitlines(keepends=True)
    changed = [lines[0], lines[1], lines[2].replace("width", "w"), lines[3], lines[4]]
    fake.enqueue(["```python\n", *changed, "NEVER READ\n", "```\n"])
    nexted = editor(fake)
    prediction = await nexted.predict(DOC, AT + 1, SETTINGS)
    assert prediction is not None and prediction.shown
    assert "NEVER READ" not in prediction.raw
    assert fake.script == type(fake.script)()  # the one answer was consumed


async def test_pipeline_sweep_format_is_a_raw_prompt() -> None:
    fake = FakeBackend()
    lines = RENAMED.splitlines(keepends=True)[:5]
    lines[2] = lines[2].replace("width", "w")
    fake.enqueue(["".join(lines), "<|file_sep|>"])
    nexted = editor(fake)
    settings = NextEditSettings(format="sweep", lines_before=1, lines_after=4)
    prediction = await nexted.predict(DOC, AT + 1, settings)
    assert prediction is not None and prediction.shown
    [req] = fake.requests
    assert isinstance(req, GenerateRequest) and req.suffix is None
    assert req.prompt.endswith("<|file_sep|>updated/a.py\n")
    assert "<|file_sep|>" in req.stop


async def test_pipeline_quiet_answer_is_not_shown() -> None:
    fake = FakeBackend()
    fake.enqueue(["```python\n", *RENAMED.splitlines(keepends=True)[:5], "```"])
    prediction = await editor(fake).predict(DOC, AT + 1, SETTINGS)
    assert prediction is not None
    assert not prediction.shown and prediction.reason == "no change"


async def test_a_user_request_preempts_the_prediction() -> None:
    fake = FakeBackend(chunk_delay=0.05)
    fake.enqueue(["```python\n", "def", " area", "(w, height):\n"] * 20)
    nexted = editor(fake)
    task = asyncio.ensure_future(nexted.predict(DOC, AT + 1, SETTINGS))
    await started(fake)
    async with nexted.engine.scheduler.request():
        assert await task is None
    assert fake.cancelled == 1
    assert nexted.stats.preempted == 1


async def test_a_newer_prediction_for_the_document_replaces_the_older() -> None:
    fake = FakeBackend(chunk_delay=0.05)
    fake.enqueue(["```python\n"] + ["x\n"] * 50)
    body = RENAMED.splitlines(keepends=True)[:5]
    body[2] = body[2].replace("width", "w")
    fake.enqueue(["```python\n", *body, "```\n"])
    nexted = editor(fake)
    first = asyncio.ensure_future(nexted.predict(DOC, AT + 1, SETTINGS))
    await started(fake)
    second = await nexted.predict(DOC, AT + 1, SETTINGS)
    assert await first is None
    assert second is not None and second.shown


# -- confidence from the log-probabilities of the change's tokens -------------

WINDOW = "def area(w, height):\n    scale = 2\n    return width * height * scale\n"
"""The window as the model sees it, after the user renamed ``width`` to ``w``."""
TOKENS = [
    ("```python\n", -0.3),
    ("def", -0.01),
    (" area", -0.01),
    ("(w", -0.01),
    (",", -0.01),
    (" height", -0.01),
    ("):\n", -0.01),
    ("    scale", -0.01),
    (" =", -0.01),
    (" ", -0.01),
    ("3", -1.5),  # an unasked change: 2 -> 3
    ("\n", -0.01),
    ("    return", -0.01),
    (" w", -0.7),  # the next use renamed: ``w``, not `` width``
    (" *", -0.02),
    (" height", -0.01),
    (" *", -0.01),
    (" scale", -0.01),
    ("\n", -0.01),
    ("```", -0.05),
]
"""A chat answer, token by token, with each token's log-probability."""


def scored(tokens: list[tuple[str, float]]) -> tuple[str, list[int], list[float]]:
    """The answer text, its tokens' offsets and their log-probabilities."""
    offsets, at = [], 0
    for text, _ in tokens:
        offsets.append(at)
        at += len(text)
    return "".join(t for t, _ in tokens), offsets, [lp for _, lp in tokens]


def test_the_change_logprobs_are_those_of_the_tokens_that_wrote_it() -> None:
    answer, offsets, logprobs = scored(TOKENS)
    at = prompts.rewrite_offset("chat", answer)
    assert at == len("```python\n")
    rewrite = answer[at : answer.index("```", at)]
    # Two changes: "2" -> "3" (its one token) and "idth" left out after " w"
    # (the tokens either side of the deletion); not the copied tokens around.
    assert gate.change_logprobs(WINDOW, rewrite, answer, at, offsets, logprobs) == [
        -1.5,
        -0.7,
        -0.02,
    ]
    # Of one change: the lines it replaces in the window.
    assert gate.change_logprobs(
        WINDOW, rewrite, answer, at, offsets, logprobs, (1, 1)
    ) == [-1.5]
    assert gate.change_logprobs(
        WINDOW, rewrite, answer, at, offsets, logprobs, (2, 2)
    ) == [-0.7, -0.02]
    no_change = WINDOW.replace("return width", "return w").replace("= 2", "= 3")
    assert gate.change_logprobs(no_change, rewrite, answer, at, offsets, logprobs) == []
    assert gate.change_logprobs(WINDOW, rewrite, answer, at, [], []) == []


def test_indentation_the_rewrite_changed_is_no_part_of_the_change() -> None:
    # The model answered with every line indented one level more: reindented to
    # fit the document, that is no change; only the rename's tokens count.
    tokens = [
        (("    " + text) if text.startswith(("def", "    ")) else text, lp)
        for text, lp in TOKENS
        if text != "3"
    ]
    tokens.insert(10, ("2", -0.01))
    answer, offsets, logprobs = scored(tokens)
    at = prompts.rewrite_offset("chat", answer)
    assert at is not None
    rewrite = answer[at : answer.index("```", at)]
    assert "        return w *" in rewrite
    assert gate.change_logprobs(WINDOW, rewrite, answer, at, offsets, logprobs) == [
        -0.7,
        -0.02,
    ]


def test_changes_in_the_lines_appended_from_the_window_have_no_tokens() -> None:
    # The model stopped after its first line; the pipeline took the rest from the
    # window as it was: nothing there was written by the model.
    answer, offsets, logprobs = scored(TOKENS[:7])
    at = prompts.rewrite_offset("chat", answer)
    assert at is not None
    rewrite = answer[at:] + "    scale = 2\n    return w * height * scale\n"
    assert gate.change_logprobs(WINDOW, rewrite, answer, at, offsets, logprobs) == []


class ScoredBackend(FakeBackend):
    """The fake backend reporting a log-probability per chunk (a chunk a token)."""

    def __init__(self, scores: dict[str, float]) -> None:
        super().__init__()
        self.scores = scores

    def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Replay the answer; record offsets and log-probabilities when asked."""
        stats = stats if stats is not None else GenerationStats()
        return self._scored(super().chat(req, stats), stats, req.logprobs)

    async def _scored(
        self, stream: AsyncGenerator[str, None], stats: GenerationStats, wanted: bool
    ) -> AsyncGenerator[str, None]:
        at = 0
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                if wanted:
                    stats.token_offsets.append(at)
                    stats.token_logprobs.append(self.scores.get(chunk, -0.01))
                at += len(chunk)
                yield chunk


RENAME_ANSWER = [
    "```python\n",
    "def area(w, height):\n",
    "    scale = 2\n",
    "    return",
    " w",
    " * height * scale\n",
    "\n",
    "\n",
    "```\n",
]


@pytest.mark.parametrize(
    ("logprob", "shown"),
    [pytest.param(-0.1, True, id="sure"), pytest.param(-4.0, False, id="unsure")],
)
async def test_pipeline_confidence_is_the_change_tokens_probability(
    logprob: float, shown: bool
) -> None:
    fake = ScoredBackend({" w": logprob, " * height * scale\n": -0.05})
    fake.enqueue(RENAME_ANSWER)
    nexted = editor(fake)
    settings = NextEditSettings(lines_before=1, lines_after=4, min_confidence=0.5)
    prediction = await nexted.predict(DOC, AT + 1, settings)
    assert prediction is not None
    [req] = fake.requests
    assert isinstance(req, ChatRequest) and req.logprobs
    # The copied tokens (-0.01 each, far more of them) do not dilute it.
    assert prediction.logprobs == (logprob, -0.05)
    sure = math.exp((logprob - 0.05) / 2)
    assert prediction.confidence == pytest.approx(math.sqrt(0.9 * sure))
    assert prediction.shown is shown
    assert nexted.stats.last["confidenceFrom"] == "logprobs"
    assert "token_logprobs" not in nexted.stats.last


async def test_pipeline_without_logprobs_falls_back_to_the_heuristic() -> None:
    fake = FakeBackend()
    fake.enqueue(RENAME_ANSWER)
    nexted = editor(fake)
    prediction = await nexted.predict(DOC, AT + 1, SETTINGS)
    assert prediction is not None and prediction.shown
    assert prediction.logprobs == () and prediction.confidence == 0.9
    assert nexted.stats.last["confidenceFrom"] == "heuristic"


def test_lines_written_past_the_window_end_have_no_tokens() -> None:
    # The model changed the last line and wrote one more after the window: the
    # gate drops that line, so its tokens must not pull the confidence down.
    window = "a = 1\nb = 2\n"
    answer, offsets, logprobs = scored(
        [("a = 1\n", -0.01), ("b = ", -0.01), ("3", -0.2), ("\n", -0.01),
         ("c = 4", -3.0), ("\n", -0.01)]
    )  # fmt: skip
    assert gate.change_logprobs(window, answer, answer, 0, offsets, logprobs) == [-0.2]
    # Nothing changed but the line written on: no tokens.
    copied, offsets, logprobs = scored([("a = 1\nb = 2\n", -0.01), ("c = 4\n", -3.0)])
    assert gate.change_logprobs(window, copied, copied, 0, offsets, logprobs) == []


def test_a_change_no_reported_token_wrote_is_not_trusted_more_than_the_heuristic() -> (
    None
):
    text = "def area(w, height):\n    return width * height\n"
    window = (0, len(text))
    rename = text.replace("return width", "return w")
    alone = gate.judge(text, window, rename, None, None, 0)
    unmapped = gate.judge(text, window, rename, None, None, 0, lambda _: [], True)
    assert alone.source == "heuristic" and unmapped.source == "unmapped"
    assert unmapped.confidence == pytest.approx(
        min(alone.confidence, math.sqrt(alone.confidence * gate.UNMAPPED_CERTAINTY))
    )
    assert unmapped.confidence <= alone.confidence
    mapped = gate.judge(text, window, rename, None, None, 0, lambda _: [-0.01], True)
    assert mapped.source == "logprobs" and mapped.confidence > unmapped.confidence


def test_zeta_change_logprobs_skip_the_echoed_cursor_mark() -> None:
    window = "def area(w, height):\n    return width * height\n"
    answer, offsets, logprobs = scored(
        [("<|editable_region_start|>\n", -0.01), ("def area(w", -0.01),
         ("<|user_cursor_is_here|>", -0.01), (", height):\n", -0.01),
         ("    return", -0.01), (" w", -3.0), (" * height\n", -0.01)]
    )  # fmt: skip
    stats = GenerationStats(token_logprobs=logprobs, token_offsets=offsets)
    lines = window.splitlines(keepends=True)
    rewrite = window.replace("return width", "return w")
    scores = change_logprobs("zeta", lines, rewrite, answer, stats)
    # The tokens either side of "idth" left out, though they come after the mark.
    assert scores == [-3.0, -0.01]


def test_at_the_default_threshold_only_changes_that_carry_on_the_edit_pass() -> None:
    text = "def area(w, height):\n    return width * height\n"
    window = (0, len(text))
    unrelated = text.replace("height\n", "height + 1\n")  # no edit to carry on
    sure = gate.judge(text, window, unrelated, None, None, 0, lambda _: [0.0], True)
    assert sure.confidence < NextEditSettings().min_confidence  # however sure
