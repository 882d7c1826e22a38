"""Fill-in-the-middle prompt formats per model family, and their detection.

A prompt is rendered as a list of parts: ``Special`` parts are control tokens that
the backend maps to token ids; plain ``str`` parts are user text, tokenized with
special-token parsing off, so code that happens to contain ``<|fim_prefix|>`` can
never inject control tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        Formats without file markers get the context as a comment block.
        """
        parts: list[Part] = []
        if self.file_sep is not None:
            if self.repo_name is not None and repo and context:
                parts += [Special(self.repo_name), f"{repo}\n"]
            for item in context:
                parts += [Special(self.file_sep), f"{item.path}\n{item.text}\n"]
        else:
            prefix = comment_block(context, comment) + prefix
        if self.file_sep is not None and path:
            parts += [Special(self.file_sep), f"{path}\n"]
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


def comment_block(context: Sequence[ContextFile], comment: str = "#") -> str:
    """Context as comments, for prompts without file markers."""
    lines: list[str] = []
    for item in context:
        lines.append(f"{comment} From {item.path}:")
        lines += [f"{comment} {line}".rstrip() for line in item.text.split("\n")]
    return "\n".join(lines) + "\n\n" if lines else ""


def detect(
    has_token: Callable[[str], bool],
    architecture: str = "",
    model_name: str = "",
    candidates: Sequence[FimFormat] = tuple(FORMATS.values()),
) -> FimFormat | None:
    """Pick the FIM format from the model's vocabulary and GGUF metadata.

    ``has_token(text)`` says whether ``text`` is a single control token of the
    model. Returns ``None`` for models without FIM: they complete from the
    prefix alone.
    """
    arch = architecture.lower()
    name = model_name.lower()
    for fmt in candidates:
        if not all(has_token(t) for t in fmt.special_tokens):
            continue
        general = arch in _NO_FIM_ARCHS and fmt is not CODELLAMA
        if general and not any(n in name for n in _CODE_MODEL_NAMES):
            # A general chat model whose vocab happens to hold FIM tokens.
            return None
        if fmt.prefix == "<|fim_prefix|>":
            # Qwen and CodeGemma share the FIM token texts; tell them apart.
            is_gemma = arch.startswith("gemma") or has_token("<|file_separator|>")
            return CODEGEMMA if is_gemma else QWEN
        return fmt
    return None


def by_name(name: str) -> FimFormat | None:
    """Look up a family named in settings; ``none`` turns FIM off."""
    if name == "none":
        return None
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(["auto", "none", *FORMATS])
        raise ValueError(f"unknown FIM format {name!r}; use one of: {known}") from None
