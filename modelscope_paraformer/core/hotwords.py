"""Hotwords for SeACo-Paraformer: the forms users give them in, as token id sequences (no torch here).

Forms, as FunASR's ``generate(hotword=...)`` reads them: a string of space-separated hotwords; the path of a
``.txt`` file with one hotword per line (a line may hold several space-separated words, e.g. an English phrase);
this package also takes a list of hotwords (each like a line of the file) and any ``os.PathLike`` as a file.
A word is split into tokens with the model dir's ``seg_dict`` when it has one (as FunASR does: the word itself,
else its characters if it is all CJK or digits, else ``<unk>``); without ``seg_dict`` a word is one token.
The list always ends with the ``<s>`` entry, the "no hotword" choice of the bias branch.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

from .errors import ParaformerError
from .tokenizer import CharTokenizer
from .transcript import SOS_ID

Hotwords = Union[str, os.PathLike, Sequence[str]]
_CJK_OR_DIGITS = re.compile(r"^[\u4E00-\u9FA50-9]+$")


class HotwordError(ParaformerError, ValueError):
    """Hotwords that cannot be read or tokenised."""


def read_seg_dict(path: Union[str, os.PathLike]) -> Optional[dict[str, list[str]]]:
    """A ``seg_dict`` file (``word piece piece ...`` per line) as a mapping; ``None`` when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise HotwordError(f"{path}: cannot read the seg_dict ({error})") from None
    return {fields[0]: fields[1:] for fields in (line.split() for line in lines) if fields}


def _pieces(words: Sequence[str], seg_dict: Optional[dict[str, list[str]]], unk: str) -> list[str]:
    if seg_dict is None:
        return list(words)
    pieces: list[str] = []
    for word in words:
        word = word.lower()
        if word in seg_dict:
            pieces += seg_dict[word]
        elif _CJK_OR_DIGITS.match(word):
            pieces += [p for char in word for p in seg_dict.get(char, [unk])]
        else:
            pieces.append(unk)
    return pieces


def _lines(hotwords: Hotwords) -> list[str]:
    """The hotwords as lines (one hotword each, its words space-separated)."""
    if isinstance(hotwords, os.PathLike) or (isinstance(hotwords, str) and hotwords.endswith(".txt")
                                             and os.path.isfile(hotwords)):
        try:
            return Path(hotwords).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise HotwordError(f"cannot read the hotword file {hotwords} ({error}): give a UTF-8 text file "
                               "with one hotword per line") from None
    if isinstance(hotwords, str):
        if hotwords.startswith(("http://", "https://")):
            raise HotwordError(f"hotwords from a URL ({hotwords}) are not downloaded: download the file and "
                               "give its path")
        if hotwords.endswith(".txt") and len(hotwords.split()) == 1:
            raise HotwordError(f"hotword file not found: {hotwords}")
        return hotwords.split()
    if isinstance(hotwords, Sequence) and all(isinstance(word, str) for word in hotwords):
        return list(hotwords)
    raise HotwordError(f"hotwords must be a string of space-separated words, a .txt file path or a list of "
                       f"strings, got {type(hotwords).__name__}")


def hotword_ids(hotwords: Hotwords, tokenizer: CharTokenizer,
                seg_dict: Optional[dict[str, list[str]]] = None) -> list[list[int]]:
    """Token ids of each hotword, then ``[<s>]``; blank lines are skipped, unknown pieces become ``<unk>``."""
    unk = tokenizer.unk_symbol
    result = []
    for line in _lines(hotwords):
        pieces = _pieces(line.split(), seg_dict, unk)
        if not pieces:
            continue
        ids = [tokenizer.index.get(piece, tokenizer.unk_id) for piece in pieces]
        if None in ids:
            raise HotwordError(f"hotword {line!r}: tokens {pieces} are not all in the vocabulary, which has no "
                               f"{unk}")
        result.append(ids)
    return result + [[SOS_ID]]
