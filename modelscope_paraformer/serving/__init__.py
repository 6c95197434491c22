"""Real-time serving: FunASR's WebSocket protocol (online / offline / 2pass), a browser page, a Gradio app.

``python -m modelscope_paraformer serve --model DIR`` runs :func:`.server.run_server`; the modules import
websockets (``pip install modelscope-paraformer[serve]``) only when used.
"""
