"""Fill-in-the-middle prompt formats per model family, and their detection.

A prompt is rendered as a list of parts: ``Special`` parts are control tokens that
the backend maps to token ids; plain ``str`` parts are user text, tokenized with
special-token parsing off, so code that happens to contain ``<|fim_prefix|>`` can
never inject control tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import attrs

from tandem.context.builder import ContextFile


@attrs.frozen
class Special:
    """A control token, named by its text in the model's vocabulary."""

    text: str


Part = Special | str


@attrs.frozen
class FimFormat:
    """How one model family marks prefix, suffix and middle."""

    family: str
    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...] = ()
    """Control tokens that end a completion besides the model's EOS/EOT."""
    file_sep: str | None = None
    """File-level marker (repository-level pretraining), followed by the path."""
    repo_name: str | None = None
    file_blocks: bool = True
    """Lay the context out as ``file_sep`` blocks (the repository-level layout of
    pretraining) and mark the current file; false: as a comment block at the top
    of the prefix, with no markers (as for formats without them)."""
    order: Literal["psm", "spm"] = "psm"

    def render(
        self,
        prefix: str,
        suffix: str,
        path: str | None = None,
        context: Sequence[ContextFile] = (),
        repo: str | None = None,
        comment: str = "#",
    ) -> list[Part]:
        """Lay out one FIM prompt.

        Stable parts first (repository name, other files' definitions), the
        volatile text at the cursor last, so consecutive prompts share a prefix.
        Formats without file markers, or not laid out in file blocks, get the
        context as a comment block.
        """
        parts: list[Part] = []
        if self.file_sep is not None and self.file_blocks:
            if self.repo_name is not None and repo and context:
                parts += [Special(self.repo_name), f"{repo}\n"]
            for item in context:
                parts += [Special(self.file_sep), f"{item.path}\n{item.text}\n"]
            if path:
                parts += [Special(self.file_sep), f"{path}\n"]
        else:
            prefix = comment_block(context, comment) + prefix
        if self.order == "spm":
            parts += [Special(self.suffix), suffix, Special(self.prefix), prefix]
            parts.append(Special(self.middle))
            return parts
        parts += [Special(self.prefix), prefix, Special(self.suffix), suffix]
        parts.append(Special(self.middle))
        return parts

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Every control token this format needs the vocabulary to have."""
        return (self.prefix, self.suffix, self.middle)


QWEN = FimFormat(
    family="qwen",
    prefix="<|fim_prefix|>",
    suffix="<|fim_suffix|>",
    middle="<|fim_middle|>",
    stop=(
        "<|endoftext|>",
        "<|fim_pad|>",
        "<|file_sep|>",
        "<|repo_name|>",
        "<|im_end|>",
        "<|fim_prefix|>",
    ),
    file_sep="<|file_sep|>",
    repo_name="<|repo_name|>",
    # Measured (benchmarks/README.md, session 13): with a long window (a fast
    # machine, or a grown one) the file blocks cost whole lines (edit similarity
    # 0.396 against 0.455 as comments, Qwen2.5-Coder-0.5B); at a short one the two
    # tie, and member hits hold (1.5B: 16 against 13 of 25 with comments).
    file_blocks=False,
)
CODEGEMMA = FimFormat(
    family="codegemma",
    prefix="<|fim_prefix|>",
    suffix="<|fim_suffix|>",
    middle="<|fim_middle|>",
    stop=("<|file_separator|>", "<|fim_prefix|>", "<end_of_turn>", "<eos>"),
    file_sep="<|file_separator|>",
)
STARCODER = FimFormat(
    family="starcoder",
    prefix="<fim_prefix>",
    suffix="<fim_suffix>",
    middle="<fim_middle>",
    stop=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_pad>"),
    file_sep="<file_sep>",
    repo_name="<repo_name>",
)
CODELLAMA = FimFormat(
    family="codellama",
    prefix="<PRE>",
    suffix="<SUF>",
    middle="<MID>",
    stop=("<EOT>",),
)
DEEPSEEK = FimFormat(
    family="deepseek",
    prefix="<｜fim▁begin｜>",  # noqa: RUF001 - the model's own full-width bars
    suffix="<｜fim▁hole｜>",  # noqa: RUF001
    middle="<｜fim▁end｜>",  # noqa: RUF001
    stop=("<|EOT|>", "<｜end▁of▁sentence｜>"),  # noqa: RUF001
)

FORMATS: dict[str, FimFormat] = {
    f.family: f for f in (QWEN, CODEGEMMA, STARCODER, CODELLAMA, DEEPSEEK)
}

# Architectures (GGUF ``general.architecture``) that were never trained for FIM even
# though their tokenizer may carry FIM tokens (SmolLM2 reuses StarCoder's vocab).
_NO_FIM_ARCHS = frozenset({"llama", "smollm", "phi3", "mistral"})
_CODE_MODEL_NAMES = ("code", "coder")

FIM_ROLES = ("pre", "suf", "mid", "pad", "rep", "sep")
"""The FIM token roles llama.cpp reports (``llama_vocab_fim_pre`` and so on)."""

SPM_SPACE = "\u2581"
"""SentencePiece's word-start mark: CodeLlama's FIM tokens are ``▁<PRE>`` etc."""


def comment_block(context: Sequence[ContextFile], comment: str = "#") -> str:
    """Context as comments, for prompts without file markers."""
    lines: list[str] = []
    for item in context:
        lines.append(f"{comment} From {item.path}:")
        lines += [f"{comment} {line}".rstrip() for line in item.text.split("\n")]
    return "\n".join(lines) + "\n\n" if lines else ""


def _plain(text: str) -> str:
    """A token text without SentencePiece's leading word mark, for comparison."""
    return text.removeprefix(SPM_SPACE).strip()


def vocab_text(text: str, has_token: Callable[[str], bool]) -> str | None:
    """The vocabulary's own spelling of control token ``text``, if it has one.

    SentencePiece vocabularies may carry it with the word mark (``▁<EOT>``).
    """
    for candidate in (text, SPM_SPACE + text):
        if has_token(candidate):
            return candidate
    return None


def _family(
    reported: Mapping[str, str], has_token: Callable[[str], bool], arch: str
) -> FimFormat | None:
    """The table's family whose prefix/suffix/middle texts llama.cpp reported."""
    found = tuple(_plain(reported[r]) for r in ("pre", "suf", "mid"))
    for fmt in FORMATS.values():
        if (fmt.prefix, fmt.suffix, fmt.middle) != found:
            continue
        if fmt.prefix == "<|fim_prefix|>":
            # Qwen and CodeGemma share the FIM token texts; tell them apart.
            is_gemma = arch.startswith("gemma") or has_token("<|file_separator|>")
            return CODEGEMMA if is_gemma else QWEN
        return fmt
    return None


def adapt(
    fmt: FimFormat, reported: Mapping[str, str], has_token: Callable[[str], bool]
) -> FimFormat | None:
    """``fmt`` spelled in this vocabulary's own token texts; None if it lacks them.

    ``reported`` maps FIM roles to the token texts llama.cpp found (they win);
    the table supplies what llama.cpp does not say: file and repository
    markers it does not know, and stop tokens.
    """
    texts: dict[str, str] = {}
    for role, name in (("pre", "prefix"), ("suf", "suffix"), ("mid", "middle")):
        ours: str = getattr(fmt, name)
        theirs = reported.get(role)
        text = (
            theirs
            if theirs is not None and _plain(theirs) == ours
            else vocab_text(ours, has_token)
        )
        if text is None:
            return None
        texts[name] = text
    markers: dict[str, str | None] = {}
    for role, name in (("sep", "file_sep"), ("rep", "repo_name")):
        ours_marker: str | None = getattr(fmt, name)
        theirs = reported.get(role)
        if ours_marker is None:
            markers[name] = None
        elif theirs is not None and _plain(theirs) == ours_marker:
            markers[name] = theirs
        else:
            markers[name] = vocab_text(ours_marker, has_token)
    stop = [t for s in fmt.stop if (t := vocab_text(s, has_token)) is not None]
    stop += [reported[r] for r in ("pad", "rep", "sep") if r in reported]
    return attrs.evolve(
        fmt,
        prefix=texts["prefix"],
        suffix=texts["suffix"],
        middle=texts["middle"],
        file_sep=markers["file_sep"],
        repo_name=markers["repo_name"] if markers["file_sep"] else None,
        stop=tuple(dict.fromkeys(stop)),
    )


def detect(
    reported: Mapping[str, str],
    has_token: Callable[[str], bool],
    architecture: str = "",
    model_name: str = "",
) -> FimFormat | None:
    """Pick the FIM format from what llama.cpp says of the vocabulary.

    ``reported`` maps the roles of ``FIM_ROLES`` to the token texts llama.cpp
    found (``llama_vocab_fim_pre`` and so on); ``has_token(text)`` says whether
    ``text`` is exactly one token of the vocabulary. The family table adds what
    llama.cpp does not say: which family's markers and stop tokens go with
    those tokens, and which architectures were never trained for FIM. A
    vocabulary with FIM tokens of no known family gets a format of its own from
    llama.cpp's tokens. Returns ``None`` for models without FIM: they complete
    from the prefix alone.
    """
    arch = architecture.lower()
    name = model_name.lower()
    fmt: FimFormat | None
    if all(r in reported for r in ("pre", "suf", "mid")):
        fmt = _family(reported, has_token, arch) or FimFormat(
            family=f"llama.cpp:{arch or 'unknown'}",
            prefix=_plain(reported["pre"]),
            suffix=_plain(reported["suf"]),
            middle=_plain(reported["mid"]),
            file_sep=_plain(reported["sep"]) if "sep" in reported else None,
            repo_name=_plain(reported["rep"]) if "rep" in reported else None,
        )
    else:
        # A llama.cpp that does not know this family's tokens: ask the table.
        fmt = next(
            (
                f
                for f in FORMATS.values()
                if all(vocab_text(t, has_token) for t in f.special_tokens)
            ),
            None,
        )
        if fmt is not None and fmt.prefix == "<|fim_prefix|>":
            fmt = _family(
                {"pre": fmt.prefix, "suf": fmt.suffix, "mid": fmt.middle},
                has_token,
                arch,
            )
    if fmt is None:
        return None
    general = arch in _NO_FIM_ARCHS and fmt.family != CODELLAMA.family
    if general and not any(n in name for n in _CODE_MODEL_NAMES):
        # A general chat model whose vocab happens to hold FIM tokens.
        return None
    return adapt(fmt, reported, has_token)


def by_name(name: str) -> FimFormat | None:
    """Look up a family named in settings; ``none`` turns FIM off."""
    if name == "none":
        return None
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(["auto", "none", *FORMATS])
        raise ValueError(f"unknown FIM format {name!r}; use one of: {known}") from None
