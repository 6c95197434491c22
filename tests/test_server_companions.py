"""The server with the model-card companions: a SeACo offline model biased by the session's ``hotwords`` field
(FunASR's clients send a JSON object of word -> weight) and a CT-Transformer punctuating its sentences."""
from __future__ import annotations

import json

import pytest

from modelscope_paraformer import DEMO_MODEL_DIR

pytest.importorskip("websockets", reason="the server needs websockets (pip install .[serve])")
from test_serving import pcm16, session  # noqa: E402

from modelscope_paraformer.serving import protocol  # noqa: E402
from modelscope_paraformer.serving.launch import ServerProcess  # noqa: E402

pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "model.pt").is_file(), reason="demo model not built")


def test_hotwords_field_as_funasr_clients_send_it():
    assert protocol.parse_hotwords('{"阿里巴巴": 20, "通义实验室": 30}') == ["阿里巴巴", "通义实验室"]
    assert protocol.parse_hotwords({"魔搭": 10}) == ["魔搭"]
    assert protocol.parse_hotwords(" 魔搭  达摩院 ") == ["魔搭", "达摩院"]
    assert protocol.parse_hotwords("") is None and protocol.parse_hotwords("{}") is None
    with pytest.raises(protocol.ProtocolError, match="not a JSON object"):
        protocol.parse_hotwords("{broken")
    with pytest.raises(protocol.ProtocolError, match="string or a JSON object"):
        protocol.parse_hotwords(["魔搭"])


def test_2pass_offline_sentences_are_biased_and_punctuated(tmp_path, speech):
    from modelscope_paraformer.core import load_model, load_punctuator
    from modelscope_paraformer.tools.random_model import build_random_model
    from modelscope_paraformer.tools.random_punc import build_random_punc

    seaco = build_random_model(tmp_path / "seaco", "seaco", 2, 1, 64, 128, 100, seed=3)
    punc = build_random_punc(tmp_path / "punc", "zh", 2000, 0, 2)
    offline, punctuator = load_model(seaco), load_punctuator(punc)
    plain = offline.recognizer.recognize([speech], ["x"])[0].text
    hotwords = [plain[1:3], "".join(ch for ch in "乙乜九乞也" if ch not in plain)[:2]]
    biased = offline.recognizer.recognize([speech], ["x"], hotwords=hotwords)[0].text
    assert biased != plain  # the hotwords matter to this random model: the test can fail
    args = ["--num-threads", "1", "--offline-model", str(seaco), "--punc-model", str(punc), "--idle-timeout", "10"]
    with ServerProcess(args, tmp_path / "server.log") as server:
        for field, expected in ((json.dumps({word: 20 for word in hotwords}), biased), ("", plain)):
            replies = session(server.url, pcm16(speech), "2pass", frame=9600, extra={"hotwords": field})
            sentences = [r["text"] for r in replies if r.get("mode") == "2pass-offline" and "text" in r]
            assert sentences == [punctuator.punctuate(expected).text]
        assert "Traceback" not in server.log_text()
