"""Transcribe many inputs (a ``wav.scp``, directories, file lists) into one JSON-lines file: resumable, and sharded
over processes or machines with ``torchrun``.

    python -m modelscope_paraformer transcribe wav.scp --output results.jsonl
    torchrun --nnodes 2 --nproc_per_node 1 ... -m modelscope_paraformer transcribe wav.scp --output results.jsonl

Rank ``r`` of ``N`` (torchrun's ``RANK`` / ``WORLD_SIZE``; one process without them) takes inputs ``r, r + N,
...`` and appends one line per input to ``OUTPUT.part-r-of-N``, flushed as it goes; when all ranks are done
(a ``torch.distributed`` barrier), rank 0 writes OUTPUT in input order and removes the parts. A rerun skips every
key already in OUTPUT or a part, so a killed run resumes where it stopped. An input that cannot be read is
reported in its own row (``{"key", "error"}``) and does not stop the run.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tqdm import tqdm

from .core.audio import AudioError, list_inputs, read_utterance
from .core.errors import ParaformerError
from .core.model_dir import atomic_write

logger = logging.getLogger(__name__)


class IncompleteOutputError(ParaformerError, RuntimeError):
    """Some inputs have no row after every rank finished (a rank failed): running the command again fills them."""


def _read_rows(path: Path) -> dict[str, dict]:
    """Rows of a JSON-lines file by key; a torn last line (a killed run) is ignored."""
    rows: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                rows[str(row["key"])] = row
    return rows


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _barrier(world: int) -> None:
    """Wait for every rank (torch.distributed, gloo: CPU and GPU machines alike)."""
    if world > 1:
        import torch.distributed as dist  # only under torchrun: a single process needs no torch for this

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()


def transcribe_to_jsonl(model: Any, audio: Sequence[Any], output: os.PathLike | str, batch_size: int = 8,
                        rank: Optional[int] = None, world_size: Optional[int] = None) -> Path:
    """Recognise every input of ``audio`` with ``model`` into ``output`` (see the module docstring)."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    entries = list_inputs(list(audio))
    keys = [key for key, _ in entries]
    if len(set(keys)) != len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1})[:5]
        raise AudioError(f"inputs share keys ({', '.join(duplicates)}): every row of the output needs its own key")
    part = output.with_name(f"{output.name}.part-{rank}-of-{world}")
    resumed = _read_rows(part)
    if part.exists():  # rewritten with its whole rows only: a killed run may have torn the last one
        kept = _jsonl(resumed.values())
        atomic_write(part, lambda tmp: Path(tmp).write_text(kept, encoding="utf-8"))
    done = {**_read_rows(output), **resumed}
    mine = [(key, item) for index, (key, item) in enumerate(entries) if index % world == rank and key not in done]
    logger.info("rank %d/%d: %d inputs to transcribe, %d already done", rank, world, len(mine), len(done))
    with open(part, "a", encoding="utf-8") as out, tqdm(total=len(mine), desc="transcribing", unit="file") as bar:
        for first in range(0, len(mine), max(1, batch_size)):
            _write(out, _transcribe_batch(model, mine[first:first + batch_size], batch_size))
            bar.update(len(mine[first:first + batch_size]))
    _barrier(world)
    if rank == 0:
        _merge(output, keys, world)
    _barrier(world)
    return output


def _transcribe_batch(model: Any, batch: list[tuple[str, Any]], batch_size: int) -> list[dict]:
    rows, utterances = {}, []
    for key, item in batch:
        try:
            utterances.append(read_utterance(key, item))
        except AudioError as error:  # one unreadable file is its row's problem, not the run's
            rows[key] = {"key": key, "error": str(error)}
    if utterances:
        # a recogniser gives Transcripts; a composite Transcriber (VAD, punctuation) FunASR-shaped dicts
        for result in model.transcribe([u.samples for u in utterances], [u.key for u in utterances],
                                       batch_size=batch_size):
            row = result if isinstance(result, dict) else result.as_dict()
            rows[row["key"]] = row
    return [rows[key] for key, _ in batch]


def _write(out, rows: Iterable[dict]) -> None:
    out.write(_jsonl(rows))
    out.flush()
    os.fsync(out.fileno())  # a row on disk is a row a resumed run skips


def _merge(output: Path, keys: list[str], world: int) -> None:
    """OUTPUT in input order from itself and every rank's part; the parts go once it is written."""
    parts = [output.with_name(f"{output.name}.part-{r}-of-{world}") for r in range(world)]
    rows = _read_rows(output)
    for part in parts:
        rows.update(_read_rows(part))
    missing = [key for key in keys if key not in rows]
    if missing:
        raise IncompleteOutputError(f"{len(missing)} inputs have no row (e.g. {missing[0]}); run the command again to "
                           "transcribe them")
    text = _jsonl(rows[key] for key in keys)
    atomic_write(output, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    for part in parts:
        part.unlink(missing_ok=True)
    failed = sum("error" in rows[key] for key in keys)
    logger.info("wrote %s: %d rows, %d unreadable inputs", output, len(keys), failed)
