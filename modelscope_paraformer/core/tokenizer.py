"""Character tokenizer over FunASR's ``tokens.json`` (a JSON list) or ``tokens.txt`` (one token per line)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ParaformerError

SPECIAL_TOKENS = {"<blank>", "<s>", "</s>", "<unk>", "<OOV>"}


class TokenizerError(ParaformerError, ValueError):
    """The token list is missing, empty or malformed."""


class CharTokenizer:
    """Maps token ids to characters and back; the id of a token is its position in the list."""

    def __init__(self, tokens: Sequence[str], unk_symbol: str = "<unk>"):
        if not tokens:
            raise TokenizerError("the token list is empty")
        self.tokens = list(tokens)
        self.index = {token: index for index, token in enumerate(self.tokens)}
        self.unk_symbol = unk_symbol
        self.unk_id = self.index.get(unk_symbol)

    @classmethod
    def from_file(cls, path: str | Path, unk_symbol: str = "<unk>") -> "CharTokenizer":
        """Load ``tokens.json`` or ``tokens.txt`` (a trailing column of ids in .txt is ignored)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TokenizerError(f"{path}: cannot read token list ({error})") from None
        if path.suffix == ".json":
            try:
                tokens = json.loads(text)
            except json.JSONDecodeError as error:
                raise TokenizerError(f"{path}: not valid JSON ({error})") from None
            if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
                raise TokenizerError(f"{path}: expected a JSON list of strings")
        else:
            tokens = [line.split()[0] if line.split() else line for line in text.splitlines() if line.strip()]
        if not tokens:
            raise TokenizerError(f"{path}: the token list is empty")
        return cls(tokens, unk_symbol)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Characters of ``text`` (spaces dropped) to ids; unknown characters map to ``<unk>`` or raise."""
        ids = []
        for char in text.replace(" ", ""):
            if char in self.index:
                ids.append(self.index[char])
            elif self.unk_id is not None:
                ids.append(self.unk_id)
            else:
                raise TokenizerError(f"character {char!r} is not in the vocabulary and there is no {self.unk_symbol}")
        return ids

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` that are not in the vocabulary."""
        return {char for char in text.replace(" ", "") if char not in self.index}

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids to token strings, special tokens removed."""
        tokens = [self.tokens[i] for i in ids if 0 <= i < len(self.tokens)]
        return [token for token in tokens if token not in SPECIAL_TOKENS]

    @staticmethod
    def join(tokens: Sequence[str]) -> str:
        """Join tokens into text: CJK characters run together, alphabetic words get spaces, ``@@`` glues BPE."""
        text, glued = "", True
        for token in tokens:
            piece = token[:-2] if token.endswith("@@") else token
            if not glued and piece and _is_latin_word_char(piece[0]) and _is_latin_word_char(text[-1]):
                text += " "
            text += piece
            glued = token.endswith("@@") or not text
        return text

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text."""
        return self.join(self.decode_tokens(ids))


def _is_latin_word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "'")
