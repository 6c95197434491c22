"""The model-card composite (FSMN-VAD + Paraformer-large + CT-Transformer) against funasr's, side by side.

    python benchmarks/composite.py [--threads 2] [--seconds 75] [--repeats 3]

Random weights of the hub architectures (Paraformer-large offline, the FSMN-VAD, ct-punc-c: 272,727 tokens),
the same espeak-ng recording with pauses for both; funasr's ``AutoModel(model, vad_model, punc_model)
.generate`` and our ``Transcriber.transcribe`` called alternately in one process (best of ``--repeats``), so
the ratio does not depend on how busy the machine is. Checks that both give the same text and timestamps.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelscope_paraformer.composition import build_transcriber  # noqa: E402
from modelscope_paraformer.core import load_model  # noqa: E402
from modelscope_paraformer.tools.pause_recording import RATE, pause_recording  # noqa: E402
from modelscope_paraformer.tools.random_model import build_random_model  # noqa: E402
from modelscope_paraformer.tools.random_punc import build_random_punc  # noqa: E402
from modelscope_paraformer.tools.random_vad import build_random_vad  # noqa: E402


def timed(call) -> tuple[float, object]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=75.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "modelscope_paraformer" / "composite"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir)
    dirs = {"asr": cache / "paraformer-large", "vad": cache / "fsmn-vad", "punc": cache / "ct-punc-c"}
    if not (dirs["asr"] / "model.pt").is_file():
        build_random_model(dirs["asr"], "offline", seed=0)
    if not (dirs["vad"] / "model.pt").is_file():
        build_random_vad(dirs["vad"])
    if not (dirs["punc"] / "model.pt").is_file():
        build_random_punc(dirs["punc"], "zh")
    audio = pause_recording(Path(tempfile.mkdtemp()) / "recording.wav", args.seconds)
    duration = len(audio) / RATE

    import funasr

    logging.getLogger().setLevel(logging.ERROR)
    reference = funasr.AutoModel(model=str(dirs["asr"]), vad_model=str(dirs["vad"]), punc_model=str(dirs["punc"]),
                                 disable_update=True, ncpu=args.threads, device="cpu", disable_pbar=True,
                                 log_level="ERROR")
    ours = build_transcriber(load_model(dirs["asr"]), dirs["asr"],
                             {"vad_model": str(dirs["vad"]), "punc_model": str(dirs["punc"])})
    theirs_s, ours_s = [], []
    for _ in range(args.repeats + 1):  # alternating; the first round warms both up
        seconds, theirs = timed(lambda: reference.generate(input=audio, output_timestamp=True)[0])
        theirs_s.append(seconds)
        seconds, mine = timed(lambda: ours.transcribe([audio])[0])
        ours_s.append(seconds)
    theirs_s, ours_s = min(theirs_s[1:] or theirs_s), min(ours_s[1:] or ours_s)
    same = mine["text"] == theirs["text"] and mine["timestamp"] == theirs["timestamp"]
    print(f"{duration:.1f} s recording, {len(ours.vad.segments(audio))} VAD segments, {args.threads} threads, "
          f"best of {args.repeats}; text and timestamps equal: {same}\n")
    print("| composite (VAD + Paraformer-large + ct-punc-c) | seconds | RTF | vs funasr |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| funasr 1.4.16 AutoModel | {theirs_s:.2f} | {theirs_s / duration:.4f} | 1.00x |")
    print(f"| ours, torch fp32 | {ours_s:.2f} | {ours_s / duration:.4f} | {theirs_s / ours_s:.2f}x |")


if __name__ == "__main__":
    main()
