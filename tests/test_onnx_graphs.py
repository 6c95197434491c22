"""ONNX export (core/engines/onnx_export.py) and the onnxruntime engine (core/engines/onnx_engine.py) against torch.

Paraformer-large width (512 / 2048 / 8404 tokens) at reduced depth (3 encoder, 2 decoder blocks), random weights.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modelscope_paraformer.core.checkpoint import load_model
from modelscope_paraformer.core.chunking import ChunkConfig
from modelscope_paraformer.core.cif import CifCarry, fire_utterance, fire_window
from modelscope_paraformer.core.decoder import DecoderState
from modelscope_paraformer.core.engine import ChunkInput, Encoded
from modelscope_paraformer.core.engines.onnx_engine import OnnxEngine
from modelscope_paraformer.core.engines.onnx_export import ExportError, export_onnx
from modelscope_paraformer.core.engines.torch_engine import TorchEngine
from modelscope_paraformer.tools.random_model import build_random_model

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_models")
    out = {}
    for variant, seed in (("offline", 11), ("online", 12)):
        source = build_random_model(root / variant, variant, 3, 2, seed=seed)
        out[variant] = (source, export_onnx(source, root / f"{variant}-onnx"))
    return out


def _features(rng, frames):
    return rng.standard_normal((frames, 560)).astype(np.float32)


# -------------------------------------------------------------------------------------------------- export dir
@pytest.mark.parametrize("variant", ["offline", "online"])
def test_export_dir_is_self_contained(models, variant):
    source, out = models[variant]
    names = {p.name for p in out.iterdir()}
    assert "model.pt" not in names
    graphs = {"offline": {"encoder.onnx", "decoder.onnx"}, "online": {"encoder_chunk.onnx", "decoder_chunk.onnx"}}
    assert graphs[variant] | {"configuration.json", "config.yaml", "tokens.json", "am.mvn",
                              "onnx_manifest.json"} <= names
    manifest = json.loads((out / "onnx_manifest.json").read_text())
    for key in ("format", "version", "opset", "precision", "quantization", "streaming", "source_checkpoint_sha256",
                "torch_version", "graphs", "assumes"):
        assert key in manifest
    assert manifest["format"] == "modelscope-paraformer-onnx" and manifest["version"] == 1
    assert manifest["precision"] == "fp32" and manifest["quantization"] is None
    assert manifest["streaming"] is (variant == "online")
    assert set(manifest["graphs"].values()) == graphs[variant]
    assert manifest["assumes"]["encoder_layers"] == 3 and manifest["assumes"]["encoder_dim"] == 512
    configuration = json.loads((out / "configuration.json").read_text())
    assert "init_param" not in configuration["file_path_metas"]
    assert configuration["model"]["model_config"]["mode"] == ("paraformer_streaming" if variant == "online"
                                                              else "paraformer")
    assert (out / "am.mvn").read_bytes() == (source / "am.mvn").read_bytes()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_failed_export_leaves_nothing(tmp_path, models):
    source, _ = models["offline"]
    model = load_model(source)
    model.inference_only = True
    with pytest.raises(ExportError):
        export_onnx(model, tmp_path / "bad")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------------ offline
@torch.inference_mode()
def test_offline_graphs_equal_torch(models):
    source, out = models["offline"]
    model = load_model(source)
    engine = OnnxEngine(out, num_threads=2)
    rng = np.random.default_rng(0)
    feats = [_features(rng, 41), _features(rng, 29)]
    encoded = engine.encode(feats)
    reference = TorchEngine(model)
    expected = reference.encode(feats)  # the torch network on the padded batch
    for got, want in zip(encoded, expected):
        np.testing.assert_allclose(got.hidden, want.hidden, atol=ATOL, rtol=1e-4)
        np.testing.assert_allclose(got.alphas, want.alphas, atol=ATOL)
    predictor = model.predictor
    embeddings = [fire_utterance(e.hidden, e.alphas, predictor.threshold, predictor.tail_threshold)[0]
                  for e in expected]
    assert min(len(e) for e in embeddings) > 0
    torch_encoded = [Encoded(e.hidden, e.alphas, e.hidden) for e in expected]
    ids = engine.decode(torch_encoded, embeddings)
    assert ids == reference.decode(expected, embeddings)
    # each utterance alone gives the same tokens as the padded batch
    assert engine.decode(torch_encoded[1:], embeddings[1:]) == ids[1:]


# ---------------------------------------------------------------------------------------------------- streaming
def _torch_stream(model, feats, config):
    """Windows, hidden, embeddings and token ids of one stream through the torch modules, as core/streaming.py."""
    left, stride, look_ahead = config.chunk_size
    overlap = torch.zeros(1, left + look_ahead, 560)
    caches = [None] * len(model.encoder.layers)
    carry = CifCarry()
    state = DecoderState()
    steps, seen = [], 0
    pieces = [feats[i:i + stride] for i in range(0, len(feats), stride)]
    for number, piece in enumerate(pieces):
        last = number == len(pieces) - 1
        embedded = model.encoder.embed(torch.from_numpy(piece)[None], seen)
        seen += len(piece)
        window = torch.cat([overlap, embedded], dim=1)
        keep = left + look_ahead
        overlap = window[:, window.size(1) - keep:] if keep else window[:, :0]
        start = seen - window.size(1)
        raw = np.zeros((window.size(1), 560), np.float32)
        real = max(0, -start)
        raw[real:] = feats[start + real:seen]
        encoded = model.encoder.forward_chunk(window, None, caches, look_ahead, config.encoder_keep_frames)
        alphas = model.predictor.frame_weights(encoded)[0]
        end = encoded.size(1) if last else left + stride
        fired, _, carry = fire_window(encoded[0].numpy(), alphas.numpy(), carry, last, left, end,
                                      model.predictor.threshold, model.predictor.tail_threshold)
        ids = []
        if len(fired):
            logits = model.decoder.forward_chunk(encoded, torch.from_numpy(fired)[None], state,
                                                 config.decoder_keep_frames)
            ids = logits[0].argmax(-1).tolist()
        steps.append({"chunk": ChunkInput(raw, start), "hidden": encoded[0].numpy(), "alphas": alphas.numpy(),
                      "embeddings": fired, "ids": ids})
    return steps


CONFIGS = [((0, 10, 5), 4, 1), ((5, 10, 5), 4, 1), ((0, 10, 5), -1, -1), ((5, 10, 5), 0, 0), ((0, 10, 5), 1, 2)]


@pytest.mark.parametrize("chunk_size, enc_lb, dec_lb", CONFIGS)
@torch.inference_mode()
def test_streaming_windows_equal_torch(models, chunk_size, enc_lb, dec_lb):
    source, out = models["online"]
    model = load_model(source)
    engine = OnnxEngine(out, num_threads=2)
    config = ChunkConfig.create(chunk_size, enc_lb, dec_lb)
    feats = _features(np.random.default_rng(1), 57)
    steps = _torch_stream(model, feats, config)
    enc_cache = dec_cache = None
    fired = 0
    for step in steps:
        (encoded,), (enc_cache,) = engine.encode_chunks([step["chunk"]], [enc_cache], config)
        np.testing.assert_allclose(encoded.hidden, step["hidden"], atol=ATOL, rtol=1e-4)
        np.testing.assert_allclose(encoded.alphas, step["alphas"], atol=ATOL)
        if len(step["embeddings"]):
            fired += 1
        (ids,), (dec_cache,) = engine.decode_chunks([encoded], [step["embeddings"]], [dec_cache], config)
        assert ids == step["ids"]
    assert fired >= 3


@torch.inference_mode()
def test_streaming_batch_equals_alone(models):
    source, out = models["online"]
    model = load_model(source)
    engine = OnnxEngine(out, num_threads=2)
    config = ChunkConfig.create((0, 10, 5), 4, 1)
    rng = np.random.default_rng(2)
    streams = [_torch_stream(model, _features(rng, n), config) for n in (57, 44, 31)]
    # alone
    alone = []
    for steps in streams:
        enc_cache = dec_cache = None
        results = []
        for step in steps:
            (encoded,), (enc_cache,) = engine.encode_chunks([step["chunk"]], [enc_cache], config)
            (ids,), (dec_cache,) = engine.decode_chunks([encoded], [step["embeddings"]], [dec_cache], config)
            results.append((encoded.hidden, ids))
        alone.append(results)
    # together, in lockstep while each stream has windows left
    enc_caches, dec_caches = [None] * 3, [None] * 3
    for number in range(max(len(s) for s in streams)):
        active = [i for i, s in enumerate(streams) if number < len(s)]
        encoded, new = engine.encode_chunks([streams[i][number]["chunk"] for i in active],
                                            [enc_caches[i] for i in active], config)
        for i, cache in zip(active, new):
            enc_caches[i] = cache
        ids, new = engine.decode_chunks(encoded, [streams[i][number]["embeddings"] for i in active],
                                        [dec_caches[i] for i in active], config)
        for j, i in enumerate(active):
            dec_caches[i] = new[j]
            np.testing.assert_allclose(encoded[j].hidden, alone[i][number][0], atol=1e-5, rtol=1e-5)
            assert ids[j] == alone[i][number][1]


def test_streaming_export_refuses_non_causal_decoder(tmp_path):
    source = build_random_model(tmp_path / "m", "online", 1, 1, 64, 128, 100, seed=3)
    model = load_model(source)
    model.decoder.decoders[0].self_attn.padding = (5, 5)
    with pytest.raises(ExportError, match="causal"):
        export_onnx(model, tmp_path / "out")


# ------------------------------------------------------------------------------------------------------- int8
@torch.inference_mode()
def test_int8_export_decodes(models, tmp_path):
    source, fp32 = models["offline"]
    out = export_onnx(source, tmp_path / "int8", quantize="int8")
    manifest = json.loads((out / "onnx_manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]
    import onnx

    ops = {node.name: node.op_type for node in onnx.load(str(out / "encoder.onnx")).graph.node}
    assert "MatMulInteger" in ops.values()
    assert ops["/cif_output/MatMul"] == "MatMul" and ops["/cif_conv1d/Conv"] == "Conv"  # CIF kept float32
    engines = {"fp32": OnnxEngine(fp32, num_threads=2), "int8": OnnxEngine(out, num_threads=2)}
    rng = np.random.default_rng(3)
    feats = [_features(rng, 60), _features(rng, 45)]
    enc = {name: e.encode(feats) for name, e in engines.items()}
    # same embeddings (from the fp32 encoder's CIF) for both decoders: the agreement of the networks' tokens
    model = load_model(source)
    embeddings = [fire_utterance(e.hidden, e.alphas, model.predictor.threshold, model.predictor.tail_threshold)[0]
                  for e in enc["fp32"]]
    ids = {name: e.decode(enc[name], embeddings) for name, e in engines.items()}
    total = sum(len(r) for r in ids["fp32"])
    same = sum(a == b for ra, rb in zip(ids["fp32"], ids["int8"]) for a, b in zip(ra, rb))
    print(f"\nint8 vs fp32 token agreement on random input: {same}/{total}; alphas max diff "
          f"{max(float(np.abs(a.alphas - b.alphas).max()) for a, b in zip(enc['fp32'], enc['int8'])):.4f}")
    assert [len(r) for r in ids["int8"]] == [len(r) for r in ids["fp32"]]


# ---------------------------------------------------------------------------------------------- no torch import
def test_onnx_engine_does_not_import_torch():
    """Load onnx_engine.py with its parent packages stubbed (core/__init__.py imports torch eagerly for now;
    the package is being made lazy): the engine module itself and what it imports must not pull torch in."""
    code = textwrap.dedent(f"""
        import importlib.util, sys, types
        root = {str(REPO / "modelscope_paraformer")!r}
        for name, path in (("modelscope_paraformer", root), ("modelscope_paraformer.core", root + "/core"),
                           ("modelscope_paraformer.core.engines", root + "/core/engines")):
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
        spec = importlib.util.spec_from_file_location("modelscope_paraformer.core.engines.onnx_engine",
                                                      root + "/core/engines/onnx_engine.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        assert module.OnnxEngine
        assert "torch" not in sys.modules, "onnx_engine imported torch"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_plain_import_does_not_import_torch():
    probe = subprocess.run([sys.executable, "-c", "import modelscope_paraformer.core, sys; "
                            "print('torch' in sys.modules)"], capture_output=True, text=True, cwd=REPO)
    if probe.stdout.strip() != "False":
        pytest.skip("modelscope_paraformer/core/__init__.py imports torch eagerly (being made lazy); "
                    "the stubbed-package test covers onnx_engine itself")
    subprocess.run([sys.executable, "-c", "import modelscope_paraformer.core.engines.onnx_engine as e, sys; "
                    "assert 'torch' not in sys.modules"], check=True, cwd=REPO)
