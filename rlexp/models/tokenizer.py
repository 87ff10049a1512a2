"""A character-level tokenizer for the embedded tasks, built offline with ``tokenizers``.

Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then one id per alphabet character in
order. ``tokenizer(text)`` adds *no* special tokens: callers prepend ``bos_token_id`` to prompts
and append ``eos_token_id`` to SFT targets themselves, so BOS/EOS can never be doubled.
Characters outside the alphabet map to ``<unk>`` (dropped by ``decode(skip_special_tokens=True)``).
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from rlexp.data.tasks.base import DEFAULT_ALPHABET

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "unk_token": "<unk>",
}


def build_char_tokenizer(
    alphabet: str = DEFAULT_ALPHABET, padding_side: str = "right"
) -> PreTrainedTokenizerFast:
    """One token per character; ``decode(encode(s)) == s`` for any ``s`` over ``alphabet``."""
    chars = list(dict.fromkeys(alphabet))  # drop repeats, keep order
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS.values(), *chars])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # concatenate, no spaces between tokens
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
        add_eos_token=False,
        **SPECIAL_TOKENS,
    )
