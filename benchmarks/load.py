"""Load and soak of the WebSocket server over loopback: N concurrent real-time clients for M minutes, then K
connect-stream-close cycles; prints (and writes with --json) the figures.

    python benchmarks/load.py --spawn --clients 100 --minutes 2                    # demo model
    python benchmarks/load.py --spawn --model /tmp/pl_online_int8 --clients 16 --minutes 2
    python benchmarks/load.py --url ws://127.0.0.1:10095 --clients 8 --seconds 30   # a running server

Each client streams the example wav in a loop, paced in real time in ``--frame-ms`` frames (FunASR's clients
send 60 ms), with FunASR's 2pass or online protocol. Latency "stride to result": every partial reply carries
``audio_ms``, the session time up to which the server had decoded audio for it; the client knows when it
finished sending that audio, so latency = reply arrival - that send time (what a user waits after speaking).
After ``is_speaking: false`` the time to the last ``2pass-offline`` sentence is measured too. RSS of the server
process is sampled every few seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelscope_paraformer.core.audio import load_audio  # noqa: E402

EXAMPLE = REPO / "examples" / "asr_example_zh.wav"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))])


class Stats:
    def __init__(self):
        self.latencies: list[float] = []
        self.final_latencies: list[float] = []
        self.errors: list[str] = []
        self.replies = 0
        self.sentences = 0
        self.audio_s = 0.0


async def client(index: int, url: str, pcm: bytes, rate: int, args, stats: Stats, deadline: float) -> None:
    """One real-time client: config, paced frames until the deadline, end of input, wait for the ack."""
    import websockets

    frame = int(rate * args.frame_ms / 1000) * 2
    sent_at: list[float] = []  # end time (ms of session audio) -> when it was sent
    sent_ms: list[float] = []
    done = asyncio.Event()
    ended_at = [0.0]

    async def reader(ws) -> None:
        async for message in ws:
            reply = json.loads(message)
            now = time.perf_counter()
            stats.replies += 1
            if "error" in reply:
                stats.errors.append(f"client {index}: {reply['error']}")
            if "audio_ms" in reply:
                k = bisect.bisect_left(sent_ms, reply["audio_ms"])
                if k < len(sent_at):
                    stats.latencies.append((now - sent_at[k]) * 1000)
            if reply.get("mode") in ("2pass-offline", "offline") and "text" in reply:
                stats.sentences += 1
                if reply.get("is_final") and ended_at[0]:
                    stats.final_latencies.append((now - ended_at[0]) * 1000)
            if reply.get("is_end"):
                done.set()
                return

    try:
        async with websockets.connect(url, subprotocols=["binary"], ping_interval=None, open_timeout=30,
                                      max_size=None) as ws:
            await ws.send(json.dumps({"mode": args.mode, "chunk_size": args.chunk_size, "chunk_interval": 10,
                                      "wav_name": f"load{index}", "wav_format": "pcm", "is_speaking": True,
                                      "audio_fs": rate, "encoder_chunk_look_back": 4,
                                      "decoder_chunk_look_back": 0}))
            read = asyncio.create_task(reader(ws))
            await asyncio.sleep(args.frame_ms / 1000 * (index % 10) / 10)  # spread the clients' phases
            start, position, total = time.perf_counter(), 0, 0
            while time.perf_counter() < deadline:
                piece = pcm[position:position + frame]
                position = (position + frame) % len(pcm) if position + frame < len(pcm) else 0
                total += len(piece) // 2
                due = start + total / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                await ws.send(piece)
                sent_at.append(time.perf_counter())
                sent_ms.append(total * 1000 / rate)
            stats.audio_s += total / rate
            ended_at[0] = time.perf_counter()
            await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            await asyncio.wait_for(done.wait(), 60)
            await read
    except Exception as error:  # counted, not fatal: the run reports every failure
        stats.errors.append(f"client {index}: {type(error).__name__}: {error}")


async def cycles(url: str, pcm: bytes, count: int, mode: str) -> int:
    """``count`` connect-stream-close cycles of the whole example at full speed; returns the failures."""
    import websockets

    failures = 0
    for k in range(count):
        try:
            async with websockets.connect(url, subprotocols=["binary"], ping_interval=None) as ws:
                await ws.send(json.dumps({"mode": mode, "chunk_size": [5, 10, 5], "wav_name": f"c{k}"}))
                for start in range(0, len(pcm), 19200):
                    await ws.send(pcm[start:start + 19200])
                await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
                async for message in ws:
                    if json.loads(message).get("is_end"):
                        break
        except Exception:
            failures += 1
    return failures


async def run(args) -> dict:
    from modelscope_paraformer.serving.launch import ServerProcess, get_health

    samples = load_audio(args.wav)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    server = None
    if args.spawn:
        extra = ["--model", args.model] if args.model else []
        server = ServerProcess([*extra, "--max-connections", str(args.clients + 10), *args.server_args],
                               log=args.server_log)
        url, pid, port = server.url, server.process.pid, server.port
    else:
        url, pid, port = args.url, args.pid, int(args.url.rsplit(":", 1)[1].split("/")[0])
    result: dict = {"url": url, "clients": args.clients, "mode": args.mode, "frame_ms": args.frame_ms,
                    "chunk_size": args.chunk_size, "model": args.model or "demo"}
    try:
        rss: list[tuple[float, float]] = []
        began = time.perf_counter()

        async def sample_rss() -> None:
            while True:
                rss.append((round(time.perf_counter() - began, 1), round(rss_mb(pid), 1) if pid else
                            get_health(port)["rss_mb"]))
                await asyncio.sleep(args.rss_every)

        sampler = asyncio.create_task(sample_rss())
        stats = Stats()
        duration = args.seconds if args.seconds else args.minutes * 60
        deadline = time.perf_counter() + duration
        # ends spread over 5 s, as real users do not stop together (a synchronised end queues every final pass)
        await asyncio.gather(*(client(i, url, pcm, 16000, args, stats, deadline - (i % 10) * 0.5)
                               for i in range(args.clients)))
        sampler.cancel()
        result.update({
            "duration_s": round(time.perf_counter() - began, 1), "audio_s": round(stats.audio_s, 1),
            "replies": stats.replies, "sentences": stats.sentences, "errors": len(stats.errors),
            "error_samples": stats.errors[:5],
            "latency_ms": {"p50": percentile(stats.latencies, 50), "p95": percentile(stats.latencies, 95),
                           "max": percentile(stats.latencies, 100), "n": len(stats.latencies)},
            "final_sentence_ms": {"p50": percentile(stats.final_latencies, 50),
                                  "p95": percentile(stats.final_latencies, 95), "n": len(stats.final_latencies)},
            "rss_mb": rss})
        if args.cycles:
            before = rss_mb(pid) if pid else get_health(port)["rss_mb"]
            started = time.perf_counter()
            failures = await cycles(url, pcm, args.cycles, args.mode)
            await asyncio.sleep(1.0)
            after = rss_mb(pid) if pid else get_health(port)["rss_mb"]
            health = get_health(port)
            result["cycles"] = {"count": args.cycles, "failures": failures,
                                "seconds": round(time.perf_counter() - started, 1),
                                "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
                                "rss_growth_mb": round(after - before, 1),
                                "open_connections_after": health["connections"],
                                "engine_streams_after": health["engine"]["streams"]}
    finally:
        if server is not None:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:10095")
    parser.add_argument("--pid", type=int, help="the server's pid, for RSS (default: /health's rss_mb)")
    parser.add_argument("--spawn", action="store_true", help="start a server (demo model or --model) for the run")
    parser.add_argument("--model", help="with --spawn: the model dir")
    parser.add_argument("--server-args", nargs=argparse.REMAINDER, default=[],
                        help="with --spawn: more `serve` options (last on the line)")
    parser.add_argument("--server-log", default="/tmp/load_server.log")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--mode", default="2pass", choices=["online", "2pass"])
    parser.add_argument("--chunk-size", type=int, nargs=3, default=[5, 10, 5])
    parser.add_argument("--frame-ms", type=float, default=60.0)
    parser.add_argument("--cycles", type=int, default=0, help="connect-stream-close cycles after the load")
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument("--wav", default=str(EXAMPLE))
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
