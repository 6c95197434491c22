"""A long recording with pauses, for VAD, composite and long-audio tests and benchmarks (espeak-ng Mandarin).

Sentences at varying levels, pauses of 0.15-5 s between them and a noise floor, written as 16-bit PCM and read
back, so the array equals what a reader of the wav gets. Long enough (75 s by default) for FunASR's 60 s
offline VAD step and its end-silence schedule. Needs espeak-ng and sox (Debian packages).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile

SENTENCES = ["jin1 tian1 tian1 qi4 hen3 hao3 wo3 men5 qu4 gong1 yuan2 san4 bu4",
             "zhe4 ge5 xiang4 mu4 de5 jin4 du4 fei1 chang2 kuai4", "qing3 ba3 wen2 jian4 fa1 gei3 wo3",
             "ming2 tian1 shang4 wu3 jiu3 dian3 kai1 hui4", "ta1 zai4 tu2 shu1 guan3 kan4 shu1",
             "wo3 xiang3 mai3 yi1 bei1 ka1 fei1", "huo3 che1 ba1 dian3 chu1 fa1",
             "zhe4 jia1 can1 ting1 de5 cai4 hen3 hao3 chi1"]
PAUSES_S = [0.3, 2.5, 0.6, 4.0, 1.2, 3.0, 0.15, 2.2, 5.0, 0.9, 2.8, 1.6]
RATE = 16000


def sentence(pinyin: str) -> np.ndarray:
    """One espeak-ng Mandarin sentence at 16 kHz, scaled to unit RMS (float64)."""
    wav = subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", "150", "--stdout", pinyin],
                         check=True, capture_output=True).stdout
    raw = subprocess.run(["sox", "-R", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L",
                          "-c", "1", "-", "rate", "-h", str(RATE)], input=wav, check=True, capture_output=True).stdout
    samples = np.frombuffer(raw, "<f4").astype(np.float64)
    return samples / np.sqrt(np.mean(samples ** 2))


def pause_recording(path: str | Path, seconds: float = 75.0, seed: int = 0, sentences: Optional[list[str]] = None
                    ) -> np.ndarray:
    """Write the recording (at least ``seconds`` long) to ``path`` and return it as read back (float32)."""
    sentences = sentences or SENTENCES
    rng = np.random.default_rng(seed)
    parts, index = [np.zeros(RATE // 2)], 0
    while sum(map(len, parts)) < seconds * RATE:
        level_db = -20.0 + rng.uniform(-6, 6)
        parts += [sentence(sentences[index % len(sentences)]) * 10 ** (level_db / 20),
                  np.zeros(int(PAUSES_S[index % len(PAUSES_S)] * RATE))]
        index += 1
    audio = np.concatenate(parts)
    audio += rng.standard_normal(len(audio)) * 10 ** (-50 / 20)
    soundfile.write(path, np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16), RATE, subtype="PCM_16")
    return soundfile.read(path, dtype="float32")[0]
