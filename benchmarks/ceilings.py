"""What this CPU's kernels can do for Paraformer-large's products: the ceilings behind bench.py's numbers.

    python benchmarks/ceilings.py --threads 2

Prints memory read bandwidth and, for the encoder's product shapes at 1, 15, 20 and 167 rows (decoder tokens,
a 600 ms streaming chunk with and without left context, 10 s offline), the time per product, GFLOP/s and the
rate at which the weights are read, for each kernel the package could use. Each timing loops over 60 distinct
weights, so that every product reads its weight from memory as in a real forward pass, and keeps the best of 3.
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import torch
from torch.nn import functional as F

SHAPES = [(2048, 512), (512, 2048), (1536, 512)]  # (out, in): FFN w_1, FFN w_2, fused QKV
ROWS = [1, 15, 20, 167]
WEIGHTS = 60


def best_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def memory_read_gbps() -> float:
    data = torch.ones(256 * 1024 * 1024)  # 1 GiB of float32
    return data.numel() * 4 / best_seconds(data.sum) / 1e9


def kernels(weights: list[torch.Tensor], rows: int) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (run over all weights, bytes per weight element)."""
    x = torch.randn(rows, weights[0].size(1))
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, rows) for w in weights]
    bf16 = [torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), rows) for w in weights]
    x16 = x.bfloat16()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = []
        for w in weights:
            layer = torch.ao.nn.quantized.dynamic.Linear(w.size(1), w.size(0))
            layer.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max() / 127), 0, torch.qint8), None)
            int8.append(layer)
    return {
        "fp32 nn.Linear": (lambda: [F.linear(x, w) for w in weights], 4),
        "fp32 oneDNN packed": (lambda: [torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "")
                                        for p in packed], 4),
        "bf16 oneDNN packed": (lambda: [torch.ops.mkldnn._linear_pointwise(x16, p, None, "none", [], "")
                                        for p in bf16], 2),
        "int8 fbgemm dynamic": (lambda: [layer(x) for layer in int8], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"memory read: {memory_read_gbps():.1f} GB/s ({args.threads} threads)\n")
    print("| product (out x in) | rows | kernel | ms per product | GFLOP/s | weights read (GB/s) |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for out_size, in_size in SHAPES:
        weights = [torch.randn(out_size, in_size) * 0.05 for _ in range(WEIGHTS)]
        for rows in ROWS:
            for name, (run, element_bytes) in kernels(weights, rows).items():
                seconds = best_seconds(run) / WEIGHTS
                flops = 2 * rows * out_size * in_size / seconds / 1e9
                read = out_size * in_size * element_bytes / seconds / 1e9
                print(f"| {out_size}x{in_size} | {rows} | {name} | {seconds * 1e3:.3f} | {flops:.0f} | {read:.1f} |")


if __name__ == "__main__":
    main()
