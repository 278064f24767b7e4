"""In-memory word-level tokenizers of the random models (``tiny``, ``7b``): a few prompt words, the families'
special tokens, and filler ids up to the vocabulary size. Nothing is downloaded."""
from __future__ import annotations

from typing import Sequence

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VOCAB_SIZE = 32000
WORDS = (
    "a an the is are there in on of and to with this that image picture photo describe please detail detailed "
    "chat between curious user human artificial intelligence assistant gives helpful polite answers questions "
    "user's human's USER ASSISTANT yes no dog cat man woman table car tree sky . , ? : ' \n"
).split(" ")


def word_vocabulary(first: Sequence[str], vocab_size: int, filler: str = "w") -> dict[str, int]:
    """``first`` (in order, without repeats), then filler words ``w<id>`` up to ``vocab_size`` ids."""
    vocab: dict[str, int] = {}
    for word in first:
        vocab.setdefault(word, len(vocab))
    for index in range(len(vocab), vocab_size):
        vocab[f"{filler}{index}"] = index
    return vocab


def toy_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a few prompt words plus filler ids; adds BOS like the Llama tokenizer."""
    vocab = word_vocabulary(["<unk>", "<s>", "</s>", *WORDS], vocab_size)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def toy_qformer_tokenizer(vocab_size: int) -> BertTokenizerFast:
    """A small BERT-style tokenizer for the Q-Former's copy of the question."""
    vocab = word_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(w.lower() for w in WORDS)], vocab_size, "q")
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)  # as BERT's uncased tokenizer, saved or not
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return BertTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
