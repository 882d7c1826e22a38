"""Chat fills streamed: code fences stripped piece by piece, as from the whole text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from hypothesis import given
from hypothesis import strategies as st

from tandem.backends.base import ChatRequest, GenerateRequest, GenerationStats
from tandem.backends.remote import FenceStripper, fill_by_chat, strip_fences

ANSWERS = [
    "```python\nreturn a + b\n```",
    "```\nreturn a + b\n```\n",
    "  \n```py\n    x = 1\n    y = 2\n```  ",
    "return a + b",
    "\n    return a + b",
    "x = `cmd`\n",
    "x = ``\ny",
    "```python\nprint('```')\n```",
    "code\n```\nThis code adds.",
    "``not a fence",
    "```",
    "```python\n```",
    "`",
    "\n",
    "",
]


def streamed(chunks: list[str]) -> str:
    fences = FenceStripper()
    return "".join(fences.feed(chunk) for chunk in chunks) + fences.end()


def test_known_answers_in_every_split_of_three() -> None:
    for answer in ANSWERS:
        for i in range(len(answer) + 1):
            for j in range(i, len(answer) + 1):
                chunks = [answer[:i], answer[i:j], answer[j:]]
                assert streamed(chunks) == strip_fences(answer), (answer, chunks)


PIECES = st.sampled_from(["`", "```", "\n", " ", "a", "py"])


@given(st.lists(st.lists(PIECES, max_size=4).map("".join), max_size=12))
def test_any_stream_gives_what_the_whole_answer_gives(chunks: list[str]) -> None:
    assert streamed(chunks) == strip_fences("".join(chunks))


def test_text_is_passed_on_before_the_answer_ends() -> None:
    fences = FenceStripper()
    assert fences.feed("```python\n") == ""
    assert fences.feed("return a") == "return a"
    assert fences.feed(" + b\n") == " + b"  # the newline may open a closing fence
    assert fences.feed("```") == ""
    assert fences.end() == ""


async def test_fill_by_chat_yields_each_piece_as_the_model_sends_it() -> None:
    release = asyncio.Event()

    async def chat(
        req: ChatRequest, stats: GenerationStats | None
    ) -> AsyncGenerator[str, None]:
        yield "```python\n"
        yield "return "
        await release.wait()  # the rest comes much later
        yield "a + b\n```"

    fill = fill_by_chat(chat, GenerateRequest("def f(a, b):\n    ", "\n"), None)
    assert await anext(fill) == "return "  # before the answer is complete
    release.set()
    assert [chunk async for chunk in fill] == ["a + b"]
