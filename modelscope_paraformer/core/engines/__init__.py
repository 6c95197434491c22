"""Engines: the network computations behind :mod:`..engine`'s interface (torch; onnxruntime, which needs no torch)."""
