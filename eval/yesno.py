"""Reading answer files as the official pipelines read them: which fields hold the answer, how its text is cleaned,
and how yes/no is read from it. Every scorer that reads answers from a file (POPE, MME, AMBER, CHAIR) uses this one
module, so the rules have one home.

**Cleaning** (:func:`clean_answer`): every official runner that writes answers cleans the decoded text before it is
read or saved: ``strip()``, a trailing stop string ``</s>`` cut off, ``strip()`` again (AvisC ``mme_llava.py``
after ``batch_decode``; ``pope_eval_llavab.py`` and ``amber_eval_llava.py`` strip and cut; LAVIS InstructBLIP and
LLaVA's ``model_vqa`` strip). So an answer read from a file goes through the same cleaning: leading and trailing
whitespace of any kind (spaces, tabs, ``\\n``, ``\\r\\n``, Unicode spaces) is not part of the answer. (The POPE and
AMBER runners skip the second ``strip()``; it matters only for whitespace before a kept ``</s>``, which their own
decoding with ``skip_special_tokens=True`` never leaves.)

**Readings** (a cleaned answer -> ``"yes"``, ``"no"`` or ``"other"``):

* ``avisc``: AvisC's ``recorder`` (``pope_eval_llavab.py:100-142``, ``mme_llava.py:32-41``,
  ``amber_eval_llava.py:99-108``): remove ``.`` and ``,``, split on single spaces, and the answer is **no** when a word
  is ``No``, ``not``, ``no`` or ``NO`` or ends with ``n't``; every other answer, the empty one included, is **yes**.
  Case-sensitive as the official list is (``Not`` and ``NOT`` are not negative words); the whole answer is scanned
  ("Yes, there is a dog, but not a cat." is no); words are split on spaces only, as the official code does.
* ``eval_tool``: the MME eval tool's ``calculation.py`` (``calculate_metrics.parse_pred_ans``) on the lower-cased
  prediction: exactly ``yes``/``no``, else ``yes`` within the first 4 characters, else ``no`` within them, else
  **other**. Case-insensitive. On the eval tool's own ``{task}.txt`` files it reads the raw field, as the tool does
  (no cleaning).

>>> [read_answer(a) for a in ["No.\\n", "Yes\\n", "\\tno\\r\\n", "There isn't one.", "", "NOT sure"]]
['no', 'yes', 'no', 'no', 'yes', 'yes']
>>> [read_answer(a, "eval_tool") for a in ["YES, it is", "Nope", "There is no dog.", "yes, the 'no' sign"]]
['yes', 'no', 'other', 'yes']
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from eval.files import InputError

NEG_WORDS = frozenset({"No", "not", "no", "NO"})
STOP_STR = "</s>"  # llava_v1's sep2, cut from the end of the text by the official runners
READINGS: dict[str, str] = {
    "avisc": "AvisC recorder (NEG_WORDS: no if a word is No/not/no/NO or ends in n't, else yes) on the cleaned answer",
    "eval_tool": "MME eval tool parse_pred_ans (lower-cased; yes/no exactly, else yes/no in the first 4 characters, "
                 "else other)",
}
"""Reading name -> what it does; the name is written into every metrics file as ``"reading"``."""


def clean_answer(text: str) -> str:
    """The official runners' cleaning of a generated answer: strip, cut a trailing ``</s>``, strip."""
    text = text.strip()
    if text.endswith(STOP_STR):
        text = text[: -len(STOP_STR)]
    return text.strip()


def is_no(answer: str) -> bool:
    """True where AvisC's ``recorder`` reads the (cleaned) ``answer`` as a no."""
    words = answer.replace(".", "").replace(",", "").split(" ")
    return any(word in NEG_WORDS or word.endswith("n't") for word in words)


def avisc_label(answer: str) -> str:
    """``"no"`` or ``"yes"`` by AvisC's ``recorder`` (on a cleaned answer)."""
    return "no" if is_no(answer) else "yes"


def eval_tool_label(prediction: str) -> str:
    """``"yes"``, ``"no"`` or ``"other"`` by the MME eval tool's ``parse_pred_ans`` on ``prediction.lower()``."""
    prediction = prediction.lower()
    if prediction in ("yes", "no"):
        return prediction
    prefix = prediction[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


_RULES: dict[str, Callable[[str], str]] = {"avisc": avisc_label, "eval_tool": eval_tool_label}


def read_answer(text: str, reading: str = "avisc") -> str:
    """An answer read from an answers file: cleaned (:func:`clean_answer`), then read by ``reading``
    (``avisc`` or ``eval_tool``). Raises ``KeyError`` for an unknown reading."""
    return _RULES[reading](clean_answer(text))


def read_prediction_field(field: str, reading: str) -> str:
    """A prediction field of the MME eval tool's ``{task}.txt``: the tool's reading on the raw field; the AvisC
    reading (when asked for) on the cleaned field, as for any answer."""
    return eval_tool_label(field) if reading == "eval_tool" else read_answer(field, reading)


# ----------------------------------------------------------------------------------------------------------------
# Which fields hold the answer

ID_FIELD_GUESSES = ("question_id", "image_id", "id", "image", "image_file", "qid")
TEXT_FIELD_GUESSES = ("text", "caption", "answer", "response", "output", "prediction", "pred")


def fields_found(records: Iterable[tuple[Any, Mapping[str, Any]]]) -> list[str]:
    """Every field name used by the records, in first-seen order."""
    seen: dict[str, None] = {}
    for _, record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def require_fields(path: object, records: Sequence[tuple[Any, Mapping[str, Any]]],
                   needed: Mapping[str, tuple[Sequence[str], str]]) -> None:
    """Fail before any scoring when no record carries the fields a scorer needs.

    ``needed`` maps a role (``"image id"``, ``"caption"``) to ``(accepted field names, flag that names the field)``.
    A file with at least one record holding a field of every role passes (records that lack one are the scorer's
    per-record problems). Raises :class:`InputError` naming the file, the fields needed and found, and the flags
    with a guess at the found fields that fit (``--image_id_key question_id --caption_key text``).
    """
    if not records:
        return
    if any(all(any(name in record for name in names) for names, _ in needed.values()) for _, record in records):
        return
    found = fields_found(records)
    wanted = "; ".join(f"{role}: {' or '.join(repr(n) for n in names)}" for role, (names, _) in needed.items())
    guesses = []
    for role, (names, flag) in needed.items():
        if any(name in found for name in names):
            continue
        pool = ID_FIELD_GUESSES if "id" in role.split() else TEXT_FIELD_GUESSES
        guess = next((name for name in pool if name in found), "FIELD")
        guesses.append(f"{flag} {guess}")
    raise InputError(f"{path}: no record has the fields this scorer needs ({wanted}); fields found: "
                     f"{', '.join(found) or 'none'}; name them with {' '.join(guesses)}")
