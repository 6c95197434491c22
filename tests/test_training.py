"""Training: loss parity with funasr, data validation, a tiny run end to end, resume after kill -9, DDP."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from modelscope_paraformer.core import StreamingDecoder, load_audio, load_model
from modelscope_paraformer.tools.train_demo import demo_architecture
from modelscope_paraformer.training.data import read_dataset, validate
from modelscope_paraformer.training.loss import paraformer_loss
from modelscope_paraformer.training.trainer import ParaformerTrainer, TrainerConfig

from conftest import EXAMPLE_TEXT, EXAMPLE_WAV

REPO = Path(__file__).resolve().parents[1]


def tiny_architecture() -> dict:
    config = demo_architecture()
    config["encoder_conf"].update(output_size=64, linear_units=128, num_blocks=2)
    config["decoder_conf"].update(linear_units=128, num_blocks=1, att_layer_num=1)
    config["predictor_conf"]["idim"] = 64
    return config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A Kaldi dir of 8 real utterances (the example at several speeds), plus a jsonl twin."""
    import librosa

    root = tmp_path_factory.mktemp("tiny_data")
    speech, _ = soundfile.read(EXAMPLE_WAV, dtype="float32")
    scp, text = [], []
    for index, rate in enumerate([0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2]):
        path = root / f"utt{index}.wav"
        soundfile.write(path, librosa.effects.time_stretch(speech, rate=rate), 16000)
        scp.append(f"utt{index} {path}")
        text.append(f"utt{index} {EXAMPLE_TEXT}")
    (root / "wav.scp").write_text("\n".join(scp) + "\n")
    (root / "text").write_text("\n".join(text) + "\n")
    return root


def test_loss_equals_funasr(small_models, speech):
    funasr = pytest.importorskip("funasr")
    ours = load_model(small_models["offline"])
    features, lengths = ours.features([speech, speech[:40000], speech[:20000]])
    targets = [torch.randint(3, 99, (n,), generator=torch.Generator().manual_seed(n)) for n in (9, 6, 3)]
    expected_model = funasr.AutoModel(model=str(small_models["offline"]), disable_update=True, device="cpu",
                                      ncpu=torch.get_num_threads(), log_level="ERROR").model.eval()
    expected_model.sampling_ratio = 0.0
    padded = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-1)
    expected, stats, _ = expected_model(features.clone(), lengths, padded, torch.tensor([9, 6, 3]))
    ours.eval()
    got = paraformer_loss(ours, features, lengths, targets, sampling_ratio=0.0)
    assert got.loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert got.loss_pre == pytest.approx(stats["loss_pre"].item(), abs=1e-5)


def test_streaming_loss_trains_through_chunks(small_models, speech):
    model = load_model(small_models["online"]).train()
    features, lengths = model.features([speech, speech[:30000]])
    targets = [torch.tensor([5, 6, 7]), torch.tensor([8, 9])]
    out = paraformer_loss(model, features, lengths, targets, sampling_ratio=0.0)
    out.loss.backward()
    assert model.encoder.encoders[0].self_attn.linear_q_k_v.weight.grad.abs().sum() > 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.step()
    after = paraformer_loss(model, features, lengths, targets, sampling_ratio=0.0)
    assert after.loss.item() < out.loss.item()  # one step down the gradient lowers the loss: it trains


@pytest.mark.parametrize("chunk_size", [(0, 10, 5), (5, 10, 5), (0, 8, 4)])
@pytest.mark.parametrize("look_backs", [(4, 1), (-1, -1), (0, 0), (1, 2)])
def test_training_windows_equal_streaming_encoder(small_models, speech, chunk_size, look_backs):
    """The chunked encoder that training runs gives each frame the hidden state and CIF weight that streaming
    inference gives it, for every look-back (the decoder mask keeps what the streaming cache keeps)."""
    from modelscope_paraformer.core.chunking import ChunkConfig
    from modelscope_paraformer.core.engine import ChunkInput
    from modelscope_paraformer.core.engines.torch_engine import TorchEngine
    from modelscope_paraformer.training.loss import chunked_encode, decoder_cross_mask

    model = load_model(small_models["online"])
    chunk = ChunkConfig.create(chunk_size, *look_backs)
    features = model.frontend(speech[:50000])  # 52 frames: ragged against every stride
    hidden, alphas, *_ = chunked_encode(model, torch.from_numpy(features)[None], torch.tensor([len(features)]), chunk)
    engine, cache, streamed_hidden, streamed_alphas = TorchEngine(model), None, [], []
    padded = np.concatenate([np.zeros((chunk.overlap, features.shape[1]), np.float32), features])
    for start in range(0, len(features), chunk.stride):
        window = padded[start:start + chunk.overlap + chunk.stride]
        (encoded,), (cache,) = engine.encode_chunks([ChunkInput(window, start - chunk.overlap)], [cache], chunk)
        final = start + chunk.stride >= len(features)
        end = len(window) if final else chunk.left + chunk.stride
        streamed_hidden.append(encoded.hidden[chunk.left:end])
        streamed_alphas.append(encoded.alphas[chunk.left:end])
    expected_hidden, expected_alphas = np.concatenate(streamed_hidden), np.concatenate(streamed_alphas)
    count = len(expected_alphas)
    np.testing.assert_allclose(hidden[0, :count].detach().numpy(), expected_hidden, atol=2e-5)
    np.testing.assert_allclose(alphas[0, :count].detach().numpy(), expected_alphas, atol=2e-6)
    assert float(alphas[0, count:].detach().abs().sum()) == 0.0  # frames after the last window own nothing
    # a token of window 2 sees its window and exactly the decoder_keep_frames before it
    width = chunk.window
    mask = decoder_cross_mask([[2 * chunk.stride]], 1, chunk, width, [5], torch.ones(1, 6 * width, dtype=torch.bool))
    assert int(mask.sum()) == width + min(chunk.decoder_keep_frames, 2 * width)


def test_bad_rows_are_reported_and_skipped(tmp_path, caplog):
    good = tmp_path / "good.wav"
    shutil.copy(EXAMPLE_WAV, good)
    (tmp_path / "broken.wav").write_text("not audio")
    (tmp_path / "wav.scp").write_text(f"a {good}\nb {tmp_path / 'missing.wav'}\nc {good}\nd {good}\n"
                                      f"e {tmp_path / 'broken.wav'}\n")
    (tmp_path / "text").write_text(f"a {EXAMPLE_TEXT}\nb 一二\nc \nd 一X二\ne 一二\n")
    from modelscope_paraformer.core.tokenizer import CharTokenizer

    tokenizer = CharTokenizer(["<blank>", "<s>", "</s>", *sorted(set(EXAMPLE_TEXT) | {"一", "二"}), "<unk>"])
    with caplog.at_level(logging.WARNING):
        kept = validate(read_dataset(tmp_path), tokenizer)
    assert [s.key for s in kept] == ["a"]
    log = caplog.text
    assert "text:2" in log and "not found" in log  # missing wav, with the line number
    assert "text:3" in log and "empty transcript" in log
    assert "text:4" in log and "outside the vocabulary X" in log
    assert "text:5" in log and "unreadable audio" in log


def test_train_from_scratch_then_pipeline_loads_it(tiny_data, tmp_path):
    config = TrainerConfig(work_dir=str(tmp_path / "exp"), data_dir=str(tiny_data), architecture=tiny_architecture(),
                           max_epoch=2, batch_bins=4000, lr=1e-3, warmup_steps=2, save_interval_steps=2,
                           avg_nbest=2, extra={"progress": False})
    trainer = ParaformerTrainer(config)
    out = trainer.train()
    for name in ("configuration.json", "config.yaml", "model.pt", "am.mvn", "tokens.json"):
        assert (out / name).is_file(), name
    model = load_model(out)
    assert model.streaming and set(EXAMPLE_TEXT) <= set(model.tokenizer.tokens)
    losses = json.loads((out / "training.json").read_text())["valid_loss"]
    assert losses["2"] < losses["1"]  # it learned: the held-out loss fell from the first epoch to the second
    report = trainer.evaluate(data_dir=str(tiny_data))
    assert report["utterances"] == 8 and report["reference_chars"] == 8 * len(EXAMPLE_TEXT)
    errors = report["substitutions"] + report["insertions"] + report["deletions"]
    assert report["cer"] == pytest.approx(errors / report["reference_chars"]) and errors > 0

    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    import modelscope_paraformer  # noqa: F401  (registers the classes)

    asr = pipeline(task=Tasks.auto_speech_recognition, model=str(out))
    expected = StreamingDecoder(model).decode_all(load_audio(EXAMPLE_WAV)).text
    assert asr(str(EXAMPLE_WAV))[0]["text"] == expected


def test_build_trainer_finetunes_and_keeps_vocabulary(tiny_data, tmp_path):
    first = ParaformerTrainer(TrainerConfig(work_dir=str(tmp_path / "base"), data_dir=str(tiny_data),
                                            architecture=tiny_architecture(), max_epoch=1, batch_bins=4000,
                                            extra={"progress": False})).train()
    import modelscope_paraformer  # noqa: F401
    from modelscope.trainers import build_trainer

    trainer = build_trainer("paraformer-trainer", default_args=dict(
        model=str(first), data_dir=str(tiny_data), work_dir=str(tmp_path / "ft"), max_epoch=1, batch_bins=4000,
        lr=1e-4, extra={"progress": False}))
    out = Path(trainer.train())
    assert load_model(out).tokenizer.tokens == load_model(first).tokenizer.tokens
    report = trainer.evaluate(str(out))
    assert report["utterances"] == 8 and report["reference_chars"] == 8 * len(EXAMPLE_TEXT)
    before, after = (torch.load(d / "model.pt", weights_only=True) for d in (first, out))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def _train_command(data: Path, work: Path, *extra: str) -> list[str]:
    arch = work.parent / "arch.yaml"
    arch.write_text(yaml.safe_dump(tiny_architecture()))
    return [sys.executable, "-m", "modelscope_paraformer.training.train", "--data-dir", str(data), "--work-dir",
            str(work), "--architecture", str(arch), "--batch-bins", "1500", "--lr", "1e-3", "--warmup-steps", "2",
            "--seed", "3", *extra]


def test_resume_after_kill(tiny_data, tmp_path):
    work = tmp_path / "exp"
    command = _train_command(tiny_data, work, "--max-epoch", "40", "--save-interval-steps", "2")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = work / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.is_file(), "no checkpoint was written before the kill"
    saved = torch.load(last, weights_only=True)
    done = subprocess.run(command[:-4] + ["--max-epoch", str(saved["epoch"] + 1), "--save-interval-steps", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming at epoch {saved['epoch']}, batch {saved['batches_done']} (step {saved['step']})" in done.stderr
    assert (work / "model" / "model.pt").is_file()


def test_ddp_two_processes_stay_in_sync(tiny_data, tmp_path):
    work = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               *(_train_command(tiny_data, work, "--max-epoch", "1", "--max-steps", "3", "--checksum")[1:])]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    checksums = [(work / f"checksum.rank{rank}").read_text() for rank in (0, 1)]
    assert checksums[0] == checksums[1]
    assert (work / "model" / "model.pt").is_file()


def test_kaldi_feature_arks_feed_training(small_models, tmp_path, speech):
    """feats.scp with 80-dim fbank (stacked here) or ready 560-dim LFR features, as Kaldi recipes write them."""
    import kaldiio

    from modelscope_paraformer.training.data import FeatureDataset

    model = load_model(small_models["offline"])
    fbank = model.frontend.fbank(speech)
    lfr = model.frontend(speech)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'feats.ark'},{tmp_path / 'feats.scp'}") as writer:
        writer("fbank", fbank)
        writer("lfr", lfr)
    tokens = model.tokenizer.tokens
    (tmp_path / "text").write_text(f"fbank {tokens[5]}{tokens[6]}\nlfr {tokens[7]}\n")
    samples = validate(read_dataset(tmp_path), model.tokenizer)
    dataset = FeatureDataset(samples, model.frontend, model.tokenizer)
    for index in range(2):
        features, ids, key = dataset[index]
        assert torch.allclose(features, torch.from_numpy(lfr), atol=1e-4), key
    assert dataset[0][1].tolist() == [5, 6]


@pytest.mark.parametrize("option", [{"max_epoch": 0}, {"max_epoch": "one"}, {"accum_grad": 0}, {"lr": "fast"},
                                    {"log_interval": 0}, {"save_interval_steps": 0}, {"batch_bins": -5},
                                    {"chunk_size": [0, 10]}, {"precision": "fp8"}])
def test_trainer_options_are_checked_up_front(tmp_path, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        TrainerConfig(work_dir=str(tmp_path), data_dir=str(tmp_path), **option)
    assert TrainerConfig(work_dir=str(tmp_path), data_dir=str(tmp_path), max_epoch="2", lr="1e-4").lr == 1e-4


def test_no_usable_utterances_is_an_error(tiny_data, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "wav.scp").write_text((tiny_data / "wav.scp").read_text().splitlines()[0] + "\n")
    (one / "text").write_text((tiny_data / "text").read_text().splitlines()[0] + "\n")
    trainer = ParaformerTrainer(TrainerConfig(work_dir=str(tmp_path / "exp"), data_dir=str(one),
                                              architecture=tiny_architecture(), max_epoch=1, batch_bins=4000))
    with pytest.raises(ValueError, match="no usable training utterances"):  # the only one is held out
        trainer.train()
    assert not (tmp_path / "exp" / "model").exists()


def test_work_dir_of_another_run_is_refused(tiny_data, tmp_path):
    def config(**changes):
        return TrainerConfig(**{**dict(work_dir=str(tmp_path / "exp"), data_dir=str(tiny_data),
                                       architecture=tiny_architecture(), max_epoch=1, batch_bins=4000,
                                       extra={"progress": False}), **changes})

    out = ParaformerTrainer(config()).train()
    weights = (out / "model.pt").read_bytes()
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.0005 -> 0.001\)"):
        ParaformerTrainer(config(lr=1e-3)).train()
    assert (out / "model.pt").read_bytes() == weights  # the finished model is untouched
    stale = tmp_path / "exp" / "checkpoints" / ".last.pt.killed"
    stale.write_bytes(b"half a save")
    (tmp_path / "exp" / "checkpoints" / "epoch_1.pt").write_bytes(b"damaged")
    assert ParaformerTrainer(config()).train() == out  # same settings: re-exports, skipping the damaged epoch
    assert not stale.exists() and load_model(out).tokenizer is not None
    with pytest.raises(ValueError, match="cannot be used"):
        ParaformerTrainer(config(work_dir="/proc/no-such-dir/exp"))
