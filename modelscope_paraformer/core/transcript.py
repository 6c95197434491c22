"""Result types of recognition, shared by every engine and front end (no torch here)."""
from __future__ import annotations

from dataclasses import dataclass, field

BLANK_ID, SOS_ID, EOS_ID = 0, 1, 2
SPECIAL_IDS = (BLANK_ID, SOS_ID, EOS_ID)  # never part of a transcript (their timestamps are dropped too)
FRAME_MS = 60  # one LFR frame: 6 x 10 ms


@dataclass
class Transcript:
    """One recognised utterance: text, token ids and per-token [start_ms, end_ms]."""

    key: str
    text: str
    token_ids: list[int] = field(default_factory=list)
    timestamps: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The ModelScope/FunASR result shape: key, text, timestamp."""
        return {"key": self.key, "text": self.text, "timestamp": self.timestamps}
