"""Transcribe files with ModelScope's pipeline() and this package's native Paraformer.

    python examples/transcribe.py examples/asr_example_zh.wav [--model DIR_OR_HUB_ID]
"""
import argparse

import modelscope_paraformer  # must come before pipeline(): it registers the native classes
from modelscope.pipelines import pipeline
from modelscope.utils.constant import Tasks

parser = argparse.ArgumentParser()
parser.add_argument("audio", nargs="+")
parser.add_argument("--model", default=str(modelscope_paraformer.DEMO_MODEL_DIR))
args = parser.parse_args()

asr = pipeline(task=Tasks.auto_speech_recognition, model=args.model)
for result in asr(args.audio if len(args.audio) > 1 else args.audio[0]):
    print(result["key"], result["text"], result["timestamp"][:3], "...")
