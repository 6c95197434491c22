"""sherpa-onnx, the streaming peer a CPU user would pick, on FunASR's own ONNX export of the same weights.

    python benchmarks/sherpa.py export ONLINE_MODEL_DIR OUT_DIR     # FunASR export + sherpa-onnx metadata

What it builds (OUT_DIR): FunASR's streaming export of the model dir (``AutoModel(model=dir).export(type="onnx",
quantize=True)``: ``model.onnx`` = encoder + CIF weights, ``decoder.onnx`` with one FSMN cache per decoder block,
and their ``*_quant.onnx`` int8 twins), run with the legacy TorchScript exporter (``torch.onnx.export(...,
dynamo=False)``: torch >= 2.9 defaults to the dynamo exporter, on which FunASR's ``dynamic_axes`` path fails).
Then the metadata sherpa-onnx's ``OnlineParaformerModel`` reads from the encoder (sherpa-onnx/csrc/
online-paraformer-model.cc): ``vocab_size``, ``lfr_window_size``, ``lfr_window_shift``, ``encoder_output_size``,
``decoder_num_blocks``, ``decoder_kernel_size``, ``neg_mean`` and ``inv_stddev`` (comma-separated; sherpa-onnx
scales ``inv_stddev`` by sqrt(encoder_output_size) itself, since FunASR's export leaves that scaling out), and
``tokens.txt`` in sherpa's "symbol id" layout.

What sherpa-onnx computes (sherpa-onnx/csrc/online-recognizer-paraformer-impl.h): fixed chunks of 61 fbank frames
(~600 ms, 10 LFR frames) with 5 LFR frames of left and 3 of right context re-fed to the encoder, and **no encoder
look-back caches**: each chunk's encoder sees 18 frames only. FunASR's PyTorch streaming and ours keep the keys and
values of 4 earlier chunks (``encoder_chunk_look_back=4``) and look 5 frames ahead. So its text is not expected to
match funasr's streaming text, and its per-chunk cost is that of a different (smaller) computation. It decodes
streams one at a time (``DecodeStreams`` loops over them) and has no 480 ms chunk setting.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

SR = 16000
FILES = {"fp32": ("model.onnx", "decoder.onnx"), "int8": ("model_quant.onnx", "decoder_quant.onnx")}
INFO = "sherpa_export.json"


# ------------------------------------------------------------------------------------------------ export
def sherpa_metadata(model_dir: Path) -> dict[str, str]:
    """The encoder metadata sherpa-onnx's online Paraformer reads, from a FunASR model dir."""
    import yaml

    from modelscope_paraformer.core.frontend import load_cmvn

    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    tokens = json.loads((model_dir / "tokens.json").read_text(encoding="utf-8"))
    shift, scale = load_cmvn(model_dir / "am.mvn")
    frontend, encoder, decoder = config["frontend_conf"], config["encoder_conf"], config["decoder_conf"]
    return {
        "vocab_size": str(len(tokens)),
        "lfr_window_size": str(frontend.get("lfr_m", 7)),
        "lfr_window_shift": str(frontend.get("lfr_n", 6)),
        "encoder_output_size": str(encoder["output_size"]),
        "decoder_num_blocks": str(decoder["num_blocks"]),
        "decoder_kernel_size": str(decoder.get("kernel_size", 11)),
        "neg_mean": ",".join(f"{v:.9g}" for v in shift),  # AddShift holds -mean
        "inv_stddev": ",".join(f"{v:.9g}" for v in scale),
        "model_type": "paraformer", "version": "1", "comment": "FunASR export of a random-weight model (bench)",
    }


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def export(model_dir: str, out_dir: str) -> dict:
    """FunASR's ONNX export of ``model_dir`` (fp32 and int8) plus sherpa-onnx's metadata into ``out_dir``."""
    import torch
    from funasr import AutoModel

    source, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    legacy = functools.partial(torch.onnx.export, dynamo=False)
    torch.onnx.export = legacy  # FunASR calls torch.onnx.export with dynamic_axes: the legacy exporter's API
    model = AutoModel(model=str(source), disable_update=True, device="cpu", log_level="ERROR")
    started = time.perf_counter()
    model.export(type="onnx", quantize=True, output_dir=str(out))
    exported = time.perf_counter() - started
    metadata = sherpa_metadata(source)
    for encoder, _ in FILES.values():
        add_metadata(out / encoder, metadata)
    tokens = json.loads((source / "tokens.json").read_text(encoding="utf-8"))
    (out / "tokens.txt").write_text("".join(f"{token} {i}\n" for i, token in enumerate(tokens)), encoding="utf-8")
    info = {"funasr_export_s": exported, "total_s": time.perf_counter() - started,
            "source": str(source), "torch": torch.__version__, "exporter": "torch.onnx.export(dynamo=False)",
            "sizes_mb": {name: (out / name).stat().st_size / 1e6 for pair in FILES.values() for name in pair}}
    (out / INFO).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return info


# ------------------------------------------------------------------------------------------------ decode
class SherpaParaformer:
    """sherpa-onnx's OnlineRecognizer on one precision of an :func:`export` dir."""

    def __init__(self, export_dir: str, precision: str = "fp32", threads: int = 2):
        import sherpa_onnx

        encoder, decoder = FILES[precision]
        root = Path(export_dir)
        self.recognizer = sherpa_onnx.OnlineRecognizer.from_paraformer(
            tokens=str(root / "tokens.txt"), encoder=str(root / encoder), decoder=str(root / decoder),
            num_threads=threads, sample_rate=SR, feature_dim=80, decoding_method="greedy_search")
        self.ids = {}
        for line in (root / "tokens.txt").read_text(encoding="utf-8").splitlines():
            symbol, index = line.rsplit(" ", 1)
            self.ids[symbol] = int(index)
        self.version = getattr(sherpa_onnx, "__version__", "?")

    def new_stream(self):
        return self.recognizer.create_stream()

    def feed(self, stream, samples: np.ndarray, is_final: bool) -> int:
        """Accept ``samples`` and decode every chunk that became ready; returns the number of decodes."""
        stream.accept_waveform(SR, samples)
        if is_final:
            stream.set_option("is_final", "1")  # the short last chunk is decoded (zero-padded)
            stream.input_finished()
        decodes = 0
        while self.recognizer.is_ready(stream):
            self.recognizer.decode_stream(stream)
            decodes += 1
        return decodes

    def token_ids(self, stream) -> list[int]:
        return [self.ids[token] for token in self.recognizer.get_result_all(stream).tokens if token in self.ids]

    def stream(self, audio: np.ndarray, stride: int = 9600) -> tuple[list[int], list[float]]:
        """(token ids, per-chunk seconds) of ``audio`` sent ``stride`` samples at a time."""
        stream, times = self.new_stream(), []
        steps = max(1, -(-len(audio) // stride))
        for k in range(steps):
            start = time.perf_counter()
            self.feed(stream, audio[k * stride:(k + 1) * stride], k == steps - 1)
            times.append(time.perf_counter() - start)
        return self.token_ids(stream), times


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export")
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    args = parser.parse_args(argv)
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    info = export(args.model_dir, args.out_dir)
    print("SHERPA_EXPORT " + json.dumps(info), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
