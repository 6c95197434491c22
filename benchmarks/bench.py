"""Side-by-side CPU benchmark: funasr (the reference), this package on its two engines (PyTorch; onnxruntime fp32
and int8) and sherpa-onnx (the streaming peer), same weights, audio and threads, in one run.

    python benchmarks/bench.py                       # Paraformer-large (random weights), 10/30/60/300 s
    python benchmarks/bench.py --quick --durations 10 --streams-max 4 --repeats 1 --json-out /tmp/bench.json

Systems (each in its own processes):

- ``funasr``: funasr's AutoModel (``ncpu=threads``), the reference;
- ``torch``: ours on the PyTorch engine (float32, as ``pipeline()`` loads it: mapped, packed), and its
  ``torch-int8`` / ``torch-bf16`` variants;
- ``onnx`` / ``onnx-int8``: ours on the onnxruntime engine, dirs written by ``python -m modelscope_paraformer export``
  (``--quantize int8``) from the same random model dirs; these processes never import torch;
- ``sherpa`` / ``sherpa-int8`` (streaming only): sherpa-onnx's OnlineRecognizer on FunASR's own ONNX export of the
  same online model dir (``benchmarks/sherpa.py``). Its encoder has no look-back caches (each 600 ms chunk sees
  5 + 3 frames of re-fed context), so it is a different, cheaper computation, not the same algorithm sped up.

How the calls are made side by side: onnxruntime's threads spin for a while after every run, so a torch or funasr
call made in the same process right after an onnxruntime call is starved on 2 cores; and this shared VM's speed
drifts by +-20 % over minutes (runs made minutes apart moved a 10 s ratio between 0.94x and 1.05x). So the
orchestrator (this process, which measures nothing) keeps one worker process per system alive, each loaded and
warmed up, and sends them one call at a time over a pipe: the same measurement (say offline 10 s, or one 60 s
stream in 600 ms chunks) goes to every system in turn, then the next repeat (starting with the next system), and
so on; idle workers block on their pipe, and a short pause after each call lets the last worker's spinning
threads sleep. Each number is the best of ``--repeats`` calls (streaming: each chunk's best). Two phases, so that
at most one model per system is in memory: offline (offline dirs), then streaming (online dirs: per-chunk
latency, RTF, then each system's concurrency, one system at a time).

Also measured, each in a fresh process, one at a time: import, load, first 10 s result and peak RSS
(``ru_maxrss`` of a child that imports, loads the offline dir and decodes 10 s); the ONNX child checks that torch
was never imported. Exports (ours fp32/int8 offline/online, FunASR's for sherpa-onnx) are cached next to the
random models and rebuilt when the export code or the checkpoint changes; their times are reported.

Measured: offline RTF per duration (whole input as funasr does, ``Recognizer.transcribe``, and ours through
:meth:`Recognizer.transcribe_long`: VAD segments in length-sorted batches), streaming RTF and per-chunk compute
latency for 600 and 480 ms chunks (sherpa-onnx: 600 ms only, its chunk is fixed at 61 fbank frames), the number of
concurrent real-time 600 ms streams served with every chunk answered within 600 ms (ours: the batched scheduler
on either engine; funasr and sherpa-onnx: one stream after the other, their streaming batch size being 1), and
token agreement: torch vs funasr, onnx fp32 vs torch fp32 (expected identical), int8 / bf16 vs their fp32,
sherpa-onnx vs funasr streaming.

Concurrency is simulated on a virtual clock: all streams start together and each sends 600 ms of audio
every 600 ms; the scheduler processes whatever has arrived, and a chunk's latency is the time from its
arrival to the end of the processing that answered it (compute is measured, waiting is not slept).
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
EXAMPLE = REPO / "examples" / "asr_example_zh.wav"
MARKER = "BENCH_RESULT "
CHUNKS = {"600ms": [0, 10, 5], "480ms": [0, 8, 4]}
SR = 16000

# name -> how it runs; "phases": which measurements it takes part in
SYSTEMS: dict[str, dict] = {
    "funasr": {"family": "funasr", "label": "funasr"},
    "torch": {"family": "torch", "options": {}, "label": "ours torch fp32"},
    "onnx": {"family": "onnx", "precision": "fp32", "label": "ours onnx fp32"},
    "onnx-int8": {"family": "onnx", "precision": "int8", "label": "ours onnx int8"},
    "torch-int8": {"family": "torch", "options": {"quantize": "int8"}, "label": "ours torch int8"},
    "torch-bf16": {"family": "torch", "options": {"dtype": "bf16"}, "label": "ours torch bf16"},
    "sherpa": {"family": "sherpa", "precision": "fp32", "label": "sherpa-onnx fp32"},
    "sherpa-int8": {"family": "sherpa", "precision": "int8", "label": "sherpa-onnx int8"},
}
MAIN_COLUMNS = ["funasr", "torch", "onnx", "onnx-int8", "sherpa", "sherpa-int8"]
VARIANTS = {"torch-int8": "int8", "torch-bf16": "bf16"}  # the torch variants' table, vs torch fp32


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


def streaming_summary(times: list[float], seconds: float) -> dict:
    return {"rtf": sum(times) / seconds, "chunk_ms_median": 1000 * statistics.median(times),
            "chunk_ms_p95": 1000 * percentile(times, 95), "chunks": len(times)}


# ------------------------------------------------------------------------------------------ systems
def funasr_model(path: str, threads: int):
    import logging

    from funasr import AutoModel

    logging.getLogger().setLevel(logging.WARNING)
    return AutoModel(model=path, disable_update=True, ncpu=threads, device="cpu", log_level="ERROR")


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


def ours_model(system: str, path: str, threads: int):
    """Loaded as the pipeline does (torch: mapped, optimised; onnx: load_for_inference) and warmed up."""
    spec = SYSTEMS[system]
    if spec["family"] == "onnx":
        from modelscope_paraformer.core.loading import load_for_inference

        model = load_for_inference(path, num_threads=threads)
    else:
        from modelscope_paraformer.core import load_model
        from modelscope_paraformer.core.optimize import optimize_for_inference

        model = optimize_for_inference(load_model(path, mmap=True), num_threads=threads, **spec["options"])
    warm_up(model)
    return model


def warm_up(model, seconds: float = 3.0) -> None:
    """Decode a little noise once (two lengths), so that one-off kernel selection and allocations are not timed."""
    import numpy as np

    noise = np.random.default_rng(0).normal(0.0, 0.01, int(seconds * SR)).astype(np.float32)
    model.transcribe([noise, noise[: len(noise) // 2]], batch_size=2)


def ours_stream(model, audio, chunk_size: list[int]) -> tuple[list[int], list[float]]:
    from modelscope_paraformer.core import StreamingDecoder

    decoder, stride, times = StreamingDecoder(model, chunk_size, 4, 1), chunk_size[1] * 960, []
    steps = max(1, -(-len(audio) // stride))
    for k in range(steps):
        start = time.perf_counter()
        decoder.feed(audio[k * stride:(k + 1) * stride], is_final=k == steps - 1)
        times.append(time.perf_counter() - start)
    return decoder.result.token_ids, times


def system_path(config: dict, system: str, phase: str) -> str:
    """The model dir a system loads in a phase ("offline" | "online")."""
    spec = SYSTEMS[system]
    if spec["family"] == "onnx":
        return config["onnx_dirs"][spec["precision"]][phase]
    if spec["family"] == "sherpa":
        return config["sherpa_dir"]
    return config[phase]


class Server:
    """One system in a worker process: loaded for one phase, answering the orchestrator's calls."""

    def __init__(self, config: dict):
        self.config, self.system = config, config["system"]
        self.family = SYSTEMS[self.system]["family"]
        self.phase, threads = config["phase"], config["threads"]
        path = system_path(config, self.system, self.phase)
        if self.family == "funasr":
            self.model = funasr_model(path, threads)
            if self.phase == "offline":
                self.model.generate(input=make_audio(1.5), disable_pbar=True)
            else:
                funasr_stream(self.model, make_audio(3), CHUNKS["600ms"])
        elif self.family == "sherpa":
            from sherpa import SherpaParaformer

            self.model = SherpaParaformer(path, SYSTEMS[self.system]["precision"], threads)
            self.model.stream(make_audio(3))
        else:
            self.model = ours_model(self.system, path, threads)
            if self.phase == "online":  # every encoder cache length once
                ours_stream(self.model, make_audio(4), CHUNKS["600ms"])
        self.audio: dict[float, Any] = {}

    def _audio(self, seconds: float):
        if seconds not in self.audio:
            self.audio[seconds] = make_audio(seconds)
        return self.audio[seconds]

    def handle(self, request: dict) -> dict:
        op = request["op"]
        if op == "info":
            return {"torch_imported": "torch" in sys.modules, "pid": os.getpid()}
        if op == "offline":
            return self.offline(self._audio(request["seconds"]), request["mode"])
        if op == "stream":
            return self.stream(self._audio(request["seconds"]), request["chunk"])
        if op == "concurrency":
            streams, worst = self.concurrency()
            return {"concurrent_streams": streams, "concurrency_worst_ms": worst}
        raise ValueError(f"unknown op {op!r}")

    def offline(self, audio, mode: str) -> dict:
        start = time.perf_counter()
        if self.family == "funasr":
            text = self.model.generate(input=audio, disable_pbar=True)[0]["text"]
            return {"elapsed": time.perf_counter() - start, "text": text}
        if mode == "whole":
            ids = self.model.transcribe([audio])[0].token_ids
        else:
            ids = self.model.recognizer.transcribe_long(audio, batch_size=self.config["batch_size"]).token_ids
        return {"elapsed": time.perf_counter() - start, "ids": ids}

    def stream(self, audio, chunk: str) -> dict:
        if self.family == "funasr":
            text, times = funasr_stream(self.model, audio, CHUNKS[chunk])
            return {"text": text, "times": times}
        if self.family == "sherpa":
            ids, times = self.model.stream(audio, CHUNKS[chunk][1] * 960)
        else:
            ids, times = ours_stream(self.model, audio, CHUNKS[chunk])
        return {"ids": ids, "times": times}

    def concurrency(self) -> tuple[int, dict]:
        seconds, stride = self.config["concurrency_seconds"], 9600
        audio = make_audio(seconds)
        if self.family == "funasr":
            def trial(count: int) -> float:
                caches = [{} for _ in range(count)]

                def process(batch):
                    for stream, k, last in batch:  # funasr streams one at a time (batch size 1)
                        self.model.generate(input=audio[k * stride:(k + 1) * stride], cache=caches[stream],
                                            is_final=last, chunk_size=CHUNKS["600ms"], encoder_chunk_look_back=4,
                                            decoder_chunk_look_back=1, disable_pbar=True)
                return simulate_streams(count, seconds, process)
        elif self.family == "sherpa":
            def trial(count: int) -> float:
                streams = [self.model.new_stream() for _ in range(count)]

                def process(batch):
                    for stream, k, last in batch:  # sherpa-onnx decodes streams one after the other
                        self.model.feed(streams[stream], audio[k * stride:(k + 1) * stride], last)
                return simulate_streams(count, seconds, process)
        else:
            from modelscope_paraformer.core import BatchedStreamer

            def trial(count: int) -> float:
                streamer = BatchedStreamer(self.model, CHUNKS["600ms"], 4, 1)
                for stream in range(count):
                    streamer.open(stream)

                def process(batch):
                    for stream, k, last in batch:
                        streamer.feed(stream, audio[k * stride:(k + 1) * stride], is_final=last)
                    streamer.run_until_idle()
                return simulate_streams(count, seconds, process)
        return max_streams(self.config["streams_max"], seconds, trial)


def worker_serve(config: dict) -> dict:
    """Load, say ready, then answer one JSON request per stdin line until "exit"."""
    started = time.perf_counter()
    server = Server(config)
    print(MARKER + json.dumps({"ready": True, "load_s": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        try:
            reply = server.handle(request)
        except Exception as error:  # reported to the orchestrator, which stops
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(MARKER + json.dumps(reply), flush=True)
    return {"done": True}


def worker_rss(config: dict) -> dict:
    """Import, load the offline dir as the pipeline does, decode 10 s once; the parent reads this child's peak RSS.
    The ONNX systems import no torch (checked)."""
    system, family = config["system"], SYSTEMS[config["system"]]["family"]
    start = time.perf_counter()
    if family == "funasr":
        from funasr import AutoModel
    elif family == "onnx":
        from modelscope_paraformer.core.engines import onnx_engine  # noqa: F401  (onnxruntime)
        from modelscope_paraformer.core.loading import load_for_inference
    else:
        from modelscope_paraformer.core import load_model
        from modelscope_paraformer.core.optimize import optimize_for_inference
    imported = time.perf_counter()
    audio = make_audio(10)
    path = system_path(config, system, "offline")
    if family == "funasr":
        model = AutoModel(model=path, disable_update=True, ncpu=config["threads"], device="cpu", log_level="ERROR")
        loaded = time.perf_counter()
        model.generate(input=audio, disable_pbar=True)
    else:
        if family == "onnx":
            model = load_for_inference(path, num_threads=config["threads"])
        else:
            model = optimize_for_inference(load_model(path, mmap=True), num_threads=config["threads"],
                                           **SYSTEMS[system]["options"])
        loaded = time.perf_counter()
        model.recognizer.transcribe_long(audio)
    done = time.perf_counter()
    return {"import_s": imported - start, "load_s": loaded - imported, "first_result_s": done - loaded,
            "torch_imported": "torch" in sys.modules, "peak_rss_mb": own_peak_rss_mb()}


def own_peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM). Not ``ru_maxrss`` from the parent's wait4: Linux carries
    the forking parent's high-water mark into the child's across exec, so every child would report at least the
    parent's RSS."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


WORKERS = {"rss": worker_rss, "serve": worker_serve}


def worker_env(config: dict) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(config["threads"]), MKL_NUM_THREADS=str(config["threads"]),
                PYTHONPATH=os.pathsep.join([str(REPO), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]))


def raise_if_failed(name: str, config: dict, code: int, stdout: str, stderr: str) -> None:
    if code != 0 or not any(line.startswith(MARKER) for line in stdout.splitlines()):
        raise RuntimeError(f"worker {name} ({config.get('system', '')}) failed ({code}):\n{stderr[-3000:]}")


def run_rss_worker(config: dict) -> dict:
    """:func:`worker_rss` in a fresh interpreter, with this child's own peak RSS (MB)."""
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, __file__, "--worker", "rss", "--config", json.dumps(config)],
                                   stdout=subprocess.PIPE, stderr=err, env=worker_env(config), text=True)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        raise_if_failed("rss", config, process.returncode, stdout, err.read())
    result = json.loads([line for line in stdout.splitlines() if line.startswith(MARKER)][-1][len(MARKER):])
    result.setdefault("peak_rss_mb", usage.ru_maxrss / 1024)  # KiB on Linux; inflated by the parent's RSS
    return result


class Worker:
    """A long-lived :func:`worker_serve` process; :meth:`call` sends one request and waits for its answer."""

    def __init__(self, system: str, config: dict, phase: str):
        self.system = system
        self.config = {**config, "system": system, "phase": phase}
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "serve", "--config", json.dumps(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=worker_env(config), text=True)
        self.ready: Optional[dict] = None

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MARKER):
                reply = json.loads(line[len(MARKER):])
                if "error" in reply:
                    raise RuntimeError(f"{self.system}: {reply['error']}\n{self._log_tail()}")
                return reply
        self.process.wait()
        raise RuntimeError(f"worker {self.system} ({self.config['phase']}) exited ({self.process.returncode}):\n"
                           f"{self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def wait_ready(self) -> dict:
        if self.ready is None:
            self.ready = self._read()
        return self.ready

    def call(self, **request) -> dict:
        self.wait_ready()
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_workers(systems: list[str], config: dict, phase: str) -> dict[str, Worker]:
    """One worker per system, loading together (nothing is timed while they load)."""
    workers = {system: Worker(system, config, phase) for system in systems}
    try:
        for worker in workers.values():
            worker.wait_ready()
    except BaseException:
        for worker in workers.values():
            worker.close()
        raise
    return workers


def in_turn(workers: dict[str, Worker], groups: list[list[tuple[str, dict]]], repeats: int, settle: float,
            progress: str = "") -> dict[tuple, list[dict]]:
    """Every group's calls ((system, request)) one after the other, ``repeats`` times (each repeat starting one
    call later in the group); {(system, request as JSON): [replies]}."""
    replies: dict[tuple, list[dict]] = {}
    for repeat in range(max(1, repeats)):
        for group in groups:
            shift = repeat % len(group)
            for system, request in group[shift:] + group[:shift]:
                reply = workers[system].call(**request)
                replies.setdefault((system, json.dumps(request, sort_keys=True)), []).append(reply)
                time.sleep(settle)  # onnxruntime's spinning threads (and sherpa-onnx's) go to sleep
        if progress:
            print(f"  {progress}: repeat {repeat + 1}/{max(1, repeats)} done", file=sys.stderr)
    return replies


def key(request: dict) -> str:
    return json.dumps(request, sort_keys=True)


# ------------------------------------------------------------------------------------------ phases
def offline_phase(systems: list[str], config: dict) -> dict[str, dict]:
    """Offline RTF per duration, every system's calls in turn. {system: {seconds: {mode: {rtf, ids|text}}}}."""
    systems = [s for s in systems if SYSTEMS[s]["family"] != "sherpa"]
    groups = []
    for seconds in config["durations"]:
        group = []
        for system in systems:
            family = SYSTEMS[system]["family"]
            whole = seconds <= config["funasr_max_seconds"]
            modes = ["whole"] if family == "funasr" else (["whole", "segmented"] if system in ("torch", "onnx",
                                                                                              "onnx-int8")
                                                          else ["segmented"])
            for mode in modes:
                if mode == "whole" and not whole:
                    continue
                group.append((system, {"op": "offline", "seconds": seconds, "mode": mode}))
        groups.append(group)
    workers = start_workers(systems, config, "offline")
    try:
        replies = in_turn(workers, groups, config["repeats"], config["settle"], "offline")
    finally:
        for worker in workers.values():
            worker.close()
    out: dict[str, dict] = {system: {} for system in systems}
    for group in groups:
        for system, request in group:
            runs = replies[(system, key(request))]
            best = min(run["elapsed"] for run in runs)
            result = {k: v for k, v in runs[-1].items() if k != "elapsed"}
            out[system].setdefault(str(request["seconds"]), {})[request["mode"]] = {
                "rtf": best / request["seconds"], **result}
    return out


def streaming_phase(systems: list[str], config: dict) -> dict[str, dict]:
    """Streaming latency per chunk size, every system's streams in turn; then each system's concurrency alone."""
    chunk_systems = {"600ms": systems,
                     "480ms": [s for s in systems if s in ("funasr", "torch", "onnx", "onnx-int8")]}
    seconds = config["stream_seconds"]
    groups = [[(system, {"op": "stream", "seconds": seconds, "chunk": chunk}) for system in members]
              for chunk, members in chunk_systems.items() if members]
    workers = start_workers(systems, config, "online")
    out: dict[str, dict] = {system: {"streaming": {}} for system in systems}
    try:
        info = {system: worker.call(op="info") for system, worker in workers.items()}
        replies = in_turn(workers, groups, config["repeats"], config["settle"], "streaming")
        for group in groups:
            for system, request in group:
                runs = [(r.get("ids", r.get("text")), r["times"]) for r in replies[(system, key(request))]]
                result, times = best_chunks(runs)
                field = "text" if SYSTEMS[system]["family"] == "funasr" else "ids"
                out[system]["streaming"][request["chunk"]] = {**streaming_summary(times, seconds), field: result}
        for system, worker in workers.items():
            if SYSTEMS[system]["family"] == "onnx":
                out[system]["torch_imported_streaming"] = info[system]["torch_imported"]
            if config["streams_max"] > 0:
                print(f"  concurrency: {system} ...", file=sys.stderr)
                out[system].update(worker.call(op="concurrency"))
                time.sleep(config["settle"])
    finally:
        for worker in workers.values():
            worker.close()
    return out


# ------------------------------------------------------------------------------------------ exports
def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        if path.suffix == ".py":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix == ".onnx") / 1e6


def cached_build(out: Path, stamp: str, build: Callable[[], dict], force: bool) -> dict:
    """Build ``out`` unless its stamp file (next to it) matches; returns the build record (times), cached or not."""
    record_path = out.parent / f"{out.name}.bench.json"
    if not force and out.is_dir() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("stamp") == stamp:
            return {**record, "cached": True}
    print(f"building {out} ...", file=sys.stderr)
    record = {**build(), "stamp": stamp}
    record_path.write_text(json.dumps(record, indent=1))
    return {**record, "cached": False}


def export_ours(source: str, out: Path, precision: str, threads: int) -> dict:
    """``python -m modelscope_paraformer export`` (a fresh process: wall time includes its start-up)."""
    command = [sys.executable, "-m", "modelscope_paraformer", "export", "--model", source, "--out", str(out)]
    if precision == "int8":
        command += ["--quantize", "int8"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=worker_env({"threads": threads}),
                          check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"export failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    reported = None
    for line in done.stdout.splitlines():  # "OUT\t(12.3 s)"
        if line.rstrip().endswith(" s)"):
            reported = float(line.rsplit("(", 1)[1].split()[0])
    return {"command": " ".join(command[1:]), "wall_s": wall, "export_s": reported, "size_mb": dir_size_mb(out)}


def export_sherpa(source: str, out: Path, threads: int) -> dict:
    command = [sys.executable, str(BENCH_DIR / "sherpa.py"), "export", source, str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=worker_env({"threads": threads}),
                          check=False)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("SHERPA_EXPORT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"FunASR export failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    info = json.loads(lines[-1].split(" ", 1)[1])
    return {"command": " ".join(command[1:]), "wall_s": wall, "export_s": info["funasr_export_s"],
            "size_mb": dir_size_mb(out), "sizes_mb": info["sizes_mb"]}


def prepare_exports(models: dict[str, str], cache: Path, size: str, systems: list[str], threads: int,
                    force: bool) -> tuple[dict, dict, Optional[str]]:
    """(onnx dirs {precision: {phase: dir}}, export records, sherpa dir) for the systems that need them."""
    from importlib import metadata

    exporter = REPO / "modelscope_paraformer" / "core" / "engines" / "onnx_export.py"
    dirs: dict[str, dict] = {}
    records: dict[str, dict] = {}
    precisions = sorted({SYSTEMS[s]["precision"] for s in systems if SYSTEMS[s]["family"] == "onnx"})
    for precision in precisions:
        for phase in ("offline", "online"):
            out = cache / f"{size}-{phase}-onnx-{precision}"
            source = models[phase]
            stamp = file_digest(exporter, Path(source) / "model.pt")
            records[f"ours {phase} {precision}"] = cached_build(
                out, stamp, lambda source=source, out=out, precision=precision: export_ours(source, out, precision,
                                                                                             threads), force)
            dirs.setdefault(precision, {})[phase] = str(out)
    sherpa_dir = None
    if any(SYSTEMS[s]["family"] == "sherpa" for s in systems):
        out = cache / f"{size}-online-funasr-onnx"
        stamp = file_digest(BENCH_DIR / "sherpa.py", Path(models["online"]) / "model.pt")
        stamp += metadata.version("funasr")
        records["funasr online fp32+int8 (sherpa-onnx)"] = cached_build(
            out, stamp, lambda: export_sherpa(models["online"], out, threads), force)
        sherpa_dir = str(out)
    return dirs, records, sherpa_dir


# --------------------------------------------------------------------------------------- reporting
def agreement(pairs: list[tuple[list[int], list[int]]]) -> Optional[dict]:
    if not pairs:
        return None
    identical = sum(a == b for a, b in pairs) / len(pairs)
    similarity = statistics.mean(difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs)
    return {"identical": identical, "char_similarity": similarity, "pairs": len(pairs)}


def compare(results: dict, tokenizer) -> dict:
    """Token agreement of the pairs that should agree (and of those that need not: sherpa-onnx vs funasr)."""
    def ids(system: str, where: str, key_: str, mode: Optional[str] = None):
        entry = (results.get(system) or {}).get(where, {}).get(key_)
        if entry is not None and mode is not None:
            entry = entry.get(mode)
        if entry is None:
            return None
        return entry["ids"] if "ids" in entry else tokenizer.encode(entry["text"])

    def pairs(a: str, b: str, offline_modes: list[str], chunks: list[str]) -> Optional[dict]:
        found = []
        for seconds in (results.get(a) or {}).get("offline", {}):
            for mode in offline_modes:
                mode_b = "whole" if b == "funasr" else mode
                x, y = ids(a, "offline", seconds, mode), ids(b, "offline", seconds, mode_b)
                if x is not None and y is not None:
                    found.append((x, y))
        for chunk in chunks:
            x, y = ids(a, "streaming", chunk), ids(b, "streaming", chunk)
            if x is not None and y is not None:
                found.append((x, y))
        return agreement(found)

    both = ["whole", "segmented"]
    table = {
        "ours torch fp32 vs funasr": pairs("torch", "funasr", ["whole"], list(CHUNKS)),
        "ours onnx fp32 vs ours torch fp32": pairs("onnx", "torch", both, list(CHUNKS)),
        "ours onnx int8 vs ours onnx fp32": pairs("onnx-int8", "onnx", both, list(CHUNKS)),
        "ours onnx int8 vs funasr": pairs("onnx-int8", "funasr", ["whole"], list(CHUNKS)),
        "ours torch int8 vs ours torch fp32": pairs("torch-int8", "torch", ["segmented"], ["600ms"]),
        "ours torch bf16 vs ours torch fp32": pairs("torch-bf16", "torch", ["segmented"], ["600ms"]),
        "sherpa-onnx fp32 vs funasr streaming (different computation)": pairs("sherpa", "funasr", [], ["600ms"]),
        "sherpa-onnx int8 vs sherpa-onnx fp32": pairs("sherpa-int8", "sherpa", [], ["600ms"]),
    }
    return {name: value for name, value in table.items() if value is not None}


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(reference: Optional[float], ours: Optional[float], higher_is_better: bool = False) -> Optional[float]:
    if reference is None or ours is None or (ours == 0 if not higher_is_better else reference == 0):
        return None
    return ours / reference if higher_is_better else reference / ours


def metric_rows(report: dict) -> list[tuple[str, dict, bool, int]]:
    """(label, {system: value}, higher is better, digits) for the main table."""
    results, rss = report["results"], report["rss"]

    def get(system: str, *path):
        value: Any = results.get(system)
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    rows = []
    for field, label, digits in (("import_s", "import (s)", 2), ("load_s", "load (s)", 2),
                                 ("first_result_s", "first 10 s result (s)", 2),
                                 ("peak_rss_mb", "peak RSS, import+load+10 s (MB)", 0)):
        rows.append((label, {s: (rss.get(s) or {}).get(field) for s in MAIN_COLUMNS}, False, digits))
    for seconds in [str(d) for d in report["config"]["durations"]]:
        whole = {s: get(s, "offline", seconds, "whole", "rtf") for s in MAIN_COLUMNS}
        if any(v is not None for v in whole.values()):
            rows.append((f"offline RTF {seconds} s, whole input", whole, False, 4))
        segmented = {s: get(s, "offline", seconds, "segmented", "rtf") for s in MAIN_COLUMNS if s != "funasr"}
        segmented["funasr"] = whole.get("funasr")
        rows.append((f"offline RTF {seconds} s, ours VAD-segmented (transcribe_long; funasr: whole)", segmented,
                     False, 4))
    for chunk in CHUNKS:
        for field, label, digits in (("rtf", "RTF", 4), ("chunk_ms_median", "chunk latency median (ms)", 1),
                                     ("chunk_ms_p95", "chunk latency p95 (ms)", 1)):
            values = {s: get(s, "streaming", chunk, field) for s in MAIN_COLUMNS}
            if any(v is not None for v in values.values()):
                rows.append((f"streaming {chunk} {label}", values, False, digits))
    rows.append(("real-time 600 ms streams within 600 ms", {s: get(s, "concurrent_streams") for s in MAIN_COLUMNS},
                 True, 0))
    return rows


def table(report: dict) -> str:
    present = [s for s in MAIN_COLUMNS if s in report["results"] or s in report["rss"]]
    lines = ["| metric | " + " | ".join(SYSTEMS[s]["label"] for s in present) + " |",
             "| --- |" + " ---: |" * len(present)]
    for label, values, higher, digits in metric_rows(report):
        cells = []
        for system in present:
            value = values.get(system)
            cell = fmt(value, digits)
            if system != "funasr" and value is not None:
                r = ratio(values.get("funasr"), value, higher)
                if r is not None:
                    cell += f" ({r:.2f}x)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(x): vs funasr (higher is better). sherpa-onnx: FunASR's ONNX export, no encoder look-back caches "
                 "(a different, cheaper computation); 600 ms chunks only.")

    results = report["results"]
    torch_fp32 = results.get("torch") or {}
    variant_lines = []
    for system, variant in VARIANTS.items():
        result = results.get(system)
        if not result:
            continue
        for seconds, value in result.get("offline", {}).items():
            base = torch_fp32.get("offline", {}).get(seconds, {}).get("segmented", {}).get("rtf")
            rtf = value["segmented"]["rtf"]
            variant_lines.append(f"| {variant} | offline RTF {seconds} s (transcribe_long) | {rtf:.4f} | "
                                 f"{fmt(ratio(base, rtf), 2)}x |")
        stream, base = result["streaming"].get("600ms"), torch_fp32.get("streaming", {}).get("600ms", {})
        if stream:
            variant_lines.append(f"| {variant} | streaming 600ms RTF | {stream['rtf']:.4f} | "
                                 f"{fmt(ratio(base.get('rtf'), stream['rtf']), 2)}x |")
        if "concurrent_streams" in result:
            streams = result["concurrent_streams"]
            variant_lines.append(f"| {variant} | real-time 600 ms streams within 600 ms | {streams} | "
                                 f"{fmt(ratio(torch_fp32.get('concurrent_streams'), streams, True), 2)}x |")
        rss, base_rss = (report["rss"].get(system) or {}).get("peak_rss_mb"), \
            (report["rss"].get("torch") or {}).get("peak_rss_mb")
        if rss is not None:
            variant_lines.append(f"| {variant} | peak RSS, import+load+10 s (MB) | {rss:.0f} | "
                                 f"{fmt(ratio(base_rss, rss), 2)}x |")
    if variant_lines:
        lines += ["", "| ours torch variant | metric | value | vs our torch fp32 |", "| --- | --- | ---: | ---: |"]
        lines += variant_lines

    if report.get("agreement"):
        lines += ["", "| token agreement | identical sequences | char similarity | inputs |",
                  "| --- | ---: | ---: | ---: |"]
        for name, value in report["agreement"].items():
            lines.append(f"| {name} | {value['identical']:.2f} | {value['char_similarity']:.3f} | {value['pairs']} |")

    if report.get("targets"):
        lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
        for target in report["targets"]:
            lines.append(f"| {target['target']} | {target['measured']} | {target['met']} |")

    if report.get("exports"):
        header = "| export (cached next to the random models) | time (s) | wall incl. start-up (s) | graphs (MB) | |"
        lines += ["", header, "| --- | ---: | ---: | ---: | --- |"]
        for name, record in report["exports"].items():
            when = "cached from an earlier run" if record.get("cached") else "this run"
            lines.append(f"| {name} | {fmt(record.get('export_s'), 1)} | {fmt(record.get('wall_s'), 1)} | "
                         f"{record.get('size_mb', 0):.0f} | {when} |")
    return "\n".join(lines)


def targets(report: dict) -> list[dict]:
    """The issue's targets (2 threads, Paraformer-large) against this run."""
    results, rss, out = report["results"], report["rss"], []

    def get(system, *path):
        value: Any = results.get(system)
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def add(name: str, value: Optional[float], goal: float, unit: str = "x", higher: bool = True, digits: int = 2):
        if value is None:
            return
        met = value >= goal if higher else value <= goal
        out.append({"target": name, "value": value, "goal": goal,
                    "measured": f"{value:.{digits}f}{unit}", "met": "yes" if met else "**no**"})

    for system, goal in (("onnx", 3.0), ("onnx-int8", 6.0)):
        label = SYSTEMS[system]["label"]
        add(f"streaming 600 ms RTF, {label} vs funasr >= {goal:g}x",
            ratio(get("funasr", "streaming", "600ms", "rtf"), get(system, "streaming", "600ms", "rtf")), goal)
    for system, goal in (("onnx", 1.5), ("onnx-int8", 3.0)):
        for seconds in [str(d) for d in report["config"]["durations"] if 10 <= d <= 30]:
            add(f"offline {seconds} s RTF (whole input), {SYSTEMS[system]['label']} vs funasr >= {goal:g}x",
                ratio(get("funasr", "offline", seconds, "whole", "rtf"),
                      get(system, "offline", seconds, "whole", "rtf")), goal)
    add("real-time 600 ms streams, ours onnx int8 >= 40", get("onnx-int8", "concurrent_streams"), 40, "", digits=0)
    peak = (rss.get("onnx-int8") or {}).get("peak_rss_mb")
    add("peak RSS import+load+10 s, ours onnx int8 <= 0.4 GB", None if peak is None else peak / 1024, 0.4, " GB",
        higher=False)
    for ours, peer in (("onnx", "sherpa"), ("onnx-int8", "sherpa-int8")):
        for field, name in (("chunk_ms_median", "median"), ("chunk_ms_p95", "p95")):
            a, b = get(ours, "streaming", "600ms", field), get(peer, "streaming", "600ms", field)
            if a is not None and b is not None:
                add(f"600 ms chunk latency {name}, {SYSTEMS[ours]['label']} <= {SYSTEMS[peer]['label']} "
                    f"({b:.1f} ms)", a, b, " ms", higher=False, digits=1)
    for name, record in report.get("exports", {}).items():
        if name.startswith("ours") and record.get("export_s") is not None:
            add(f"export {name} <= 60 s", record["export_s"], 60.0, " s", higher=False, digits=1)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "onnxruntime", "funasr", "sherpa-onnx", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


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
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 30, 60, 300])
    parser.add_argument("--funasr-max-seconds", type=float, default=60.0,
                        help="whole-input runs (funasr's, ours) only up to this (300 s is slow and memory-hungry)")
    parser.add_argument("--stream-seconds", type=float, help="streaming audio length (default: min(60, max dur))")
    parser.add_argument("--concurrency-seconds", type=float, default=10.0)
    parser.add_argument("--streams-max", type=int, default=64, help="0: skip the concurrency search")
    parser.add_argument("--repeats", type=int, default=3,
                        help="best of N for offline runs and per streaming chunk (this shared VM moves by +-20 %%)")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per batch for long audio")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="pause (s) after each call, for the last worker's spinning threads")
    parser.add_argument("--skip", nargs="+", default=[], choices=sorted(SYSTEMS), help="systems to leave out")
    parser.add_argument("--skip-funasr", action="store_true", help="same as --skip funasr")
    parser.add_argument("--re-export", action="store_true", help="rebuild the cached ONNX exports")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "modelscope_paraformer" / "bench"))
    parser.add_argument("--rss-only", action="store_true",
                        help="only import / load / first result / peak RSS per system (a few minutes)")
    parser.add_argument("--json-out")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(WORKERS[args.worker](json.loads(args.config))), flush=True)
        return
    started = time.perf_counter()
    skip = set(args.skip) | ({"funasr"} if args.skip_funasr else set())
    systems = [s for s in SYSTEMS if s not in skip]
    cache = Path(args.cache_dir).expanduser()
    models = build_models(cache, args.quick)
    onnx_dirs, exports, sherpa_dir = prepare_exports(models, cache, "quick" if args.quick else "full", systems,
                                                     args.threads, args.re_export)
    durations = [int(d) if float(d).is_integer() else d for d in args.durations]
    config = {"threads": args.threads, "durations": durations, "funasr_max_seconds": args.funasr_max_seconds,
              "stream_seconds": args.stream_seconds or min(60.0, max(durations)),
              "concurrency_seconds": args.concurrency_seconds, "streams_max": args.streams_max,
              "repeats": args.repeats, "batch_size": args.batch_size, "settle": args.settle, **models,
              "onnx_dirs": onnx_dirs, "sherpa_dir": sherpa_dir}
    report: dict = {"config": {**config, "quick": args.quick, "systems": systems, "cpu": cpu_name(),
                               "cores": os.cpu_count(), "versions": versions()},
                    "exports": exports, "rss": {}, "results": {s: {} for s in systems}}
    for system in systems:  # one heavy process at a time
        if SYSTEMS[system]["family"] != "sherpa":
            print(f"measuring {system}: import/load/RSS ...", file=sys.stderr)
            report["rss"][system] = run_rss_worker({**config, "system": system})
    if args.rss_only:
        print("| system | import (s) | load (s) | first 10 s result (s) | peak RSS (MB) | torch imported |\n"
              "| --- | ---: | ---: | ---: | ---: | --- |")
        for system, row in report["rss"].items():
            print(f"| {system} | {row['import_s']:.2f} | {row['load_s']:.2f} | {row['first_result_s']:.2f} | "
                  f"{row['peak_rss_mb']:.0f} | {row['torch_imported']} |")
        return
    print("measuring offline speed, all systems in turn ...", file=sys.stderr)
    for system, result in offline_phase(systems, config).items():
        report["results"][system]["offline"] = result
    print("measuring streaming speed, all systems in turn; then concurrency ...", file=sys.stderr)
    for system, result in streaming_phase(systems, config).items():
        report["results"][system].update(result)
    from modelscope_paraformer.core.tokenizer import CharTokenizer

    report["agreement"] = compare(report["results"], CharTokenizer.from_file(Path(models["offline"]) / "tokens.json"))
    report["targets"] = targets(report)
    report["elapsed_s"] = time.perf_counter() - started
    versions_line = ", ".join(f"{k} {v}" for k, v in report["config"]["versions"].items() if v)
    print(f"{cpu_name()}, {args.threads} threads; {versions_line}; {'quick' if args.quick else 'Paraformer-large'} "
          f"random weights; {report['elapsed_s'] / 60:.1f} min\n")
    print(table(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
