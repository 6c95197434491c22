"""The streaming loop of the official ModelScope model card, unchanged, running on this package.

With ``audio_in=`` / ``param_dict=`` the pipeline answers a one-item list that also indexes like the dict the
card expects: ``rec_result["text"]`` is the text this chunk added ("" when nothing new; the old pipelines
answered ``{}`` then, so the card's loop prints a few more separating spaces here).

    python examples/streaming_model_card.py [--model DIR_OR_HUB_ID] [--audio examples/asr_example_zh.wav]
"""
import argparse
from pathlib import Path

import soundfile

import modelscope_paraformer  # registers the native Paraformer classes with ModelScope
from modelscope.pipelines import pipeline
from modelscope.utils.constant import Tasks

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=str(modelscope_paraformer.DEMO_MODEL_DIR))
parser.add_argument("--audio", default=str(Path(__file__).with_name("asr_example_zh.wav")))
args = parser.parse_args()

inference_pipeline = pipeline(task=Tasks.auto_speech_recognition, model=args.model, mode="paraformer_streaming")
speech, sample_rate = soundfile.read(args.audio)
speech_length = speech.shape[0]

sample_offset = 0
chunk_size = [5, 10, 5]  # [5, 10, 5] 600 ms, [8, 8, 4] 480 ms
stride_size = chunk_size[1] * 960
param_dict = {"cache": dict(), "is_final": False, "chunk_size": chunk_size}
final_result = ""

for sample_offset in range(0, speech_length, min(stride_size, speech_length - sample_offset)):
    if sample_offset + stride_size >= speech_length - 1:
        stride_size = speech_length - sample_offset
        param_dict["is_final"] = True
    rec_result = inference_pipeline(audio_in=speech[sample_offset: sample_offset + stride_size],
                                    param_dict=param_dict)
    if len(rec_result) != 0:
        final_result += rec_result["text"] + " "
        print(rec_result)
print(final_result)
