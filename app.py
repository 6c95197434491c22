"""ModelScope Studio / Hugging Face Spaces entry point: the Gradio demo of the native Paraformer.

    pip install -e ".[gradio]" && python app.py [--model DIR_OR_HUB_ID] [--offline-model ...]
"""
from modelscope_paraformer.serving.gradio_app import main

if __name__ == "__main__":
    main()
