"""Token-exact parity with funasr (the reference implementation) on the same weights and audio.

Models are random-weight Paraformer-large at full width and reduced depth (see conftest); funasr runs
with dither 0 and the same thread count. Inputs: shorter than one chunk, exactly k chunks, a ragged
length, and 30 s.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from modelscope_paraformer.core import StreamingDecoder, load_model

funasr = pytest.importorskip("funasr")

STRIDE = 9600  # samples in a 600 ms step


def _inputs(speech: np.ndarray) -> dict[str, np.ndarray]:
    thirty = np.tile(speech, int(np.ceil(480000 / len(speech))))[:480000]
    return {"short": speech[:5000], "3 chunks": speech[:3 * STRIDE], "ragged": speech,
            "30 s": thirty}


@pytest.fixture(scope="module")
def reference(wide_models):
    logging.getLogger().setLevel(logging.WARNING)
    models = {variant: funasr.AutoModel(model=str(path), disable_update=True, ncpu=torch.get_num_threads(),
                                        device="cpu", log_level="ERROR")
              for variant, path in wide_models.items()}
    return models


def _funasr_ids(text: str, tokenizer) -> list[int]:
    return tokenizer.encode(text.replace(" ", ""))


def test_offline_tokens_match_funasr(wide_models, reference, speech):
    ours = load_model(wide_models["offline"])
    for name, audio in _inputs(speech).items():
        expected = reference["offline"].generate(input=audio, disable_pbar=True)[0]["text"]
        got = ours.transcribe([audio])[0]
        assert got.token_ids == _funasr_ids(expected, ours.tokenizer), name
        assert got.token_ids, f"{name}: a random model still fires tokens"


def test_offline_batch_equals_single(wide_models, speech):
    ours = load_model(wide_models["offline"])
    audios = list(_inputs(speech).values())[:3]
    batched = ours.transcribe(audios, batch_size=3)
    single = [ours.transcribe([a])[0] for a in audios]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]


def test_encoder_and_frontend_allclose(wide_models, reference, speech):
    ours = load_model(wide_models["offline"])
    ref = reference["offline"]
    features, lengths = ours.features([speech])
    ref_features, ref_lengths = ref.kwargs["frontend"](torch.from_numpy(speech)[None], torch.tensor([len(speech)]))
    assert torch.allclose(features, ref_features, atol=1e-4)
    with torch.inference_mode():
        encoded, _ = ours.encoder(features, lengths)
        ref_encoded, _ = ref.model.encode(features.clone(), lengths)
    assert torch.allclose(encoded, ref_encoded, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [[0, 10, 5], [0, 8, 4]])
def test_streaming_tokens_match_funasr(wide_models, reference, speech, chunk_size):
    ours = load_model(wide_models["online"])
    stride = chunk_size[1] * 960
    for name, audio in _inputs(speech).items():
        cache: dict = {}
        steps = max(1, -(-len(audio) // stride))
        texts = []
        for i in range(steps):
            out = reference["online"].generate(input=audio[i * stride:(i + 1) * stride], cache=cache,
                                               is_final=i == steps - 1, chunk_size=chunk_size,
                                               encoder_chunk_look_back=4, decoder_chunk_look_back=1,
                                               disable_pbar=True)
            texts.append(out[0]["text"])
        got = StreamingDecoder(ours, chunk_size, 4, 1).decode_all(audio)
        assert got.token_ids == _funasr_ids("".join(texts), ours.tokenizer), f"{name} {chunk_size}"


@pytest.mark.parametrize("look_backs", [(-1, -1), (0, 0), (1, 3)])
def test_streaming_look_backs_match_funasr(wide_models, reference, speech, look_backs):
    """Encoder -1 is unbounded, decoder -1 keeps nothing (FunASR caches cross-attention only for look-back > 0)."""
    ours, (encoder_look_back, decoder_look_back) = load_model(wide_models["online"]), look_backs
    stride, cache, texts = 9600, {}, []
    steps = -(-len(speech) // stride)
    for i in range(steps):
        out = reference["online"].generate(input=speech[i * stride:(i + 1) * stride], cache=cache,
                                           is_final=i == steps - 1, chunk_size=[0, 10, 5],
                                           encoder_chunk_look_back=encoder_look_back,
                                           decoder_chunk_look_back=decoder_look_back, disable_pbar=True)
        texts.append(out[0]["text"])
    got = StreamingDecoder(ours, [0, 10, 5], encoder_look_back, decoder_look_back).decode_all(speech)
    assert got.token_ids == _funasr_ids("".join(texts), ours.tokenizer)
