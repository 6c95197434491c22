"""Fast paths: optimize_for_inference, the batched streaming scheduler and long-audio segmentation.

Small random models (see conftest): they fire tokens on nearly everything and their near-flat logits
make token ids sensitive to the smallest numeric change, so equality here is a strict check.
"""
from __future__ import annotations

import difflib
import shutil

import numpy as np
import pytest
import torch

from modelscope_paraformer.core import ChunkSizeError, StreamingDecoder, load_model
from modelscope_paraformer.core import BatchedStreamer
from modelscope_paraformer.core.batching import length_batches
from modelscope_paraformer.core.checkpoint import save_model_dir
from modelscope_paraformer.core.layers import TimeDepthwiseConv
from modelscope_paraformer.core.optimize import (PACK_MIN_FLOAT32_WEIGHTS, PackedDepthwiseConv, PackedLinear,
                                                 optimize_for_inference, warm_up)
from modelscope_paraformer.core.vad import split_long_audio

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(speech) -> list[np.ndarray]:
    return [speech[:20000], speech, np.tile(speech, 2)[:150000]]


@pytest.fixture(scope="module")
def long_audio(speech) -> np.ndarray:
    """The example repeated 10 times with 1 s of silence after each: 67 s."""
    gap = np.zeros(SR, np.float32)
    return np.concatenate([np.concatenate([speech, gap]) for _ in range(10)])


def _decode(model, audio: np.ndarray):
    return StreamingDecoder(model).decode_all(audio) if model.streaming else model.transcribe([audio])[0]


@pytest.mark.parametrize("models", ["small_models", "wide_models"])  # wide: float32 packing applies
@pytest.mark.parametrize("variant", ["offline", "online"])
def test_fp32_optimize_keeps_tokens(request, clips, models, variant):
    directory = request.getfixturevalue(models)[variant]
    before = [_decode(load_model(directory), clip).token_ids for clip in clips]
    model = optimize_for_inference(load_model(directory), "fp32", num_threads=torch.get_num_threads())
    warm_up(model)
    assert [_decode(model, clip).token_ids for clip in clips] == before
    assert all(before)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN packing needs an mkldnn build")
def test_optimize_packs_linears_and_refuses_to_save(small_models, wide_models, tmp_path):
    model = optimize_for_inference(load_model(wide_models["online"]))
    packed = [m for m in model.modules() if isinstance(m, PackedLinear)]
    plain = [m for m in [*model.encoder.modules(), *model.decoder.modules()] if type(m) is torch.nn.Linear]
    # float32 packs what gains from it: the big products, not the 512x512 ones (nor any of a 64-wide model)
    assert packed and all(m.in_features * m.out_features >= PACK_MIN_FLOAT32_WEIGHTS for m in packed)
    assert plain and all(m.weight.numel() < PACK_MIN_FLOAT32_WEIGHTS for m in plain)
    bf16 = optimize_for_inference(load_model(small_models["online"]), "bf16")  # bf16 gains everywhere: all packed
    layers = [*bf16.encoder.modules(), *bf16.decoder.modules()]
    if BF16_PACKING:
        assert not any(type(m) is torch.nn.Linear for m in layers)
    else:  # nothing packed, still bfloat16
        assert not any(isinstance(m, (PackedLinear, PackedDepthwiseConv)) for m in layers)
        assert any(type(m) is torch.nn.Linear for m in layers)
        assert bf16.encoder.layers[0].feed_forward.w_1.weight.dtype == torch.bfloat16
    small = optimize_for_inference(load_model(small_models["online"]))  # no Linear packed, every FSMN conv is
    convs = [m for m in small.modules() if isinstance(m, PackedDepthwiseConv)]
    assert small.inference_only and len(convs) == len(small.encoder.layers) + len(small.decoder.memory_layers)
    assert not optimize_for_inference(load_model(small_models["online"]), pack=False).inference_only
    assert sum(m.post_op == "relu" for m in packed) == len(model.encoder.layers) + len(model.decoder.memory_layers) + 1
    x = torch.randn(2, 7, packed[0].in_features)
    reference = torch.nn.Linear(packed[0].in_features, packed[0].out_features)
    assert torch.allclose(PackedLinear(reference)(x), reference(x), atol=1e-5)
    with pytest.raises(ValueError, match="optimize_for_inference"):
        save_model_dir(model, tmp_path / "out", model.config.raw)
    assert not (tmp_path / "out").exists()


# oneDNN's bfloat16 kernels need AVX512-BW/VL/DQ (or AVX-NE-CONVERT): on an AVX2-only CPU (one of this project's
# machine kinds) optimize_for_inference keeps nn.Linear and the plain convs for bf16, which these tests check too
BF16_PACKING = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN packing needs an mkldnn build")
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not BF16_PACKING, reason="this CPU has no oneDNN bfloat16 kernels"))])
def test_packed_depthwise_conv_is_bit_identical(dtype):
    conv = TimeDepthwiseConv(96, 11).to(dtype)
    packed = PackedDepthwiseConv(conv)
    for batch, frames, padding in [(1, 20, (5, 5)), (3, 177, (5, 5)), (2, 13, (0, 0)), (1, 4, (10, 0)), (2, 9, (7, 3))]:
        x = torch.randn(batch, frames, 96).to(dtype)
        expected = conv(x, padding)
        assert expected.shape == (batch, frames + sum(padding) - 10, 96)
        assert torch.equal(packed(x, padding), expected)


@pytest.mark.parametrize("variant", ["offline", "online"])
@pytest.mark.parametrize("mode", [{"dtype": "bf16"}, {"quantize": "int8"}])
def test_reduced_precision_decodes(small_models, clips, variant, mode):
    """bf16 / int8 are approximations: bounded, not exact, agreement with float32 (measured on these models:
    token-sequence similarity 0.88-1.0 per clip)."""
    reference = [_decode(load_model(small_models[variant]), clip).token_ids for clip in clips]
    model = optimize_for_inference(load_model(small_models[variant]), **mode)
    results = [_decode(model, clip).token_ids for clip in clips]
    similarity = [difflib.SequenceMatcher(None, a, b).ratio() for a, b in zip(reference, results)]
    assert min(similarity) >= 0.8 and all(abs(len(a) - len(b)) <= 0.15 * len(a) for a, b in zip(reference, results))
    assert model.optimized_for == (mode.get("dtype", "fp32"), mode.get("quantize"), True)
    if mode.get("dtype") == "bf16":
        assert model.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", [{}, {"pack": False}, {"dtype": "bf16"}, {"quantize": "int8"}])
def test_mapped_checkpoint_is_converted_out_of_the_map(small_models, clips, mode):
    """load_model(mmap=True) + optimize_for_inference decodes exactly like a read checkpoint, and afterwards no
    tensor of the model lies in the map (so nothing depends on model.pt any more)."""
    read = optimize_for_inference(load_model(small_models["offline"]), **mode)
    mapped = load_model(small_models["offline"], mmap=True)
    region = mapped.checkpoint_map
    assert region is not None and all(region.holds(p) for p in mapped.parameters())
    optimize_for_inference(mapped, **mode)
    assert mapped.checkpoint_map is None
    assert not any(region.holds(t) for t in [*mapped.parameters(), *mapped.buffers()])
    assert [_decode(mapped, clip).token_ids for clip in clips] == [_decode(read, clip).token_ids for clip in clips]


def test_checkpoint_map_releases_only_its_own_pages(small_models, tmp_path):
    model = load_model(small_models["offline"], mmap=True)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    heap = torch.randn(1 << 18)  # ordinary memory (1 MiB): releasing must leave it alone
    kept = heap.clone()
    model.checkpoint_map.release(heap, *model.parameters())
    model.checkpoint_map.release_all()
    assert torch.equal(heap, kept)
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())  # read again
    legacy = tmp_path / "legacy"
    shutil.copytree(small_models["offline"], legacy)
    torch.save(reference, legacy / "model.pt", _use_new_zipfile_serialization=False)  # cannot be mapped
    fallback = load_model(legacy, mmap=True)
    assert fallback.checkpoint_map is None
    assert all(torch.equal(value, reference[key]) for key, value in fallback.state_dict().items())


def test_optimize_twice(wide_models):
    model = optimize_for_inference(load_model(wide_models["offline"]), quantize="int8")
    assert optimize_for_inference(model, quantize="int8", num_threads=1) is model  # the same again: nothing to do
    with pytest.raises(ValueError, match="already optimised"):
        optimize_for_inference(model, "bf16")


def test_optimize_rejects_bad_options(small_models):
    model = load_model(small_models["offline"])
    with pytest.raises(ValueError):
        optimize_for_inference(model, dtype="fp16")
    with pytest.raises(ValueError):
        optimize_for_inference(model, dtype="bf16", quantize="int8")
    with pytest.raises(ValueError):
        optimize_for_inference(model, quantize="int4")


def _stream_batched(streamer: BatchedStreamer, audios: list[np.ndarray], feeds: list[list[int]]) -> dict:
    """Feed each stream in its own irregular piece sizes, stepping after every round; collect new ids."""
    positions, collected, round_ = [0] * len(audios), {i: [] for i in range(len(audios))}, 0
    for i in range(len(audios)):
        streamer.open(i)
    while any(p < len(a) for p, a in zip(positions, audios)) or streamer.pending():
        for i, audio in enumerate(audios):
            if positions[i] < len(audio):
                size = feeds[i][round_ % len(feeds[i])]
                streamer.feed(i, audio[positions[i]:positions[i] + size], is_final=positions[i] + size >= len(audio))
                positions[i] += size
        round_ += 1
        for i, ids in streamer.step().items():
            collected[i] += ids
    return collected


@pytest.mark.parametrize("chunk_size,batch_decoder", [((0, 10, 5), True), ((0, 8, 4), True), ((0, 10, 5), False)])
def test_batched_streaming_equals_single(small_models, speech, chunk_size, batch_decoder):
    model = load_model(small_models["online"])
    # different lengths, piece sizes and so chunk phases; the last one is shorter than one LFR frame
    audios = [speech[:40000], np.tile(speech, 2)[:150000], np.roll(speech, 7777)[:91000], speech[:900]]
    feeds = [[3000, 7000, 12000], [9600], [5000, 20000], [900]]
    expected = [StreamingDecoder(model, chunk_size, 4, 1).decode_all(audio) for audio in audios]
    streamer = BatchedStreamer(model, chunk_size, 4, 1)
    streamer.batch_decoder = batch_decoder  # False: exercise the per-stream decoder fallback
    collected = _stream_batched(streamer, audios, feeds)
    for i, reference in enumerate(expected):
        result = streamer.result(i)
        assert result.token_ids == reference.token_ids, i
        assert result.timestamps == reference.timestamps, i
        assert collected[i] == reference.token_ids, i
    assert any(reference.token_ids for reference in expected)


def test_batched_streaming_steady_state_equals_single(small_models, speech):
    """Streams stepping in lock-step (the uniform path, batch caches reused), one joining late (padded steps
    until its cache is full) and one ending early (the group changes)."""
    model = load_model(small_models["online"])
    audios = {0: speech[:96000], 1: np.roll(speech, 3000)[:96000], 2: np.roll(speech, 9000)[:48000],
              3: np.roll(speech, 20000)[:76800]}
    starts = {0: 0, 1: 0, 2: 0, 3: 2}  # stream 3 opens at the third step
    expected = {i: StreamingDecoder(model).decode_all(audio).token_ids for i, audio in audios.items()}
    streamer, stride, uniform_steps = BatchedStreamer(model), 9600, 0
    for step in range(12):
        for i, audio in audios.items():
            k = step - starts[i]
            if k == 0:
                streamer.open(i)
            if 0 <= k and k * stride < len(audio):
                streamer.feed(i, audio[k * stride:(k + 1) * stride], is_final=(k + 1) * stride >= len(audio))
        streamer.run_until_idle()
        # after a uniform step every stream's cache is a view of the step's batch caches (its group)
        uniform_steps += any(s.encoder_cache is not None and s.encoder_cache.group is not None
                             for s in streamer.streams.values())
    assert {i: streamer.result(i).token_ids for i in audios} == expected
    assert uniform_steps >= 5 and all(expected.values())  # the steps after which no stream had finished


def test_batched_streamer_reuses_and_guards_streams(small_models, speech):
    with pytest.raises(ChunkSizeError):
        BatchedStreamer(load_model(small_models["offline"]))
    model = load_model(small_models["online"])
    streamer = BatchedStreamer(model)
    streamer.open("a")
    with pytest.raises(KeyError):
        streamer.open("a")
    with pytest.raises(KeyError):
        streamer.feed("b", speech)
    streamer.feed("a", speech[:30000], is_final=True)
    with pytest.raises(ValueError):
        streamer.feed("a", speech)  # the final audio has not been decoded yet
    streamer.run_until_idle()
    first = streamer.result("a")
    streamer.feed("a", speech[:30000], is_final=True)  # a second utterance on the same stream
    streamer.run_until_idle()
    alone = StreamingDecoder(model).decode_all(speech[:30000]).token_ids
    assert streamer.close("a").token_ids == first.token_ids == alone


def test_split_cuts_in_pauses(long_audio, speech):
    segments = split_long_audio(long_audio, max_seconds=20.0)
    period = len(speech) + SR
    assert len(segments) == 10  # one per utterance: every 1 s pause ends a segment
    voiced = (7000, 84000)  # the example's speech, without its quiet first and last ~0.4 s
    for index, (start, end) in enumerate(segments):  # each holds its utterance and little of the silence
        offset = index * period
        assert offset - SR // 4 <= start <= offset + voiced[0] and offset + voiced[1] <= end <= offset + period


def test_split_forces_cuts_without_pauses(speech):
    from modelscope_paraformer.core.vad import frame_energy_db

    voiced = np.tile(speech[7000:84000], 8)  # the example without its leading/trailing silence: no pauses
    segments = split_long_audio(voiced, max_seconds=20.0)
    assert len(segments) == 2 and segments[0][1] >= 17 * SR  # forced into the window's last 3 s
    energy = frame_energy_db(voiced)
    assert energy[segments[0][1] // 160] == energy[1700:2001].min()  # at its quietest 10 ms
    tone = (0.3 * np.sin(np.arange(50 * SR) * 2 * np.pi * 200 / SR)).astype(np.float32)
    segments = split_long_audio(tone, max_seconds=20.0)
    assert all(end - start <= 20 * SR for start, end in segments) and segments[-1][1] == len(tone)
    assert split_long_audio(np.zeros(0, np.float32)) == []
    assert split_long_audio(tone[:5 * SR]) == [(0, 5 * SR)]


def test_length_batches_limit_padding():
    assert length_batches([20, 10], 8) == [[1], [0]]  # 10 s padded to 20 s would waste a third
    assert length_batches([20, 19, 18, 10, 9, 17, 5], 3) == [[6], [4, 3], [5, 2, 1], [0]]
    assert length_batches([], 4) == []


@pytest.mark.parametrize("variant", ["offline", "online"])
def test_transcribe_long_joins_segments(small_models, long_audio, variant):
    model = load_model(small_models[variant])
    segments = split_long_audio(long_audio, max_seconds=20.0)
    assert len(segments) > 2
    pieces = [_decode(model, long_audio[start:end]) for start, end in segments]
    result = model.recognizer.transcribe_long(long_audio, "long", batch_size=3, max_seconds=20.0)
    assert result.token_ids == [i for piece in pieces for i in piece.token_ids]
    assert result.text == "".join(piece.text for piece in pieces)
    assert len(result.timestamps) == len(result.token_ids)
    starts = [start for start, _ in result.timestamps]
    assert starts == sorted(starts) and all(start <= end for start, end in result.timestamps)
    # absolute: each segment's tokens are placed inside (or right at the edges of) that segment
    index = 0
    for (seg_start, seg_end), piece in zip(segments, pieces):
        for start, end in result.timestamps[index:index + len(piece.token_ids)]:
            assert seg_start / 16 - 100 <= start and end <= seg_end / 16 + 100
        index += len(piece.token_ids)


def test_pipeline_selects_fast_paths(small_models, speech):
    pytest.importorskip("modelscope")
    import modelscope_paraformer  # noqa: F401
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    for options in ({"quantize": "int8"}, {"dtype": "bf16"}):
        asr = pipeline(task=Tasks.auto_speech_recognition, model=str(small_models["offline"]), **options)
        assert asr.model.paraformer.optimized_for == (options.get("dtype", "fp32"), options.get("quantize"), True)
        expected = optimize_for_inference(load_model(small_models["offline"]), **options).transcribe([speech])[0]
        assert asr(speech)[0]["text"] == expected.text and expected.text


def test_batched_streams_at_any_rate_equal_single_sessions(small_models, speech):
    """8, 44.1 and 48 kHz streams stepped together: each is resampled by its own stateful filter, and decodes as
    it does alone (a session given the whole file at that rate), whatever the feed sizes."""
    import librosa

    model = load_model(small_models["online"])
    audios = {rate: librosa.resample(speech, orig_sr=SR, target_sr=rate) for rate in (8000, 44100, 48000)}
    expected = {rate: StreamingDecoder(model).decode_all(audio, sample_rate=rate) for rate, audio in audios.items()}
    streamer = BatchedStreamer(model)
    for rate in audios:
        streamer.open(rate)
    pieces = {8000: 1000, 44100: 7777, 48000: 4800}
    offsets = dict.fromkeys(audios, 0)
    while any(offsets[rate] < len(audio) for rate, audio in audios.items()):
        for rate, audio in audios.items():
            if offsets[rate] < len(audio):
                end = offsets[rate] + pieces[rate]
                streamer.feed(rate, audio[offsets[rate]:end], is_final=end >= len(audio), sample_rate=rate)
                offsets[rate] = end
        streamer.run_until_idle()
    for rate in audios:
        result = streamer.result(rate)
        assert result.token_ids == expected[rate].token_ids and result.timestamps == expected[rate].timestamps
    assert all(e.token_ids for e in expected.values())
