"""Conversation templates, as in upstream LLaVA (``llava/conversation.py``), limited to those the papers use.

``vicuna_v1`` is SPARC's template, ``llava_v1`` AvisC's; they differ only in the system prompt ("user" versus
"human"). Both use the two-separator style: ``" "`` after a user turn, ``"</s>"`` after an assistant turn.
``pai`` is the template PAI's official code writes by hand (``constants.py``, ``chair_eval.py``): vicuna_v1's system
prompt with **no** separator before ``"USER:"``, and the image placeholder joined to the question by a space instead
of a newline. How the image and the question are joined is a property of the template (:attr:`Conversation.image_join`,
:meth:`Conversation.image_message`), so every family builds its prompt the same way.

>>> conv = conv_templates["vicuna_v1"].copy()
>>> conv.append_message(conv.roles[0], "<image>\\nPlease describe this image in detail.")
>>> conv.append_message(conv.roles[1], None)
>>> conv.get_prompt().split(" USER: ")[1]
'<image>\\nPlease describe this image in detail. ASSISTANT:'
"""
from __future__ import annotations

import dataclasses
from enum import Enum, auto


class SeparatorStyle(Enum):
    """How turns are joined (only upstream's ``TWO`` style is needed by the papers)."""

    TWO = auto()


@dataclasses.dataclass
class Conversation:
    """A chat history rendered into one prompt string."""

    system: str
    roles: tuple[str, str]
    messages: list[list[str | None]]
    sep_style: SeparatorStyle = SeparatorStyle.TWO
    sep: str = " "
    sep2: str = "</s>"
    version: str = "v1"
    system_sep: str | None = None
    """What follows the system prompt (``None``: ``sep``, as upstream)."""
    image_join: str = "\n"
    """What joins the image placeholder and the question in the first user message (upstream LLaVA: a newline)."""

    def image_message(self, image_token: str, question: str) -> str:
        """The first user message: the image placeholder, :attr:`image_join`, the question."""
        return f"{image_token}{self.image_join}{question}"

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        seps = [self.sep, self.sep2]
        prompt = self.system + (self.sep if self.system_sep is None else self.system_sep)
        for i, (role, message) in enumerate(self.messages):
            if message:
                prompt += f"{role}: {message}{seps[i % 2]}"
            else:
                prompt += f"{role}:"
        return prompt

    def copy(self) -> "Conversation":
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])


conv_vicuna_v1 = Conversation(
    system="A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    roles=("USER", "ASSISTANT"),
    messages=[],
)

conv_llava_v1 = Conversation(
    system="A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    roles=("USER", "ASSISTANT"),
    messages=[],
)

conv_pai = dataclasses.replace(conv_vicuna_v1, messages=[], system_sep="", image_join=" ")
"""PAI's hand-written prompt: ``SYSTEM + "USER: <image> <question> ASSISTANT:"`` (no space before ``USER:``, so it
tokenizes as ``USER``, ``:``; the image placeholder at index 34 of the ids for LLaVA-1.5)."""

conv_templates: dict[str, Conversation] = {
    "vicuna_v1": conv_vicuna_v1,
    "llava_v1": conv_llava_v1,
    "pai": conv_pai,
}
default_conversation = conv_vicuna_v1


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of template ``name``; a clear error lists the known names."""
    try:
        return conv_templates[name].copy()
    except KeyError:
        raise ValueError(f"unknown conv mode {name!r}; known: {', '.join(sorted(conv_templates))}") from None
