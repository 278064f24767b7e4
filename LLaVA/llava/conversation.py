"""Conversation templates, as in upstream LLaVA (``llava/conversation.py``), limited to those the papers use.

``vicuna_v1`` is SPARC's template, ``llava_v1`` AvisC's; they differ only in the system prompt ("user" versus
"human"). Both use the two-separator style: ``" "`` after a user turn, ``"</s>"`` after an assistant turn.

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

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        seps = [self.sep, self.sep2]
        prompt = self.system + seps[0]
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

conv_templates: dict[str, Conversation] = {
    "vicuna_v1": conv_vicuna_v1,
    "llava_v1": conv_llava_v1,
}
default_conversation = conv_vicuna_v1


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of template ``name``; a clear error lists the known names."""
    try:
        return conv_templates[name].copy()
    except KeyError:
        raise ValueError(f"unknown conv mode {name!r}; known: {', '.join(sorted(conv_templates))}") from None
