"""Core behaviour without modelscope: frontend, streaming state, tokenizer, timestamps, CER."""
from __future__ import annotations

import numpy as np
import pytest

from modelscope_paraformer.core import StreamingDecoder, load_model
from modelscope_paraformer.core.frontend import StreamingFrontend
from modelscope_paraformer.core.tokenizer import CharTokenizer
from modelscope_paraformer.training.metrics import char_errors


def test_streaming_frontend_equals_offline(small_models, speech):
    model = load_model(small_models["online"])
    offline = model.frontend(speech)
    rng = np.random.default_rng(0)
    stream, pieces, start = StreamingFrontend(model.frontend), [], 0
    while start < len(speech):
        size = int(rng.integers(1, 4000))
        pieces.append(stream.accept(speech[start:start + size], is_final=start + size >= len(speech)))
        start += size
    assert np.allclose(np.concatenate(pieces), offline, atol=1e-5)


def test_any_chunk_length_gives_same_text(small_models, speech):
    model = load_model(small_models["online"])
    whole = StreamingDecoder(model).decode_all(speech)
    session = StreamingDecoder(model)
    for start in range(0, len(speech), 1234):
        session.feed(speech[start:start + 1234])
    session.finish()
    assert session.result.token_ids == whole.token_ids
    assert whole.text


def test_sessions_are_independent(small_models, speech):
    model = load_model(small_models["online"])
    other = speech[::-1].copy()
    alone = [StreamingDecoder(model).decode_all(a).token_ids for a in (speech, other)]
    first, second = StreamingDecoder(model), StreamingDecoder(model)
    stride = first.stride_samples
    for start in range(0, len(speech), stride):
        last = start + stride >= len(speech)
        first.feed(speech[start:start + stride], is_final=last)
        second.feed(other[start:start + stride], is_final=last)
    assert [first.result.token_ids, second.result.token_ids] == alone


def test_final_resets_and_abandoned_session_does_not_leak(small_models, speech):
    model = load_model(small_models["online"])
    expected = StreamingDecoder(model).decode_all(speech).token_ids
    session = StreamingDecoder(model)
    assert session.decode_all(speech).token_ids == expected
    assert session.decode_all(speech).token_ids == expected  # state was reset by is_final
    abandoned = StreamingDecoder(model)
    abandoned.feed(speech[:30000])  # never finished
    assert StreamingDecoder(model).decode_all(speech).token_ids == expected


def test_context_manager_flushes(small_models, speech):
    model = load_model(small_models["online"])
    with StreamingDecoder(model) as session:
        session.feed(speech)
    assert session.result.token_ids == StreamingDecoder(model).decode_all(speech).token_ids


def test_offline_timestamps_are_ordered_and_inside_audio(small_models, speech):
    model = load_model(small_models["offline"])
    result = model.transcribe([speech])[0]
    assert len(result.timestamps) == len(result.text)
    duration_ms = len(speech) / 16
    for (start, end), (next_start, _) in zip(result.timestamps, result.timestamps[1:] + [[duration_ms, 0]]):
        assert 0 <= start <= end <= duration_ms + 60
        assert start <= next_start


def test_online_model_decodes_whole_file_offline(small_models, speech):
    """A whole file given to an online model is decoded chunk by chunk, as if streamed in any pieces."""
    model = load_model(small_models["online"])
    whole = model.transcribe([speech])[0]
    session = StreamingDecoder(model)
    for start in range(0, len(speech), 4321):  # pieces that do not align with the 9600-sample strides
        session.feed(speech[start:start + 4321])
    session.finish()
    assert whole.token_ids == session.result.token_ids and whole.timestamps == session.result.timestamps
    ends = [end for _, end in whole.timestamps]
    assert whole.token_ids and ends == sorted(ends) and ends[-1] <= len(speech) / 16 + 300


def test_tokenizer_join_and_unknown():
    tokenizer = CharTokenizer(["<blank>", "<s>", "</s>", "你", "好", "hel@@", "lo", "world", "<unk>"])
    assert tokenizer.decode([3, 4, 5, 6, 7, 2]) == "你好hello world"
    assert tokenizer.encode("你x") == [3, 8]
    assert tokenizer.unknown_chars("你x") == {"x"}


def test_char_errors_counts():
    counts = char_errors("一二三四", "一三四五")
    assert (counts.substitutions, counts.insertions, counts.deletions) == (0, 1, 1)
    assert counts.cer == pytest.approx(0.5)
    assert char_errors("", "").cer == 0.0


def test_legacy_layout_loads(small_models, tmp_path, speech):
    """Revisions v1.0.x: model.pb, tokens.txt, legacy names in config.yaml, model_config.mode."""
    import json
    import shutil

    import yaml

    legacy = tmp_path / "legacy"
    shutil.copytree(small_models["online"], legacy)
    (legacy / "model.pt").rename(legacy / "model.pb")
    tokens = json.loads((legacy / "tokens.json").read_text())
    (legacy / "tokens.json").unlink()
    (legacy / "tokens.txt").write_text("\n".join(tokens) + "\n")
    config = yaml.safe_load((legacy / "config.yaml").read_text())
    config.update(model="paraformer_online", encoder="sanm_chunk_opt", decoder="paraformer_decoder_sanm",
                  predictor="cif_predictor_v2")
    (legacy / "config.yaml").write_text(yaml.safe_dump(config))
    (legacy / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition",
        "model": {"type": "generic-asr", "am_model_name": "model.pb", "mvn_file": "am.mvn",
                  "model_config": {"mode": "paraformer_streaming", "type": "pytorch", "code_base": "funasr"}},
        "pipeline": {"type": "asr-inference"}}))
    expected = StreamingDecoder(load_model(small_models["online"])).decode_all(speech).token_ids
    assert StreamingDecoder(load_model(legacy)).decode_all(speech).token_ids == expected


def test_kaldi_ark_and_scp_inputs(tmp_path, speech):
    import kaldiio

    from modelscope_paraformer.core.audio import iter_inputs, load_audio

    int16 = np.round(speech * 32767).astype(np.int16)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'wav.ark'},{tmp_path / 'ark.scp'}", write_function="soundfile") as writer:
        writer("utt1", (16000, int16))
    specifier = (tmp_path / "ark.scp").read_text().split()[1]
    assert np.allclose(load_audio(specifier), speech, atol=1e-4)
    assert np.allclose(load_audio("ark:" + specifier), speech, atol=1e-4)
    (tmp_path / "wav.scp").write_text(f"a {specifier}\n")
    [utterance] = list(iter_inputs(str(tmp_path / "wav.scp")))
    assert utterance.key == "a" and np.allclose(utterance.samples, speech, atol=1e-4)


def test_url_and_bytes_inputs(tmp_path, speech):
    """http(s) URLs are fetched (here from a local server) and raw file bytes are decoded."""
    import functools
    import http.server
    import shutil
    import threading

    from conftest import EXAMPLE_WAV
    from modelscope_paraformer.core.audio import load_audio

    shutil.copy(EXAMPLE_WAV, tmp_path / "speech.wav")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fetched = load_audio(f"http://127.0.0.1:{server.server_address[1]}/speech.wav")
    finally:
        server.shutdown()
    assert np.array_equal(fetched, speech)
    assert np.array_equal(load_audio(EXAMPLE_WAV.read_bytes()), speech)
