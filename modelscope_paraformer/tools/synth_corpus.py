"""Reproducible synthetic Mandarin speech corpus (numbers, phones, dates, times, money).

Text comes from small templates rendered with :mod:`text_norm`, is converted to
tone-numbered pinyin with ``pypinyin`` and spoken by ``espeak-ng`` (voice
``cmn-latn-pinyin``; plain ``cmn`` reads Han characters with English rules),
then tempo-perturbed and resampled to 16 kHz by ``sox`` and mixed with seeded
white/pink noise in numpy.  Every random choice derives from
``(seed, split, utterance index)`` so output is byte-for-byte reproducible and
independent of ``--jobs`` scheduling.

Output layout (lines sorted by key)::

    DIR/wavs/<key>.wav  16 kHz mono PCM_16
    DIR/wav.scp         <key> <absolute wav path>
    DIR/text            <key> <characters>
    DIR/utt2spk         <key> <espeak voice variant>
    DIR/data.jsonl      {"key","source","target","source_len","target_len"} (FunASR)
    DIR/meta.jsonl      synthesis parameters per utterance (for debugging)

CLI::

    python -m modelscope_paraformer.tools.synth_corpus --out data/train --num-utts 4000 --seed 1 --jobs 2
"""

from __future__ import annotations

import argparse
import calendar
import json
import logging
import multiprocessing
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
from pypinyin import Style, lazy_pinyin
from tqdm import tqdm

from .text_norm import DIGITS, digits_to_chinese, int_to_chinese, normalize_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SHIFT = 160  # 10 ms at 16 kHz; FunASR's source_len counts these frames

# Every character the templates can emit (checked in tests); 70 in total.
VOCAB = "".join(sorted(set(
    "零一二两三四五六七八九十百千万点"  # numerals
    "年月日号"                          # dates
    "早上午中下晚半刻分整"              # times of day
    "元角块毛钱之"                      # money, percent (百分之)
    "我的电话是请拨打号码"              # carrier phrases ...
    "总共价格现在会议开始今天明增长降了有个人数字答案第"
)))

# Held-out voices: the test split only uses variants never heard in training.
# Novelty variants (whisper, croak, robots...) are left out on purpose.
TRAIN_VOICES = ("m1", "m2", "m3", "m4", "m5", "m7", "m8", "f1", "f2", "f4", "f5",
                "klatt", "klatt3", "klatt4", "klatt6", "Andy", "Annie", "linda", "steph2")
TEST_VOICES = ("m6", "f3", "klatt2")
SPLITS = {"train": (0, TRAIN_VOICES), "test": (1, TEST_VOICES)}

SNRS_DB = (None, 30.0, 20.0, 15.0)  # None = clean
SNR_PROBS = (0.4, 0.2, 0.2, 0.2)

T = TypeVar("T")


def _pick(rng: np.random.Generator, seq: Sequence[T]) -> T:
    # Index instead of rng.choice so Python str/tuple types are preserved.
    return seq[int(rng.integers(len(seq)))]


def _rand_int(rng: np.random.Generator, max_digits: int) -> int:
    """Random integer with a uniform number of digits; inner zeros are frequent
    (p=0.35 per digit) so 零 patterns like 一千零五 are well represented."""
    n_digits = int(rng.integers(1, max_digits + 1))
    value = int(rng.integers(1, 10))
    for _ in range(n_digits - 1):
        value = value * 10 + (0 if rng.random() < 0.35 else int(rng.integers(1, 10)))
    return value


def _digit_str(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, size=n))


# --------------------------------------------------------------------------- text
def _number(rng: np.random.Generator) -> str:
    if rng.random() < 0.2:  # decimals: 三点一四, 零点零五
        whole = 0 if rng.random() < 0.3 else _rand_int(rng, 3)
        value = normalize_text(f"{whole}.{_digit_str(rng, int(rng.integers(1, 3)))}")
        return _pick(rng, ("{}", "答案是{}", "数字是{}")).format(value)
    n = _rand_int(rng, 6)
    template = _pick(rng, ("{}", "{}", "数字是{}", "答案是{}", "一共有{}个人", "第{}"))
    # 两 only before a measure word (两个人, 两千个人); bare numbers keep 二.
    return template.format(int_to_chinese(n, use_liang="个" in template))


def _phone(rng: np.random.Generator) -> str:
    if rng.random() < 0.7:  # mobile: 1[3-9] + 9 digits
        digits = f"1{int(rng.integers(3, 10))}{_digit_str(rng, 9)}"
    else:  # 8-digit landline
        digits = f"{int(rng.integers(2, 9))}{_digit_str(rng, 7)}"
    template = _pick(rng, ("{}", "我的电话是{}", "请拨打{}", "电话号码是{}"))
    return template.format(digits_to_chinese(digits))


def _date_text(rng: np.random.Generator, with_day: bool = False) -> str:
    year, month = int(rng.integers(1990, 2036)), int(rng.integers(1, 13))
    day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
    md = f"{int_to_chinese(month)}月{int_to_chinese(day)}"
    style = _pick(rng, (0, 2, 3)) if with_day else int(rng.integers(4))
    if style == 0:
        return f"{digits_to_chinese(str(year))}年{md}日"  # 二零二四年三月五日
    if style == 1:
        return f"{digits_to_chinese(str(year))}年{int_to_chinese(month)}月"
    return md + ("日" if style == 2 else "号")  # 三月五日 / 三月五号


def _time_text(rng: np.random.Generator) -> str:
    if rng.random() < 0.25:  # 24-hour clock, formal: 十四点三十分
        hour, prefix = int(rng.integers(0, 24)), ""
    else:
        prefix, lo, hi = _pick(rng, (("早上", 5, 9), ("上午", 8, 11), ("中午", 12, 13),
                                     ("下午", 1, 6), ("晚上", 6, 11), ("", 1, 12)))
        hour = int(rng.integers(lo, hi + 1))
        hour = 1 if prefix == "中午" and hour == 13 else hour
    out = prefix + int_to_chinese(hour, use_liang=True) + "点"  # 两点, not 二点
    minute = int(rng.integers(0, 60)) if rng.random() < 0.6 else _pick(rng, (0, 15, 30, 45))
    if minute == 0:
        return out + _pick(rng, ("", "整"))
    if minute in (15, 30, 45) and rng.random() < 0.5:
        return out + {15: "一刻", 30: "半", 45: "三刻"}[minute]
    spoken = ("零" if minute < 10 else "") + int_to_chinese(minute)
    # "八点二十五" without 分 is common speech; keep 分 after 零X (八点零五分).
    return out + spoken + ("分" if minute < 10 or rng.random() < 0.6 else "")


def _date(rng: np.random.Generator) -> str:
    return _pick(rng, ("{}", "今天是{}", "明天是{}")).format(_date_text(rng))


def _time(rng: np.random.Generator) -> str:
    if rng.random() < 0.15:  # date + time
        return f"会议在{_date_text(rng, with_day=True)}{_time_text(rng)}开始"
    return _pick(rng, ("{}", "现在是{}", "会议在{}开始")).format(_time_text(rng))


def _money(rng: np.random.Generator) -> str:
    yuan = _rand_int(rng, 4) if rng.random() < 0.9 else 0
    jiao = int(rng.integers(0 if yuan else 1, 10))
    fen = int(rng.integers(0, 10)) if rng.random() < 0.15 else 0
    # 两元, 两百块, 两毛: 两 is natural before measure words.
    y, j, f = (int_to_chinese(v, use_liang=True) for v in (yuan, jiao, fen))
    if rng.random() < 0.5:  # formal: 三十五元六角(七分)
        out = (f"{y}元" if yuan else "") + (f"{j}角" if jiao else "") + (f"{f}分" if fen else "")
    elif yuan and jiao and rng.random() < 0.5:
        out = f"{y}块{int_to_chinese(jiao)}"  # 十二块五 (毛 dropped, 二 in final position)
    else:  # colloquial: 五块五毛(钱), 三毛钱
        out = (f"{y}块" if yuan else "") + (f"{j}毛" if jiao or not yuan else "")
        out += "钱" if rng.random() < 0.3 else ""
    return _pick(rng, ("{}", "总共{}", "一共{}", "一共是{}", "价格是{}")).format(out)


def _percent(rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        value = f"{int(rng.integers(1, 101))}"
    else:
        value = f"{int(rng.integers(0, 100))}.{int(rng.integers(1, 10))}"
    return _pick(rng, ("{}", "增长了{}", "下降了{}")).format(normalize_text(value + "%"))


CATEGORIES: tuple[tuple[str, float, Callable[[np.random.Generator], str]], ...] = (
    ("number", 0.20, _number), ("phone", 0.15, _phone), ("date", 0.15, _date),
    ("time", 0.20, _time), ("money", 0.20, _money), ("percent", 0.10, _percent),
)


def sample_text(rng: np.random.Generator) -> tuple[str, str]:
    """Return ``(category, text)``; text is pure Chinese characters from VOCAB."""
    probs = np.array([w for _, w, _ in CATEGORIES])
    name, _, fn = CATEGORIES[int(rng.choice(len(CATEGORIES), p=probs / probs.sum()))]
    text = fn(rng)
    bad = set(text) - set(VOCAB)
    if bad:  # a template bug, not a data condition
        raise AssertionError(f"characters outside VOCAB in {text!r}: {sorted(bad)}")
    return name, text


# ------------------------------------------------------------------------ pinyin
_NUMERAL_CHARS = set(DIGITS + "两十百千万亿点")
_NO_SANDHI_NEXT = set(DIGITS + "两十点月日号年")


def to_pinyin(text: str) -> list[str]:
    """Tone-numbered pinyin (neutral tone = 5) for espeak-ng, one item per character.

    pypinyin's tone sandhi handles 3-3 but not the numeral 一 well (it gives
    一月 -> yi2, 一万 -> yi1), so 一 is re-toned here: it changes tone only when
    it starts a number and precedes a unit/measure word (一百 yi4, 一万 yi2,
    一块 yi2); digit strings, dates, 一点 and a final 一 keep yi1.
    """
    syl = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True)
    if len(syl) != len(text):
        raise ValueError(f"pinyin/char mismatch for {text!r}: {syl}")
    for i, ch in enumerate(text):
        if ch != "一":
            continue
        prev_num = i > 0 and text[i - 1] in _NUMERAL_CHARS
        at_end = i + 1 == len(text) or text[i + 1] in _NO_SANDHI_NEXT
        if prev_num or at_end:
            syl[i] = "yi1"
        else:
            # Before an (underlying) 4th tone 一 becomes yi2, otherwise yi4.
            nxt = lazy_pinyin(text[i + 1], style=Style.TONE3, neutral_tone_with_five=True)[0]
            syl[i] = "yi2" if nxt.endswith("4") else "yi4"
    return syl


# ------------------------------------------------------------------------- audio
@dataclass(frozen=True)
class Utterance:
    """Everything needed to synthesise one utterance deterministically."""

    key: str
    category: str
    text: str
    pinyin: str
    voice: str
    speed: int        # espeak words (syllables) per minute
    pitch: int        # espeak pitch 0-99
    tempo: float      # sox tempo factor
    level_db: float   # target speech RMS in dBFS
    snr_db: float | None
    noise: str        # "white" | "pink"
    pad_s: tuple[float, float]
    noise_seed: int


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-power 1/f noise by shaping white noise in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def synthesize(utt: Utterance, wav_path: Path) -> int:
    """Synthesise ``utt`` to ``wav_path`` (16 kHz mono PCM_16); return #samples."""
    speech = subprocess.run(
        ["espeak-ng", "-v", f"cmn-latn-pinyin+{utt.voice}", "-s", str(utt.speed),
         "-p", str(utt.pitch), "--stdout", utt.pinyin],
        check=True, capture_output=True).stdout
    # sox writes raw float32 so no dither (random) is applied before our own
    # quantisation; -R asks for repeatable mode anyway.
    raw = subprocess.run(
        ["sox", "-R", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32",
         "-L", "-c", "1", "-", "tempo", "-s", f"{utt.tempo:.3f}", "rate", "-h", str(SAMPLE_RATE)],
        input=speech, check=True, capture_output=True).stdout
    x = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if x.size == 0 or not np.any(x):
        raise RuntimeError(f"espeak-ng produced silence for {utt.key} ({utt.pinyin!r})")
    x *= 10 ** (utt.level_db / 20) / np.sqrt(np.mean(x**2))
    power = np.mean(x**2)
    x = np.concatenate([np.zeros(int(utt.pad_s[0] * SAMPLE_RATE)), x,
                        np.zeros(int(utt.pad_s[1] * SAMPLE_RATE))])
    if utt.snr_db is not None:
        rng = np.random.default_rng(utt.noise_seed)
        noise = rng.standard_normal(x.size) if utt.noise == "white" else _pink(rng, x.size)
        x += noise * np.sqrt(power / 10 ** (utt.snr_db / 10))
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    sf.write(wav_path, pcm, SAMPLE_RATE, subtype="PCM_16")
    return int(pcm.size)


def _synth_job(job: tuple[Utterance, str]) -> int:
    return synthesize(job[0], Path(job[1]))


# ------------------------------------------------------------------------ corpus
def plan_corpus(num_utts: int, seed: int, split: str = "train",
                exclude_texts: Iterable[str] | None = None) -> list[Utterance]:
    """Sample texts and synthesis parameters (cheap, sequential, deterministic).

    RNGs are seeded with ``[seed, split_id, index, stream]`` (numpy SeedSequence)
    rather than ``seed + index`` so that corpora with different seeds/splits do
    not share streams.  Texts are unique within the corpus and never in
    ``exclude_texts`` (e.g. the train transcripts when building a test set).
    """
    if seed < 0 or num_utts < 0:
        raise ValueError("seed and num_utts must be non-negative")
    split_id, voices = SPLITS[split]
    seen = set(exclude_texts or ())
    utts = []
    for idx in range(num_utts):
        trng = np.random.default_rng([seed, split_id, idx, 0])
        for _ in range(1000):
            category, text = sample_text(trng)
            if text not in seen:
                break
        else:
            raise RuntimeError(f"could not sample an unseen sentence for index {idx}")
        seen.add(text)
        arng = np.random.default_rng([seed, split_id, idx, 1])
        snr = SNRS_DB[int(arng.choice(len(SNRS_DB), p=SNR_PROBS))]
        utts.append(Utterance(
            key=f"{split}-s{seed}-{idx:06d}", category=category, text=text,
            pinyin=" ".join(to_pinyin(text)), voice=_pick(arng, voices),
            speed=int(arng.integers(130, 201)), pitch=int(arng.integers(30, 71)),
            tempo=round(float(arng.uniform(0.9, 1.1)), 3),
            level_db=round(float(arng.uniform(-30.0, -18.0)), 2),
            snr_db=snr, noise=_pick(arng, ("white", "pink")),
            pad_s=(round(float(arng.uniform(0.05, 0.3)), 3),
                   round(float(arng.uniform(0.0, 0.1)), 3)),
            noise_seed=int(arng.integers(2**63)),
        ))
    return utts


def read_texts(path: str | Path) -> set[str]:
    """Transcripts from a Kaldi ``text`` file (``key text``) or one sentence per line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {line.split(maxsplit=1)[-1] for line in lines if line.strip()}


def generate_corpus(out_dir: str | Path, num_utts: int, seed: int, split: str = "train",
                    jobs: int = 1, exclude_texts: Iterable[str] | None = None) -> Path:
    """Generate the corpus into ``out_dir`` (see module docstring); return its path."""
    out = Path(out_dir).resolve()
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    utts = plan_corpus(num_utts, seed, split, exclude_texts)
    work = [(u, str(out / "wavs" / f"{u.key}.wav")) for u in utts]
    t0 = time.perf_counter()
    bar = dict(total=len(work), desc=f"synth {split}", unit="utt", mininterval=1.0)
    if jobs > 1:
        # imap keeps input order, so results do not depend on scheduling.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            n_samples = list(tqdm(pool.imap(_synth_job, work, chunksize=4), **bar))
    else:
        n_samples = [_synth_job(w) for w in tqdm(work, **bar)]
    rows = sorted(zip(utts, (p for _, p in work), n_samples), key=lambda r: r[0].key)
    with open(out / "wav.scp", "w", encoding="utf-8") as scp, \
            open(out / "text", "w", encoding="utf-8") as txt, \
            open(out / "utt2spk", "w", encoding="utf-8") as u2s, \
            open(out / "data.jsonl", "w", encoding="utf-8") as js, \
            open(out / "meta.jsonl", "w", encoding="utf-8") as meta:
        for u, path, n in rows:
            scp.write(f"{u.key} {path}\n")
            txt.write(f"{u.key} {u.text}\n")
            u2s.write(f"{u.key} {u.voice}\n")
            js.write(json.dumps({"key": u.key, "source": path, "target": u.text,
                                 "source_len": n // FRAME_SHIFT, "target_len": len(u.text)},
                                ensure_ascii=False) + "\n")
            meta.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
    hours = sum(n_samples) / SAMPLE_RATE / 3600
    logger.info("wrote %d utterances (%.2f h) to %s in %.1f s",
                len(rows), hours, out, time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num-utts", required=True, type=int)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--split-voices", choices=sorted(SPLITS), default="train",
                        help="voice subset: test uses variants held out from train")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--exclude-text", type=Path, action="append", default=[],
                        help="Kaldi text file whose sentences must not be generated (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    exclude: set[str] = set()
    for path in args.exclude_text:
        exclude |= read_texts(path)
    t0 = time.perf_counter()
    out = generate_corpus(args.out, args.num_utts, args.seed, args.split_voices, args.jobs,
                          exclude)
    with open(out / "data.jsonl", encoding="utf-8") as f:
        secs = [json.loads(line)["source_len"] / 100 for line in f]
    print(f"{len(secs)} utts, {sum(secs) / 3600:.2f} h, "
          f"mean {np.mean(secs) if secs else 0:.2f} s/utt, "
          f"{time.perf_counter() - t0:.1f} s wall -> {out}")


if __name__ == "__main__":
    main()
