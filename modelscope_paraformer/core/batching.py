"""Batching policies: which utterances decode together (similar lengths, bounded padding)."""
from __future__ import annotations

from typing import Callable, Sequence


def group_by_length(lengths: Sequence[int], fits: Callable[[list[int]], bool]) -> list[list[int]]:
    """Indices in length order, each appended to the last batch while ``fits(batch + [index])`` holds (the
    candidate batch's last index is its longest), else starting a new batch. Shared by every batching policy."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batches and fits(batches[-1] + [index]):
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def length_batches(lengths: list[int], batch_size: int, max_padding: float = 0.2) -> list[list[int]]:
    """Indices in length order, grouped into batches of at most ``batch_size`` whose padding stays under
    ``max_padding`` of the computed frames (on a CPU, padding costs more than batching saves)."""
    def fits(batch: list[int]) -> bool:
        padded = lengths[batch[-1]] * len(batch)
        return len(batch) <= batch_size and padded - sum(lengths[i] for i in batch) <= max_padding * padded

    return group_by_length(lengths, fits)
