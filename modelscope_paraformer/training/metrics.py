"""Character error rate with substitution / insertion / deletion counts."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ErrorCounts:
    """Edit operations between a reference and a hypothesis (characters, spaces ignored)."""

    substitutions: int = 0
    insertions: int = 0
    deletions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.insertions + self.deletions

    @property
    def cer(self) -> float:
        """Errors divided by reference characters (0 when both are empty)."""
        return self.errors / self.reference_length if self.reference_length else float(self.errors > 0)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.substitutions + other.substitutions, self.insertions + other.insertions,
                           self.deletions + other.deletions, self.reference_length + other.reference_length)


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Levenshtein alignment of characters, counting each kind of edit."""
    ref, hyp = reference.replace(" ", ""), hypothesis.replace(" ", "")
    # each cell: (cost, substitutions, insertions, deletions); ties prefer substitutions for stable counts
    previous = [(j, 0, j, 0) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        current = [(i, 0, 0, i)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                current.append(previous[j - 1])
                continue
            sub, ins, dele = previous[j - 1], current[j - 1], previous[j]
            candidates = [(sub[0] + 1, sub[1] + 1, sub[2], sub[3]), (ins[0] + 1, ins[1], ins[2] + 1, ins[3]),
                          (dele[0] + 1, dele[1], dele[2], dele[3] + 1)]
            current.append(min(candidates))
        previous = current
    _, substitutions, insertions, deletions = previous[-1]
    return ErrorCounts(substitutions, insertions, deletions, len(ref))


@dataclass
class CerReport:
    """Corpus CER plus the per-utterance rows (key, reference, hypothesis, counts)."""

    total: ErrorCounts = field(default_factory=ErrorCounts)
    rows: list[tuple[str, str, str, ErrorCounts]] = field(default_factory=list)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def rtf(self) -> float:
        """Decoding time divided by audio duration (0 when nothing was timed)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def add(self, key: str, reference: str, hypothesis: str) -> None:
        counts = char_errors(reference, hypothesis)
        self.total = self.total + counts
        self.rows.append((key, reference, hypothesis, counts))

    def worst(self, count: int = 5) -> list[tuple[str, str, str, ErrorCounts]]:
        """The utterances with the most errors."""
        return sorted(self.rows, key=lambda row: (-row[3].errors, row[0]))[:count]

    def as_dict(self) -> dict:
        t = self.total
        return {"cer": t.cer, "substitutions": t.substitutions, "insertions": t.insertions,
                "deletions": t.deletions, "reference_chars": t.reference_length, "utterances": len(self.rows),
                "rtf": self.rtf}
