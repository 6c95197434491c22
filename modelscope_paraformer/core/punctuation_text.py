"""The text side of CT-Transformer punctuation (pure python): words in, punctuated text and classes out.

FunASR's rules, kept exactly because its outputs are the reference:

- Words: whitespace splits the text; inside a piece every non-ASCII character is a word of its own and a run
  of ASCII characters is one word. Word-level models (``ct-punc``, with a ``jieba_usr_dict``) segment the
  non-English pieces with jieba instead (:class:`JiebaSegmenter`).
- The words are cut into mini-sentences of ``split_size`` words. Each is classified together with the
  words left over from the previous one: everything up to the last full stop / question mark is emitted,
  the rest is carried into the next (or, once the carry grows past 200 words, everything up to its last
  comma, which becomes a full stop).
- Output text: ASCII words are separated by spaces and get ASCII marks (, . ?); offline, a word that starts
  a mini-sentence or follows a sentence end is capitalised (``str.capitalize``: the rest is lowercased) and
  the text always ends with a sentence mark.
- Streaming (the vad_realtime model): the words after the last sentence end are kept in the cache and
  classified again, in front of the next call's text, without being emitted twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .errors import ParaformerError

Predict = Callable[[Sequence[int], int], list[int]]  # (token ids, vad index) -> one class per id

CARRY_LIMIT = 200  # FunASR's cache_pop_trigger_limit: a carry longer than this is cut at its last comma
FULL_STOP, QUESTION, COMMA, ENUMERATION_COMMA, NO_MARK = "。", "？", "，", "、", "_"
SENTENCE_ENDS = (FULL_STOP, QUESTION)
ASCII_MARKS = {COMMA: ",", FULL_STOP: ".", QUESTION: "?"}
CACHE_KEY = "pre_text"  # where FunASR's streaming model keeps the carried words in the caller's cache dict
_ENGLISH_WORD = re.compile(r"^[a-zA-Z']+$")


class PunctuationTextError(ParaformerError, ValueError):
    """The text or the streaming cache cannot be punctuated as given."""


@dataclass
class PunctuatedText:
    """``text`` with punctuation, and ``punc_array``: the class (index into ``punc_list``) of each word."""

    text: str
    punc_array: list[int] = field(default_factory=list)


def starts_ascii(word: str) -> bool:
    """FunASR's test for a Latin word: its first character is one UTF-8 byte."""
    return len(word[0].encode()) == 1


def split_words(text: str) -> list[str]:
    """Character-level words: each non-ASCII character alone, runs of ASCII characters together."""
    words = []
    for piece in text.split():
        run = ""
        for char in piece:
            if len(char.encode()) == 1:
                run += char
                continue
            if run:
                words.append(run)
                run = ""
            words.append(char)
        if run:
            words.append(run)
    return words


class JiebaSegmenter:
    """Word-level splitting for ``ct-punc``: English words as they are, the other pieces cut by jieba (no HMM)
    with the model's ``jieba_usr_dict`` added to jieba's own dictionary."""

    def __init__(self, user_dict: str | Path):
        try:
            import jieba
        except ImportError:
            raise PunctuationTextError(f"{user_dict}: this punctuation model segments words with jieba; "
                                       "install it (pip install jieba)") from None
        jieba.setLogLevel(40)  # jieba logs its dictionary loading at INFO/DEBUG through its own handler
        self.tokenizer = jieba.Tokenizer()  # a private instance: the process-wide jieba.dt stays untouched
        try:
            self.tokenizer.load_userdict(str(user_dict))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise PunctuationTextError(f"{user_dict}: cannot read the jieba user dictionary ({error})") from None

    def __call__(self, text: str) -> list[str]:
        words: list[str] = []
        group: list[str] = []
        for piece in text.split():  # consecutive pieces of one kind (English or not) form a group
            if group and bool(_ENGLISH_WORD.match(piece)) != bool(_ENGLISH_WORD.match(group[-1])):
                words.extend(self._segment(group))
                group = []
            group.append(piece)
        if group:
            words.extend(self._segment(group))
        return words

    def _segment(self, group: list[str]) -> list[str]:
        if _ENGLISH_WORD.match(group[0]):
            return group
        return list(self.tokenizer.cut("".join(group), HMM=False))


def mini_sentences(items: Sequence, size: int) -> list[list]:
    """``items`` in consecutive slices of ``size`` (the last one shorter); one (maybe empty) slice at least."""
    if size < 2:
        raise PunctuationTextError(f"split_size must be at least 2, got {size}")
    return [list(items[start:start + size]) for start in range(0, len(items), size)] or [[]]


def _carry_start(classes: list[int], carried_words: int, punc_list: Sequence[str], sentence_end_id: int) -> int:
    """Where the words to carry into the next mini-sentence begin: after the last sentence end (the last
    word and the first two are never considered); a long carry is cut at its last comma, which ``classes``
    then marks as a sentence end."""
    last_comma = -1
    for index in range(len(classes) - 2, 1, -1):
        mark = punc_list[classes[index]]
        if mark in SENTENCE_ENDS:
            return index + 1
        if last_comma < 0 and mark == COMMA:
            last_comma = index
    if carried_words > CARRY_LIMIT and last_comma >= 0:
        classes[last_comma] = sentence_end_id
        return last_comma + 1
    return 0


def _classify(words: list[str], ids: list[int], predict: Predict, split_size: int, punc_list: Sequence[str],
              sentence_end_id: int, vad_index: int = 0) -> list[tuple[list[str], list[int]]]:
    """Classify mini-sentence by mini-sentence, carrying unfinished sentences over; the (words, classes)
    emitted per mini-sentence (the last one emits everything left)."""
    word_slices, id_slices = mini_sentences(words, split_size), mini_sentences(ids, split_size)
    carry_words: list[str] = []
    carry_ids: list[int] = []
    emitted = []
    for number, (slice_words, slice_ids) in enumerate(zip(word_slices, id_slices)):
        chunk_words, chunk_ids = carry_words + slice_words, carry_ids + slice_ids
        classes = predict(chunk_ids, vad_index)
        if number < len(word_slices) - 1:
            cut = _carry_start(classes, len(chunk_words), punc_list, sentence_end_id)
            carry_words, carry_ids = chunk_words[cut:], chunk_ids[cut:]
            chunk_words, classes = chunk_words[:cut], classes[:cut]
        emitted.append((chunk_words, classes))
    return emitted


def _close_text(text: str, classes: list[int], sentence_end_id: int) -> str:
    """End the text with a sentence mark as FunASR does: a trailing comma becomes a full stop, otherwise a
    full stop is appended (CJK or ASCII after the last character's width); ``classes`` (the last mini-sentence's)
    get the sentence end on their last word."""
    last = text[-1]
    if last in (COMMA, ENUMERATION_COMMA):
        text = text[:-1] + FULL_STOP
    elif last == ",":
        text = text[:-1] + "."
    elif last not in SENTENCE_ENDS and len(last.encode()) != 1:
        text += FULL_STOP
    elif last not in (".", "?") and len(last.encode()) == 1:
        text += "."
    else:
        return text
    if classes:
        classes[-1] = sentence_end_id
    return text


def punctuate_offline(words: list[str], ids: list[int], predict: Predict, punc_list: Sequence[str],
                      sentence_end_id: int = 3, split_size: int = 20,
                      expand_words: bool = False) -> PunctuatedText:
    """FunASR ``CTTransformer.inference``: the punctuated text and the class of every word.

    ``expand_words`` (word-level models): ``punc_array`` gets one entry per character of each multi-character
    CJK word, "no mark" (1) before the word's own class on its last character.
    """
    if not words:
        return PunctuatedText("", [])
    emitted = _classify(words, ids, predict, split_size, punc_list, sentence_end_id)
    text, punc_array = "", []
    for number, (chunk_words, classes) in enumerate(emitted):
        pieces = []
        for index, word in enumerate(chunk_words):
            follows_end = index == 0 or punc_list[classes[index - 1]] in SENTENCE_ENDS
            if starts_ascii(word):
                if follows_end:
                    word = word.capitalize()
                if index == 0 or starts_ascii(chunk_words[index - 1]):
                    word = " " + word
            pieces.append(word)
            mark = punc_list[classes[index]]
            if mark != NO_MARK:
                pieces.append(ASCII_MARKS.get(mark, mark) if starts_ascii(word) else mark)
        text += "".join(pieces)
        if number == len(emitted) - 1:
            text = _close_text(text, classes, sentence_end_id)
        punc_array += classes
    if expand_words:
        punc_array = _expand_to_characters(words, punc_array)
    return PunctuatedText(text, punc_array)


def _expand_to_characters(words: list[str], classes: list[int]) -> list[int]:
    """One class per character of multi-character CJK words (FunASR's range starts at U+0E00, kept)."""
    expanded = []
    for word, mark in zip(words, classes):
        if "\u0e00" <= word[0] <= "\u9fa5" and len(word) > 1:
            expanded += [1] * (len(word) - 1)
        expanded.append(mark)
    return expanded


def punctuate_streaming(text: str, cache: dict, encode: Callable[[list[str]], list[int]], predict: Predict,
                        punc_list: Sequence[str], sentence_end_id: int = 3, split_size: int = 20) -> PunctuatedText:
    """FunASR ``CTTransformerStreaming.inference`` for one call: ``cache`` (the caller's dict, FunASR's
    layout: ``{"pre_text": [words]}``) carries the words after the last sentence end to the next call.

    The text returned is this call's words only, without a mark after its last word (the next call may
    decide it); ``punc_array`` is, as in FunASR, the classes of the last mini-sentence classified.
    """
    carried = cache.get(CACHE_KEY, [])
    if not isinstance(carried, list) or not all(isinstance(word, str) for word in carried):
        raise PunctuationTextError(f"cache[{CACHE_KEY!r}] must be the list of words a previous call left there; "
                                   "pass a new dict to start a new stream")
    if not text.strip():
        return PunctuatedText("", [])
    words = split_words("".join(carried) + " " + text)
    # every mini-sentence is told where the carried words end, as FunASR does (vad_indexes)
    emitted = _classify(words, encode(words), predict, split_size, punc_list, sentence_end_id,
                        vad_index=len(carried))
    all_words = [word for chunk_words, _ in emitted for word in chunk_words]
    marks = [punc_list[c] for _, classes in emitted for c in classes]
    pieces = []
    for index in range(len(all_words)):
        if index > 0 and starts_ascii(all_words[index]) and len(all_words[index - 1][-1].encode()) == 1:
            all_words[index] = " " + all_words[index]  # FunASR's cache keeps words with this space
        if index >= len(carried):
            pieces.append(all_words[index])
        # the last carried word's mark, which the previous call left out, opens this call's text
        if index >= len(carried) - 1 and marks[index] != NO_MARK:
            pieces.append(marks[index])
    out = "".join(pieces)
    last_end = next((index for index in range(len(marks) - 2, 1, -1) if marks[index] in SENTENCE_ENDS), -1)
    cache[CACHE_KEY] = all_words[last_end + 1:]
    if out and out[-1] in punc_list:
        out = out[:-1]
    return PunctuatedText(out, list(emitted[-1][1]))
