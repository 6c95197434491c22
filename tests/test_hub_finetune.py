"""Hub-driven fine-tuning: the ModelScope tutorial flow (speech-asr-trainer + ASRDataset), every data_dir form,
legacy hub layouts, LoRA and freezing. Tiny random models, a few short utterances: seconds per test."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

import modelscope_paraformer  # noqa: F401  (registers the classes when modelscope loads its registries)
from modelscope_paraformer.core import StreamingDecoder, load_audio, load_model
from modelscope_paraformer.training.lora import LoRALinear, merged_state_dict
from modelscope_paraformer.training.loss import paraformer_loss
from modelscope_paraformer.training.sources import DataSourceError, resolve_data
from modelscope_paraformer.training.trainer import ParaformerTrainer, TrainerConfig

from conftest import EXAMPLE_WAV

CLIPS = [(0, 24000), (8000, 36000), (16000, 40000), (24000, 52000), (30000, 54000), (40000, 64000),
         (48000, 72000), (56000, 80000)]  # 1.5 - 1.75 s crops of the example


def text_of(index: int) -> str:
    """Four characters of the small models' synthetic vocabulary (tokens 3..98: U+4E00 onwards)."""
    return "".join(chr(0x4E00 + (index * 4 + k) % 90) for k in range(4))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[tuple[str, Path, str]]:
    root = tmp_path_factory.mktemp("clips")
    speech = load_audio(EXAMPLE_WAV)
    out = []
    for index, (start, end) in enumerate(CLIPS):
        path = root / f"utt{index}.wav"
        soundfile.write(path, speech[start:end], 16000)
        out.append((f"utt{index}", path, text_of(index)))
    return out


def write_kaldi(directory: Path, rows, shuffle_text: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "wav.scp").write_text("".join(f"{key} {path}\n" for key, path, _ in rows))
    text_rows = list(reversed(rows)) if shuffle_text else rows
    (directory / "text").write_text("".join(f"{key} {text}\n" for key, _, text in text_rows))
    return directory


@pytest.fixture(scope="module")
def split_dir(clips, tmp_path_factory) -> Path:
    """The tutorial's local layout: data/train/{wav.scp,text} and data/validation/{wav.scp,text}."""
    root = tmp_path_factory.mktemp("asr_data")
    write_kaldi(root / "train", clips[:6])
    write_kaldi(root / "validation", clips[6:])
    return root


def state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True)


def train_loss(model_dir: Path, clips) -> float:
    """Loss of a model on the training clips (eval mode, no sampler): what fine-tuning lowers."""
    model = load_model(model_dir).eval()
    audio = [load_audio(path) for _, path, _ in clips]
    features, lengths = model.features(audio)
    targets = [torch.tensor(model.tokenizer.encode(text)) for _, _, text in clips]
    with torch.no_grad():
        return paraformer_loss(model, features, lengths, targets, sampling_ratio=0.0).loss.item()


def asr_pipeline(model_dir: Path):
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    return pipeline(task=Tasks.auto_speech_recognition, model=str(model_dir), device="cpu")


# ----- 1. the tutorial runs unchanged ---------------------------------------------------------------------
def test_tutorial_script_on_a_local_dataset(small_models, split_dir, clips, tmp_path):
    from modelscope.metainfo import Trainers
    from modelscope.msdatasets.dataset_cls.custom_datasets import ASRDataset
    from modelscope.trainers import build_trainer

    from modelscope_paraformer.integration.trainer import ParaformerModelScopeTrainer

    ds_dict = ASRDataset.load(str(split_dir), namespace="speech_asr")
    assert len(ds_dict["train"]) == 6 and len(ds_dict["validation"]) == 2 and ds_dict["raw_data_dir"] == str(split_dir)
    kwargs = dict(model=str(small_models["offline"]), data_dir=ds_dict, dataset_type="small",
                  work_dir=str(tmp_path / "exp"), batch_bins=400, max_epoch=1, lr=5e-3)
    trainer = build_trainer(Trainers.speech_asr_trainer, default_args=kwargs)
    assert isinstance(trainer, ParaformerModelScopeTrainer)
    assert "modelscope.trainers.audio.asr_trainer" not in sys.modules  # modelscope's broken module never ran
    assert trainer.trainer.config.batch_bins == 400  # "small": fbank frames, as before
    out = Path(trainer.train())

    info = json.loads((out / "training.json").read_text())
    assert info["data"] == f"{split_dir / 'train'} and {split_dir / 'validation'}"
    assert list(info["valid_loss"]) == ["1"]
    base, tuned = state(small_models["offline"]), state(out)
    assert {k: v.shape for k, v in tuned.items()} == {k: v.shape for k, v in base.items()}
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    report = trainer.evaluate(str(out))  # the validation split by default
    assert report["utterances"] == 2 and report["reference_chars"] == 8
    expected = load_model(out).transcribe([load_audio(clips[0][1])])[0].text
    assert asr_pipeline(out)(str(clips[0][1]))[0]["text"] == expected


def test_build_trainer_imported_before_this_package_is_routed(small_models, split_dir, tmp_path):
    """The other import order: modelscope's build_trainer bound first, modelscope_paraformer imported after."""
    import subprocess

    script = f"""
from modelscope.metainfo import Trainers
from modelscope.trainers import build_trainer
import modelscope_paraformer
trainer = build_trainer(Trainers.speech_asr_trainer, default_args=dict(
    model={str(small_models['online'])!r}, data_dir={str(split_dir)!r}, work_dir={str(tmp_path / 'exp')!r}))
print(type(trainer).__name__, trainer.trainer.model.streaming)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["ParaformerModelScopeTrainer", "True"]


def test_speech_asr_trainer_names_what_to_use_for_other_models(small_models, split_dir, tmp_path):
    from modelscope.metainfo import Trainers
    from modelscope.trainers import build_trainer

    from modelscope_paraformer.integration.trainer import TrainerRoutingError

    other = tmp_path / "sensevoice"
    shutil.copytree(small_models["offline"], other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**config, "model": "SenseVoiceSmall"}))
    with pytest.raises(TrainerRoutingError, match=r"SenseVoiceSmall model.*funasr-train \+\+model="):
        build_trainer(Trainers.speech_asr_trainer, default_args=dict(model=str(other), data_dir=str(split_dir),
                                                                     work_dir=str(tmp_path / "exp")))


def test_old_argument_meanings(small_models, split_dir, tmp_path, caplog):
    from modelscope.trainers import build_trainer

    from modelscope_paraformer.integration.trainer import _old_options

    options = _old_options({"batch_bins": 20000, "dataset_type": "large", "lr": None, "mate_params": {
        "freeze_param": ["encoder.*"], "keep_nbest_models": 2, "optim_conf": {"lr": 2e-4}, "accum_grad": 2,
        "no_such_option": 1}})
    # "large": batch_bins in milliseconds -> 10 ms frames; mate_params under FunASR 0.x names
    assert options == {"batch_bins": 2000, "freeze": ["encoder.*"], "avg_nbest": 2, "lr": 2e-4, "accum_grad": 2}
    assert "'no_such_option' has no counterpart" in caplog.text
    with pytest.raises(ValueError, match="dataset_type must be 'small' or 'large'"):
        _old_options({"dataset_type": "huge"})
    with caplog.at_level(logging.WARNING):
        trainer = build_trainer("speech-asr-trainer", default_args=dict(
            model=str(small_models["offline"]), data_dir=str(split_dir), work_dir=str(tmp_path / "exp"),
            distributed=True, model_revision="v2.0.4", mate_params={"keep_nbest_models": 1}))
    assert "torchrun --nproc_per_node=N" in caplog.text
    config = trainer.trainer.config
    assert (config.avg_nbest, config.model_revision, config.model) == (1, "v2.0.4", str(small_models["offline"]))


# ----- 2. every data_dir form -------------------------------------------------------------------------------
def _summary(samples):
    return [(s.key, Path(s.source).name, s.text) for s in samples]


def test_asr_dataset_dict_is_read_by_key(clips, tmp_path):
    """raw_data_dir's Kaldi files are paired by key; ASRDataset itself pairs by line position."""
    from modelscope.msdatasets.dataset_cls.custom_datasets import ASRDataset

    root = tmp_path / "data"
    write_kaldi(root / "train", clips[:4], shuffle_text=True)
    write_kaldi(root / "validation", clips[4:6])
    ds_dict = ASRDataset.load(str(root))
    assert ds_dict["train"][0]["Text:LABEL"] == text_of(3)  # ASRDataset: utt0's audio with utt3's text
    splits = resolve_data(ds_dict)
    assert _summary(splits.train) == [(f"utt{i}", f"utt{i}.wav", text_of(i)) for i in range(4)]
    assert _summary(splits.valid) == [(f"utt{i}", f"utt{i}.wav", text_of(i)) for i in (4, 5)]
    assert splits.train[1].origin == f"{root / 'train' / 'text'}:3"


def test_split_rows_hub_style_and_bad_rows(clips, caplog):
    rows = {"train": [{"Audio:FILE": str(path), "Text:LABEL": text} for _, path, text in clips[:3]]
            + [{"Audio:FILE": str(clips[0][1])}, {"Text:LABEL": "一"}, {"Audio:FILE": 3, "Text:LABEL": "一"}],
            "dev": [{"Audio:FILE": str(clips[3][1]), "Text:LABEL": text_of(3)}]}
    with caplog.at_level(logging.WARNING):
        splits = resolve_data(rows)
    assert _summary(splits.train) == [(f"utt{i}", f"utt{i}.wav", text_of(i)) for i in range(3)]
    assert _summary(splits.valid) == [("utt3", "utt3.wav", text_of(3))]
    assert "data_dir['train'][3]: no text column" in caplog.text
    assert "data_dir['train'][4]: no audio column" in caplog.text
    assert "data_dir['train'][5]: unusable audio (audio of type int)" in caplog.text


def test_decoded_arrays_are_written_once_at_16k(clips, tmp_path):
    speech = load_audio(clips[0][1])
    at_8k = speech[::2].copy()
    rows = [{"id": "a", "audio": {"array": speech, "sampling_rate": 16000, "path": None}, "sentence": "一二"},
            {"id": "b", "audio": {"array": at_8k, "sampling_rate": 8000}, "transcription": "三"}]
    splits = resolve_data(rows, work_dir=tmp_path)
    assert splits.valid is None and [(s.key, s.text) for s in splits.train] == [("a", "一二"), ("b", "三")]
    first, second = (Path(s.source) for s in splits.train)
    assert first.parent == tmp_path / "data" and soundfile.info(first).samplerate == 16000
    np.testing.assert_array_equal(soundfile.read(first, dtype="float32")[0], speech)  # lossless
    assert soundfile.info(second).frames == pytest.approx(len(speech), abs=2)
    again = resolve_data(rows, work_dir=tmp_path)
    assert [s.source for s in again.train] == [str(first), str(second)]  # content-named: reused, not rewritten
    with pytest.raises(ValueError, match="work_dir"):
        from modelscope_paraformer.training.sources import _write_wav

        _write_wav(speech, 16000, "x", None)


def test_huggingface_and_msdataset_splits(clips):
    datasets = pytest.importorskip("datasets")
    from modelscope.msdatasets import MsDataset

    def table(rows):
        return datasets.Dataset.from_dict({"audio": [str(p) for _, p, _ in rows], "text": [t for _, _, t in rows]})

    hf = datasets.DatasetDict({"train": table(clips[:3]), "validation": table(clips[3:4])})
    for data in (hf, MsDataset.to_ms_dataset(hf)):
        splits = resolve_data(data)
        assert _summary(splits.train) == [(f"utt{i}", f"utt{i}.wav", text_of(i)) for i in range(3)]
        assert _summary(splits.valid) == [("utt3", "utt3.wav", text_of(3))]
    one = resolve_data(MsDataset.to_ms_dataset(table(clips[:2])))  # a single split: validation is held out
    assert one.valid is None and len(one.train) == 2
    audio_typed = table(clips[:2]).cast_column("audio", datasets.Audio(sampling_rate=16000))
    assert [s.source for s in resolve_data(audio_typed).train] == [str(clips[0][1]), str(clips[1][1])]


def test_directory_forms(clips, split_dir, tmp_path):
    dev_layout = tmp_path / "dev_layout"
    write_kaldi(dev_layout / "train", clips[:2])
    write_kaldi(dev_layout / "dev", clips[2:3])
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps({"key": k, "source": str(p), "target": t}) + "\n" for k, p, t in clips[:2]))
    (tmp_path / "val.jsonl").write_text(json.dumps({"key": "utt2", "source": str(clips[2][1]), "target": text_of(2)}))
    expected_train = [(f"utt{i}", f"utt{i}.wav", text_of(i)) for i in range(2)]
    for source, valid_keys in ((split_dir, ["utt6", "utt7"]), (dev_layout, ["utt2"]), (tmp_path, ["utt2"]),
                               (split_dir / "train", None), (jsonl, None)):
        splits = resolve_data(str(source))
        assert _summary(splits.train)[:2] == expected_train, source
        assert (None if splits.valid is None else [s.key for s in splits.valid]) == valid_keys, source
    with pytest.raises(DataSourceError, match="train/ and validation/"):
        resolve_data(str(tmp_path / "dev_layout" / "nothing"))
    with pytest.raises(DataSourceError, match="no 'train' split"):
        resolve_data({"test": []})


def test_rows_without_validation_train_with_a_held_out_split(small_models, clips, tmp_path, caplog):
    rows = [{"audio": {"array": load_audio(path), "sampling_rate": 16000}, "text": text} for _, path, text in clips]
    config = TrainerConfig(work_dir=str(tmp_path / "exp"), data_dir=rows, model=str(small_models["offline"]),
                           max_epoch=1, batch_bins=400, max_steps=2, augment=False, extra={"progress": False})
    with caplog.at_level(logging.WARNING):
        out = ParaformerTrainer(config).train()
    assert "no validation split in data_dir (list(8 rows)): holding out 1 of 8 utterances" in caplog.text
    info = json.loads((out / "training.json").read_text())
    assert info["config"]["data_dir"] == "list(8 rows)" and info["resources"]["peak_rss_mb"] > 0
    settings = torch.load(tmp_path / "exp" / "checkpoints" / "last.pt", weights_only=True)["settings"]
    assert settings["data_dir"].startswith("rows sha256:")  # in-memory data is identified by content for resuming


# ----- 3. legacy hub layouts ----------------------------------------------------------------------------------
def make_legacy(source: Path, target: Path, tokens_in_config: bool) -> Path:
    """The pre-1.x hub layout: model.pb, legacy names, token list in tokens.txt or inside config.yaml."""
    shutil.copytree(source, target)
    (target / "model.pt").rename(target / "model.pb")
    tokens = json.loads((target / "tokens.json").read_text())
    (target / "tokens.json").unlink()
    config = yaml.safe_load((target / "config.yaml").read_text())
    streaming = config["model"] == "ParaformerStreaming"
    config.update(model="paraformer_online" if streaming else "paraformer",
                  encoder="sanm_chunk_opt" if streaming else "sanm", decoder="paraformer_decoder_sanm",
                  predictor="cif_predictor_v2", frontend="wav_frontend")
    if tokens_in_config:
        config["token_list"] = tokens
    else:
        (target / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (target / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    mode = "paraformer_streaming" if streaming else "paraformer"
    (target / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition",
        "model": {"type": "generic-asr", "am_model_name": "model.pb", "mvn_file": "am.mvn",
                  "model_config": {"mode": mode, "type": "pytorch", "code_base": "funasr"}},
        "pipeline": {"type": "asr-inference"}}))
    return target


@pytest.mark.parametrize("variant, tokens_in_config", [("online", True), ("offline", False)])
def test_legacy_layout_finetunes_to_a_1x_dir(small_models, split_dir, clips, tmp_path, variant, tokens_in_config):
    from modelscope.trainers import build_trainer

    legacy = make_legacy(small_models[variant], tmp_path / "legacy", tokens_in_config)
    trainer = build_trainer("speech-asr-trainer", default_args=dict(
        model=str(legacy), data_dir=str(split_dir), work_dir=str(tmp_path / "exp"), max_epoch=1, batch_bins=400))
    out = Path(trainer.train())
    assert sorted(p.name for p in out.iterdir()) == ["am.mvn", "config.yaml", "configuration.json", "model.pt",
                                                     "tokens.json", "training.json"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    expected_names = ("ParaformerStreaming", "SANMEncoderChunkOpt") if variant == "online" else ("Paraformer",
                                                                                                   "SANMEncoder")
    assert (config["model"], config["encoder"], config["decoder"], config["predictor"], config["frontend"]) == (
        *expected_names, "ParaformerSANMDecoder", "CifPredictorV2", "WavFrontend")
    assert "token_list" not in config
    tokens = json.loads((small_models[variant] / "tokens.json").read_text())
    assert json.loads((out / "tokens.json").read_text()) == tokens
    configuration = json.loads((out / "configuration.json").read_text())
    assert configuration["pipeline"]["type"] == "paraformer-asr"
    assert configuration["file_path_metas"]["init_param"] == "model.pt"
    assert state(out).keys() == torch.load(legacy / "model.pb", weights_only=True).keys()
    model = load_model(out)
    audio = load_audio(clips[6][1])
    expected = StreamingDecoder(model).decode_all(audio).text if model.streaming else model.transcribe([audio])[0].text
    assert asr_pipeline(out)(str(clips[6][1]))[0]["text"] == expected


# ----- 4. LoRA and freezing -----------------------------------------------------------------------------------
def test_lora_trains_adapters_only_and_merges_on_export(small_models, split_dir, clips, tmp_path):
    base_dir = small_models["offline"]
    base = state(base_dir)
    config = TrainerConfig(work_dir=str(tmp_path / "lora"), data_dir=str(split_dir), model=str(base_dir), max_epoch=1,
                           batch_bins=400, lr=2e-2, warmup_steps=1, augment=False, avg_nbest=1, lora_rank=4,
                           lora_alpha=8, lora_dropout=0.0, extra={"progress": False})
    trainer = ParaformerTrainer(config)
    adapted = {name: m for name, m in trainer.model.named_modules() if isinstance(m, LoRALinear)}
    # encoder: 2 blocks x (q_k_v, out, w_1, w_2); decoder: 1 block x (q, k_v, out, w_1, w_2) + decoders3 (w_1, w_2)
    assert len(adapted) == 2 * 4 + 5 + 2
    expected_trainable = sum(4 * (m.in_features + m.out_features) for m in adapted.values())
    assert (trainer.trainable.trainable, trainer.trainable.adapters) == (expected_trainable, expected_trainable)
    assert trainer.trainable.total - trainer.trainable.adapters == sum(v.numel() for v in base.values())
    out = trainer.train()

    exported = state(out)
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in base.items()}  # exactly the base keys
    for name, module in adapted.items():
        assert module.lora_B.abs().sum() > 0, name  # the adapters trained (B starts at zero)
        delta = (module.lora_B.detach() @ module.lora_A.detach()) * (8 / 4)
        assert torch.equal(exported[f"{name}.weight"], base[f"{name}.weight"] + delta), name
    untouched = [key for key in base if key.rsplit(".", 1)[0] not in adapted or key.endswith(".bias")]
    assert untouched and all(torch.equal(exported[k], base[k]) for k in untouched)  # the base stayed frozen
    assert train_loss(out, clips[:6]) < train_loss(base_dir, clips[:6])  # and training lowered the loss
    assert json.loads((out / "training.json").read_text())["resources"]["trainable_parameters"] == expected_trainable
    expected = load_model(out).transcribe([load_audio(clips[1][1])])[0].text
    assert asr_pipeline(out)(str(clips[1][1]))[0]["text"] == expected


def test_merged_state_equals_the_adapted_forward(small_models, speech):
    from modelscope_paraformer.training.lora import apply_lora

    model = load_model(small_models["online"])
    apply_lora(model, 2, 4.0, ["encoder.encoders.*.feed_forward.w_1"])
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_B, std=0.1)
    merged = load_model(small_models["online"])
    merged.load_state_dict(merged_state_dict(model), strict=True)
    features, lengths = model.features([speech[:32000]])
    with torch.no_grad():
        adapted_out = model.encoder(features, lengths)[0]
        merged_out = merged.encoder(features, lengths)[0]
    torch.testing.assert_close(merged_out, adapted_out, atol=1e-5, rtol=1e-5)


def test_freeze_patterns_keep_the_encoder(small_models, split_dir, tmp_path):
    base = state(small_models["offline"])
    out = ParaformerTrainer(TrainerConfig(
        work_dir=str(tmp_path / "frozen"), data_dir=str(split_dir), model=str(small_models["offline"]), max_epoch=1,
        batch_bins=400, max_steps=2, lr=1e-3, warmup_steps=1, augment=False, freeze="encoder.*",
        extra={"progress": False})).train()
    exported = state(out)
    encoder = [k for k in base if k.startswith("encoder.")]
    assert encoder and all(torch.equal(exported[k], base[k]) for k in encoder)
    assert any(not torch.equal(exported[k], base[k]) for k in base if k.startswith("decoder."))


@pytest.mark.parametrize("options, message", [
    ({"lora_rank": 4, "lora_targets": ["*.no_such_layer"]}, "match no Linear module"),
    ({"freeze": ["*"]}, "nothing left to train"),
    ({"freeze": ["nothing.*"]}, "match no parameter"),
])
def test_lora_and_freeze_settings_are_checked(small_models, split_dir, tmp_path, options, message):
    from modelscope_paraformer.core import ParaformerError

    with pytest.raises(ParaformerError, match=message):
        ParaformerTrainer(TrainerConfig(work_dir=str(tmp_path / "x"), data_dir=str(split_dir),
                                        model=str(small_models["offline"]), **options))
    with pytest.raises(ValueError, match="lora_rank"):
        TrainerConfig(work_dir=str(tmp_path), data_dir=str(split_dir), lora_rank=-1)


def test_finetune_cli_takes_the_lora_and_freeze_options():
    """`python -m modelscope_paraformer finetune` and the torchrun entry share one set of LoRA / freeze flags."""
    from modelscope_paraformer.__main__ import build_parser
    from modelscope_paraformer.training.train import tuning_options

    args = build_parser().parse_args(["finetune", "--data-dir", "d", "--work-dir", "w", "--lora-rank", "8",
                                      "--lora-alpha", "32", "--lora-targets", "*.self_attn.linear_out",
                                      "--freeze", "encoder.*"])
    assert tuning_options(args) == {"lora_rank": 8, "lora_alpha": 32.0, "lora_dropout": 0.05, "freeze": "encoder.*",
                                    "lora_targets": "*.self_attn.linear_out"}
    plain = build_parser().parse_args(["finetune", "--data-dir", "d", "--work-dir", "w"])
    assert tuning_options(plain)["lora_rank"] == 0 and "lora_targets" not in tuning_options(plain)
