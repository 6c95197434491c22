"""Side-by-side CPU benchmark: funasr (the reference) vs this package, same weights, audio and threads.

    python benchmarks/bench.py                       # Paraformer-large (random weights), 10/60/300 s
    python benchmarks/bench.py --quick --durations 10 --streams-max 4 --json-out /tmp/bench.json

Import, load and peak RSS are measured in a fresh subprocess per system (funasr's import prints, installs
logging handlers and resets torch threads, and peak RSS must be per system). The speed ratios come from one
more subprocess holding both systems, whose calls take turns (offline inputs up to ``--funasr-max-seconds``
and streaming): this shared VM's speed drifts by +-20 % over minutes, so runs made minutes apart moved the
10 s ratio between 0.94x and 1.05x. This process only orchestrates and prints.
Measured: import and load time, peak RSS (``ru_maxrss`` of a child that imports, loads and decodes
10 s), offline RTF per duration (whole input as funasr does, and ours through :meth:`Recognizer.transcribe_long`:
VAD segments in length-sorted batches), streaming RTF and per-chunk compute latency for 600 and 480 ms chunks, the
number of concurrent real-time 600 ms streams served with every chunk answered within 600 ms (ours:
the batched scheduler; funasr: one stream after the other, its streaming batch size being 1), token
agreement with funasr, and our int8 / bf16 speed and agreement with our float32.

Concurrency is simulated on a virtual clock: all streams start together and each sends 600 ms of audio
every 600 ms; the scheduler processes whatever has arrived, and a chunk's latency is the time from its
arrival to the end of the processing that answered it (compute is measured, waiting is not slept).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
EXAMPLE = REPO / "examples" / "asr_example_zh.wav"
MARKER = "BENCH_RESULT "
CHUNKS = {"600ms": [0, 10, 5], "480ms": [0, 8, 4]}
SR = 16000


# ------------------------------------------------------------------------------------------- shared
def make_audio(seconds: float):
    """The example utterance tiled to ``seconds`` (16 kHz float32)."""
    import numpy as np
    import soundfile

    speech, rate = soundfile.read(str(EXAMPLE), dtype="float32")
    assert rate == SR, rate
    return np.tile(speech, int(seconds * SR) // len(speech) + 1)[: int(seconds * SR)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def timed(function: Callable, repeats: int = 1):
    """(best wall time, last result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def alternated(calls: dict[str, Callable], repeats: int) -> dict[str, tuple]:
    """{name: (best wall time, last result)}, the calls taking turns ``repeats`` times: on a VM whose speed
    drifts by +-20 % over minutes, only calls made seconds apart compare two systems fairly."""
    best: dict[str, tuple] = {name: (float("inf"), None) for name in calls}
    for _ in range(repeats):
        for name, function in calls.items():
            elapsed, result = timed(function)
            best[name] = (min(best[name][0], elapsed), result)
    return best


def simulate_streams(count: int, seconds: float, process: Callable[[list], None]) -> float:
    """Worst chunk latency (s) of ``count`` real-time 600 ms streams; ``process`` gets [(stream, k, last)]."""
    chunks = int(-(-seconds // 0.6))
    arrivals = [(0.6 * (k + 1), stream, k) for k in range(chunks) for stream in range(count)]
    clock, next_index, worst = 0.0, 0, 0.0
    while next_index < len(arrivals):
        clock = max(clock, arrivals[next_index][0])
        ready = []
        while next_index < len(arrivals) and arrivals[next_index][0] <= clock:
            ready.append(arrivals[next_index])
            next_index += 1
        start = time.perf_counter()
        process([(stream, k, k == chunks - 1) for _, stream, k in ready])
        clock += time.perf_counter() - start
        worst = max(worst, max(clock - arrival for arrival, _, _ in ready))
    return worst


def max_streams(limit: int, seconds: float, trial: Callable[[int], float]) -> tuple[int, dict]:
    """Largest N <= limit whose worst chunk latency is <= 600 ms: doubling, then bisection."""
    latencies: dict[int, float] = {}

    def ok(n: int) -> bool:
        latencies[n] = trial(n)
        return latencies[n] <= 0.6

    good, bad, n = 0, None, 1
    while n <= limit:
        if not ok(n):
            bad = n
            break
        good, n = n, n * 2
    if bad is None and good < limit and ok(limit):
        good = limit
    elif bad is None and good < limit:
        bad = limit
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if ok(middle) else (good, middle)
    return good, {str(k): round(v * 1000, 1) for k, v in sorted(latencies.items())}


def best_chunks(runs: list[tuple]) -> tuple:
    """(result, per-chunk times) of repeated (result, times) stream runs: each chunk's best, against a busy
    machine's noise."""
    return runs[-1][0], [min(chunk) for chunk in zip(*(times for _, times in runs))]


def repeated_stream(run: Callable[[], tuple], repeats: int) -> tuple:
    """:func:`best_chunks` of ``repeats`` runs."""
    return best_chunks([run() for _ in range(max(1, repeats))])


def streaming_summary(times: list[float], seconds: float) -> dict:
    return {"rtf": sum(times) / seconds, "chunk_ms_median": 1000 * statistics.median(times),
            "chunk_ms_p95": 1000 * percentile(times, 95), "chunks": len(times)}


# ------------------------------------------------------------------------------------------ workers
VARIANTS = {"int8": {"quantize": "int8"}, "bf16": {"dtype": "bf16"}}


def worker_rss(config: dict) -> dict:
    """Import, load (ours: as the pipeline does, mapped and optimised for ``config["variant"]``), decode 10 s
    once; the parent reads this child's peak RSS."""
    start = time.perf_counter()
    if config["system"] == "funasr":
        from funasr import AutoModel
    else:
        from modelscope_paraformer.core import load_model
        from modelscope_paraformer.core.optimize import optimize_for_inference
    imported = time.perf_counter()
    audio = make_audio(10)
    if config["system"] == "funasr":
        model = AutoModel(model=config["offline"], disable_update=True, ncpu=config["threads"], device="cpu",
                          log_level="ERROR")
        loaded = time.perf_counter()
        model.generate(input=audio, disable_pbar=True)
    else:
        options = VARIANTS.get(config.get("variant"), {})
        model = optimize_for_inference(load_model(config["offline"], mmap=True), num_threads=config["threads"],
                                       **options)
        loaded = time.perf_counter()
        model.recognizer.transcribe_long(audio)
    done = time.perf_counter()
    return {"import_s": imported - start, "load_s": loaded - imported, "first_result_s": done - loaded}


def funasr_stream(model, audio, chunk_size: list[int]) -> tuple[str, list[float]]:
    stride, cache, texts, times = chunk_size[1] * 960, {}, [], []
    steps = max(1, -(-len(audio) // stride))
    for k in range(steps):
        start = time.perf_counter()
        out = model.generate(input=audio[k * stride:(k + 1) * stride], cache=cache, is_final=k == steps - 1,
                             chunk_size=chunk_size, encoder_chunk_look_back=4, decoder_chunk_look_back=1,
                             disable_pbar=True)
        times.append(time.perf_counter() - start)
        texts.append(out[0]["text"] if out else "")
    return "".join(texts), times


def funasr_model(path: str, threads: int):
    import logging

    from funasr import AutoModel

    logging.getLogger().setLevel(logging.WARNING)
    return AutoModel(model=path, disable_update=True, ncpu=threads, device="cpu", log_level="ERROR")


def ours_model(path: str, threads: int, **options):
    """Loaded as the pipeline does (mapped, optimised) and warmed up."""
    from modelscope_paraformer.core import load_model
    from modelscope_paraformer.core.optimize import optimize_for_inference, warm_up

    model = optimize_for_inference(load_model(path, mmap=True), num_threads=threads, **options)
    warm_up(model)
    return model


def worker_paired(config: dict) -> dict:
    """funasr and our fp32 side by side in one process, their calls alternated: offline RTF (inputs up to
    ``funasr_max_seconds``) and streaming latency, the rows whose ratios matter."""
    threads = config["threads"]
    funasr, ours = {"offline": {}, "streaming": {}}, {"offline": {}, "streaming": {}}
    theirs, mine = funasr_model(config["offline"], threads), ours_model(config["offline"], threads)
    theirs.generate(input=make_audio(1.5), disable_pbar=True)  # warm-up
    for seconds in config["durations"]:
        if seconds > config["funasr_max_seconds"]:
            continue
        audio = make_audio(seconds)
        best = alternated({"funasr": lambda: theirs.generate(input=audio, disable_pbar=True),
                           "whole": lambda: mine.transcribe([audio]),
                           "segmented": lambda: mine.recognizer.transcribe_long(audio, batch_size=config["batch_size"])},
                          config["repeats"])
        funasr["offline"][str(seconds)] = {"rtf": best["funasr"][0] / seconds, "text": best["funasr"][1][0]["text"]}
        ours["offline"][str(seconds)] = {"rtf": best["segmented"][0] / seconds, "ids": best["segmented"][1].token_ids,
                                         "whole": {"rtf": best["whole"][0] / seconds,
                                                   "ids": best["whole"][1][0].token_ids}}
    del theirs, mine
    theirs, mine = funasr_model(config["online"], threads), ours_model(config["online"], threads)
    funasr_stream(theirs, make_audio(1.5), CHUNKS["600ms"])  # warm-up
    audio = make_audio(config["stream_seconds"])
    for name, chunk_size in CHUNKS.items():
        runs: dict[str, list] = {"funasr": [], "ours": []}
        for _ in range(max(1, config["repeats"])):
            runs["funasr"].append(funasr_stream(theirs, audio, chunk_size))
            runs["ours"].append(ours_stream(mine, audio, chunk_size))
        for system, key, out in (("funasr", "text", funasr), ("ours", "ids", ours)):
            result, times = best_chunks(runs[system])
            out["streaming"][name] = {**streaming_summary(times, config["stream_seconds"]), key: result}
    return {"funasr": funasr, "ours": ours}


def worker_funasr(config: dict) -> dict:
    """funasr's concurrent streams (its speed rows come from :func:`worker_paired`)."""
    out = {}
    online = funasr_model(config["online"], config["threads"])
    funasr_stream(online, make_audio(1.5), CHUNKS["600ms"])  # warm-up
    stride = 9600
    concurrency_audio = make_audio(config["concurrency_seconds"])

    def trial(count: int) -> float:
        caches = [{} for _ in range(count)]

        def process(batch):
            for stream, k, last in batch:  # funasr streams one at a time (batch size 1)
                online.generate(input=concurrency_audio[k * stride:(k + 1) * stride], cache=caches[stream],
                                is_final=last, chunk_size=CHUNKS["600ms"], encoder_chunk_look_back=4,
                                decoder_chunk_look_back=1, disable_pbar=True)
        return simulate_streams(count, config["concurrency_seconds"], process)

    out["concurrent_streams"], out["concurrency_worst_ms"] = max_streams(config["streams_max"],
                                                                         config["concurrency_seconds"], trial)
    return out


def ours_stream(model, audio, chunk_size: list[int]) -> tuple[list[int], list[float]]:
    from modelscope_paraformer.core import StreamingDecoder

    decoder, stride, times = StreamingDecoder(model, chunk_size, 4, 1), chunk_size[1] * 960, []
    steps = max(1, -(-len(audio) // stride))
    for k in range(steps):
        start = time.perf_counter()
        decoder.feed(audio[k * stride:(k + 1) * stride], is_final=k == steps - 1)
        times.append(time.perf_counter() - start)
    return decoder.result.token_ids, times


def ours_offline(model, config: dict, durations: list[float], whole: bool = False) -> dict:
    """RTF and ids of :meth:`Recognizer.transcribe_long`; with ``whole`` also of one whole-input decode (like funasr)."""
    results = {}
    for seconds in durations:
        audio = make_audio(seconds)
        elapsed, transcript = timed(lambda: model.recognizer.transcribe_long(audio, batch_size=config["batch_size"]),
                                    config["repeats"])
        results[str(seconds)] = {"rtf": elapsed / seconds, "ids": transcript.token_ids}
        if whole and seconds <= config["funasr_max_seconds"]:
            elapsed, transcripts = timed(lambda: model.transcribe([audio]), config["repeats"])
            results[str(seconds)]["whole"] = {"rtf": elapsed / seconds, "ids": transcripts[0].token_ids}
    return results


def concurrent_streams(model, config: dict) -> tuple[int, dict]:
    """How many real-time 600 ms streams one BatchedStreamer serves with every chunk answered in 600 ms."""
    from modelscope_paraformer.core import BatchedStreamer

    audio, stride = make_audio(config["concurrency_seconds"]), 9600

    def trial(count: int) -> float:
        streamer = BatchedStreamer(model, CHUNKS["600ms"], 4, 1)
        for stream in range(count):
            streamer.open(stream)

        def process(batch):
            for stream, k, last in batch:
                streamer.feed(stream, audio[k * stride:(k + 1) * stride], is_final=last)
            streamer.run_until_idle()
        return simulate_streams(count, config["concurrency_seconds"], process)

    return max_streams(config["streams_max"], config["concurrency_seconds"], trial)


def worker_ours(config: dict) -> dict:
    """Ours alone: offline inputs funasr does not run, streaming if funasr is skipped (otherwise both come from
    :func:`worker_paired`), concurrent streams, and the int8 / bf16 variants."""
    threads, out = config["threads"], {"streaming": {}, "variants": {}}
    alone = [seconds for seconds in config["durations"]
             if config["skip_funasr"] or seconds > config["funasr_max_seconds"]]
    offline = ours_model(config["offline"], threads)
    out["offline"] = ours_offline(offline, config, alone, whole=True)
    del offline
    online = ours_model(config["online"], threads)
    audio = make_audio(config["stream_seconds"])
    if config["skip_funasr"]:
        for name, chunk_size in CHUNKS.items():
            ids, times = repeated_stream(lambda: ours_stream(online, audio, chunk_size), config["repeats"])
            out["streaming"][name] = {**streaming_summary(times, config["stream_seconds"]), "ids": ids}
    out["concurrent_streams"], out["concurrency_worst_ms"] = concurrent_streams(online, config)
    del online
    for variant, options in VARIANTS.items():
        model = ours_model(config["offline"], threads, **options)
        result = {"offline": ours_offline(model, config, config["durations"])}
        del model
        model = ours_model(config["online"], threads, **options)
        ids, times = repeated_stream(lambda: ours_stream(model, audio, CHUNKS["600ms"]), config["repeats"])
        result["streaming"] = {"600ms": {**streaming_summary(times, config["stream_seconds"]), "ids": ids}}
        result["concurrent_streams"], result["concurrency_worst_ms"] = concurrent_streams(model, config)
        out["variants"][variant] = result
        del model
    return out


WORKERS = {"rss": worker_rss, "paired": worker_paired, "funasr": worker_funasr, "ours": worker_ours}


def run_worker(name: str, config: dict) -> dict:
    """Run a worker in a fresh interpreter; returns its JSON plus its own peak RSS (MB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(config["threads"]), MKL_NUM_THREADS=str(config["threads"]),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, __file__, "--worker", name, "--config", json.dumps(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"worker {name} ({config.get('system', '')}) failed ({process.returncode}):\n"
                           f"{stderr[-3000:]}")
    result = json.loads(lines[-1][len(MARKER):])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


# --------------------------------------------------------------------------------------- reporting
def merge_paired(report: dict, paired: dict) -> None:
    """Put the side-by-side rows into each system's report, offline inputs in order of duration."""
    for system in ("funasr", "ours"):
        target = report[system]
        offline = {**target.get("offline", {}), **paired[system]["offline"]}
        target["offline"] = dict(sorted(offline.items(), key=lambda item: float(item[0])))
        target["streaming"] = {**target.get("streaming", {}), **paired[system]["streaming"]}


def agreement(pairs: list[tuple[list[int], list[int]]]) -> Optional[dict]:
    if not pairs:
        return None
    identical = sum(a == b for a, b in pairs) / len(pairs)
    similarity = statistics.mean(difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs)
    return {"identical": identical, "char_similarity": similarity, "pairs": len(pairs)}


def compare(report: dict, tokenizer) -> None:
    """Token agreement ours vs funasr (whole-input decodes) and int8/bf16 vs our float32 (same segments)."""
    ours, ref = report["ours"], report.get("funasr")
    if ref is not None:
        pairs = [(ours["offline"][k]["whole"]["ids"], tokenizer.encode(v["text"])) for k, v in ref["offline"].items()]
        pairs += [(ours["streaming"][k]["ids"], tokenizer.encode(v["text"])) for k, v in ref["streaming"].items()]
        report["agreement_with_funasr"] = agreement(pairs)
    for variant, result in ours["variants"].items():
        pairs = [(ours["offline"][k]["ids"], v["ids"]) for k, v in result["offline"].items()]
        pairs.append((ours["streaming"]["600ms"]["ids"], result["streaming"]["600ms"]["ids"]))
        result["agreement_with_fp32"] = agreement(pairs)


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(reference: Optional[float], ours: Optional[float], higher_is_better: bool = False) -> str:
    if reference is None or ours is None or (ours == 0 if not higher_is_better else reference == 0):
        return "n/a"
    return f"{(ours / reference if higher_is_better else reference / ours):.2f}x"


def table(report: dict) -> str:
    ours, ref = report["ours"], report.get("funasr") or {}
    rss_ref, rss_ours = report.get("rss_funasr") or {}, report["rss_ours"]
    rows = [("import (s)", rss_ref.get("import_s"), rss_ours["import_s"], False, 2),
            ("load (s)", rss_ref.get("load_s"), rss_ours["load_s"], False, 2),
            ("first 10 s result (s)", rss_ref.get("first_result_s"), rss_ours["first_result_s"], False, 2),
            ("peak RSS, import+load+10 s (MB)", rss_ref.get("peak_rss_mb"), rss_ours["peak_rss_mb"], False, 0)]
    for seconds, result in ours["offline"].items():
        reference = (ref.get("offline", {}).get(seconds) or {}).get("rtf")
        if "whole" in result:
            rows.append((f"offline RTF {seconds} s, whole input", reference, result["whole"]["rtf"], False, 4))
        rows.append((f"offline RTF {seconds} s, ours VAD-segmented (transcribe_long)", reference, result["rtf"],
                     False, 4))
    for name, result in ours["streaming"].items():
        other = ref.get("streaming", {}).get(name) or {}
        rows.append((f"streaming {name} RTF", other.get("rtf"), result["rtf"], False, 4))
        rows.append((f"streaming {name} chunk latency median (ms)", other.get("chunk_ms_median"),
                     result["chunk_ms_median"], False, 1))
        rows.append((f"streaming {name} chunk latency p95 (ms)", other.get("chunk_ms_p95"),
                     result["chunk_ms_p95"], False, 1))
    rows.append(("real-time 600 ms streams within 600 ms", ref.get("concurrent_streams"),
                 ours["concurrent_streams"], True, 0))
    tried = max(int(n) for n in ours["concurrency_worst_ms"])
    if str(tried) in ref.get("concurrency_worst_ms", {}):
        rows.append((f"worst chunk latency, {tried} streams (ms)", ref["concurrency_worst_ms"][str(tried)],
                     ours["concurrency_worst_ms"][str(tried)], False, 1))
    lines = ["| metric | funasr | ours | ours vs funasr |", "| --- | ---: | ---: | ---: |"]
    for label, a, b, higher, digits in rows:
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio(a, b, higher)} |")
    agree = report.get("agreement_with_funasr")
    if agree:
        lines.append(f"| token agreement with funasr (identical sequences) | | {agree['identical']:.2f} "
                     f"({agree['pairs']} inputs) | |")
    lines += ["", "| ours variant | metric | value | vs our fp32 |", "| --- | --- | ---: | ---: |"]
    for variant, result in ours["variants"].items():
        for seconds, value in result["offline"].items():
            lines.append(f"| {variant} | offline RTF {seconds} s (transcribe_long) | {value['rtf']:.4f} | "
                         f"{ratio(ours['offline'][seconds]['rtf'], value['rtf'])} |")
        stream = result["streaming"]["600ms"]
        lines.append(f"| {variant} | streaming 600ms RTF | {stream['rtf']:.4f} | "
                     f"{ratio(ours['streaming']['600ms']['rtf'], stream['rtf'])} |")
        lines.append(f"| {variant} | real-time 600 ms streams within 600 ms | {result['concurrent_streams']} | "
                     f"{ratio(ours['concurrent_streams'], result['concurrent_streams'], True)} |")
        rss = (report.get(f"rss_ours_{variant}") or {}).get("peak_rss_mb")
        if rss is not None:
            lines.append(f"| {variant} | peak RSS, import+load+10 s (MB) | {rss:.0f} | "
                         f"{ratio(rss_ours['peak_rss_mb'], rss)} |")
        agree = result["agreement_with_fp32"]
        lines.append(f"| {variant} | tokens identical to fp32 / char similarity | {agree['identical']:.2f} / "
                     f"{agree['char_similarity']:.3f} | |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_models(cache: Path, quick: bool) -> dict[str, str]:
    from modelscope_paraformer.tools.random_model import build_random_model

    size = "quick" if quick else "full"
    paths = {}
    for variant in ("offline", "online"):
        path = cache / f"{size}-{variant}"
        if not (path / "model.pt").is_file():
            print(f"building {path} ...", file=sys.stderr)
            blocks = (6, 3) if quick else (None, None)
            build_random_model(path, variant, *blocks, seed=0)
        paths[variant] = str(path)
    return paths


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 encoder / 3 decoder blocks at full width")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--funasr-max-seconds", type=float, default=60.0,
                        help="skip funasr offline runs longer than this (300 s is slow and memory-hungry)")
    parser.add_argument("--stream-seconds", type=float, help="streaming audio length (default: min(60, max dur))")
    parser.add_argument("--concurrency-seconds", type=float, default=10.0)
    parser.add_argument("--streams-max", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3,
                        help="best of N for offline runs and per streaming chunk (this shared VM moves by +-20 %%)")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per batch for long audio")
    parser.add_argument("--skip-funasr", action="store_true")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "modelscope_paraformer" / "bench"))
    parser.add_argument("--json-out")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(WORKERS[args.worker](json.loads(args.config))), flush=True)
        return
    models = build_models(Path(args.cache_dir).expanduser(), args.quick)
    durations = [int(d) if float(d).is_integer() else d for d in args.durations]
    config = {"threads": args.threads, "durations": durations, "funasr_max_seconds": args.funasr_max_seconds,
              "stream_seconds": args.stream_seconds or min(60.0, max(durations)),
              "concurrency_seconds": args.concurrency_seconds, "streams_max": args.streams_max,
              "repeats": args.repeats, "batch_size": args.batch_size, "skip_funasr": args.skip_funasr, **models}
    report = {"config": {**config, "quick": args.quick, "python": platform.python_version(),
                         "cpu": cpu_name(), "cores": os.cpu_count()}}
    systems = ["ours"] if args.skip_funasr else ["funasr", "ours"]
    for system in systems:  # one heavy process at a time
        print(f"measuring {system}: import/load/RSS ...", file=sys.stderr)
        report[f"rss_{system}"] = run_worker("rss", {**config, "system": system})
    for variant in VARIANTS:
        report[f"rss_ours_{variant}"] = run_worker("rss", {**config, "system": "ours", "variant": variant})
    for system in systems:
        print(f"measuring {system}: speed ...", file=sys.stderr)
        report[system] = run_worker(system, config)
    if not args.skip_funasr:
        print("measuring funasr and ours side by side: offline and streaming speed ...", file=sys.stderr)
        merge_paired(report, run_worker("paired", config))
    from modelscope_paraformer.core.tokenizer import CharTokenizer

    compare(report, CharTokenizer.from_file(Path(models["offline"]) / "tokens.json"))
    print(table(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
