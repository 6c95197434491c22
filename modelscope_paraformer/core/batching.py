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


MAX_PADDING = 0.2  # share of a batch's frames that may be padding: on a CPU, more costs more than batching saves


def padding_share(lengths: Sequence[int], batch: list[int]) -> float:
    """The share of padding in ``batch`` (its last index is its longest)."""
    padded = lengths[batch[-1]] * len(batch)
    return (padded - sum(lengths[i] for i in batch)) / padded if padded else 0.0


def length_batches(lengths: list[int], batch_size: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices in length order, grouped into batches of at most ``batch_size`` whose padding stays under
    ``max_padding`` of the computed frames (on a CPU, padding costs more than batching saves)."""
    def fits(batch: list[int]) -> bool:
        return len(batch) <= batch_size and padding_share(lengths, batch) <= max_padding

    return group_by_length(lengths, fits)
