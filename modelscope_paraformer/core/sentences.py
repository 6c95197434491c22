"""Sentences from punctuation: cut a timed token sequence after every sentence-ending or pausing mark.

This is FunASR's ``sentence_info``: one entry per stretch of tokens that the punctuation model closed with a
mark (comma, full stop, question mark, enumeration comma), with its text (the mark included), start and end
(ms) and the timestamps of its tokens. Latin words are separated by spaces, CJK characters run together.
"""
from __future__ import annotations

from typing import Optional, Sequence

NO_PUNCTUATION = 1  # CT-Transformer's class for "no mark after this token" (0 is <unk>)
CJK_MARKS = {2: "，", 3: "。", 4: "？", 5: "、"}  # class -> mark, after CJK text (FunASR's sentence splitter)


def _is_latin(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


def split_sentences(tokens: Sequence[str], timestamps: Sequence[Sequence[int]],
                    punctuation: Optional[Sequence[int]], raw_text: bool = False) -> list[dict]:
    """``[{"text", "start", "end", "timestamp"(, "raw_text")}]`` for ``tokens`` with one [start, end] (ms) each
    and one punctuation class each (``punctuation``: CT-Transformer's ``punc_array``).

    Without punctuation everything is one sentence; without timestamps there are no sentences. A final
    stretch that no mark closes is not a sentence (FunASR drops it too: its punctuation model always closes
    the text with a mark). Lengths that disagree are aligned from the start, as FunASR does.
    """
    if not tokens or not timestamps:
        return []
    if not punctuation:
        return [{"text": list(tokens), "start": timestamps[0][0], "end": timestamps[-1][1],
                 "timestamp": [list(t) for t in timestamps]}]
    sentences: list[dict] = []
    text, stamps, start, end = "", [], timestamps[0][0], timestamps[0][1]
    for index in range(max(len(tokens), len(timestamps), len(punctuation))):
        token = tokens[index] if index < len(tokens) else None
        stamp = list(timestamps[index]) if index < len(timestamps) else None
        mark = int(punctuation[index]) if index < len(punctuation) else NO_PUNCTUATION
        if start is None and stamp is not None:
            start = stamp[0]
        if token is not None:
            text += " " + token if _is_latin(token[0]) or (text and _is_latin(text[-1])) else token
        stamps.append(stamp)
        end = stamp[1] if stamp is not None else end
        if mark > NO_PUNCTUATION:
            sentence = {"text": text + CJK_MARKS.get(mark, ""), "start": start, "end": end, "timestamp": stamps}
            if raw_text:  # the words as recognised: FunASR's, except that it glues latin words together
                sentence["raw_text"] = text.lstrip()
            sentences.append(sentence)
            text, stamps, start = "", [], None
    return sentences
