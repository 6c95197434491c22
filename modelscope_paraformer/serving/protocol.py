"""FunASR's runtime WebSocket protocol: the client's JSON config, its end-of-input message, the server's replies.

Client -> server: a first JSON text frame ``{"mode": "online"|"offline"|"2pass", "chunk_size": [5, 10, 5],
"chunk_interval": 10, "wav_name": ..., "wav_format": "pcm", "is_speaking": true, "audio_fs": 16000, "itn": true,
"hotwords": "..."}`` (unknown fields ignored; ``encoder_chunk_look_back`` / ``decoder_chunk_look_back`` as
FunASR's Python client sends them), binary frames of s16le mono PCM at ``audio_fs`` (or the bytes of an audio
file in offline mode with another ``wav_format``), and ``{"is_speaking": false}`` (``is_end`` / ``is_finished``
too) to finish. Server -> client: ``{"mode", "text", "wav_name", "is_final", "timestamp"?}``; online texts
are increments, offline and ``2pass-offline`` texts whole sentences; ``is_final`` marks the end of the session
(after the client's end of input), never a sentence end (FunASR #2141). Pure functions and data: no I/O here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..core.errors import ParaformerError

MODES = ("online", "offline", "2pass")
MIN_AUDIO_FS, MAX_AUDIO_FS = 8000, 96000
MAX_CHUNK_FRAMES = 100  # 6 s of 60 ms frames: more is no streaming configuration
MAX_LOOK_BACK = 16

# WebSocket close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_UNSUPPORTED = 1003  # binary audio before the JSON config
CLOSE_INVALID = 1007  # malformed JSON, bad config values
CLOSE_POLICY = 1008  # token, timeouts, a client that does not read, too much audio
CLOSE_TOO_BIG = 1009  # oversized frames (websockets closes with it by itself)
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # overloaded


class ProtocolError(ParaformerError):
    """A client message the protocol does not allow; ``code`` is the WebSocket close code to answer with."""

    def __init__(self, message: str, code: int = CLOSE_INVALID):
        super().__init__(message)
        self.code = code


@dataclass
class SessionConfig:
    """One session's settings from the client's first JSON message."""

    mode: str = "2pass"
    wav_name: str = "microphone"
    wav_format: str = "pcm"
    audio_fs: int = 16000
    chunk_size: tuple[int, int, int] = (5, 10, 5)
    chunk_interval: int = 10
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 0
    itn: bool = True
    hotwords: Optional[list[str]] = None  # for a SeACo offline model; FunASR's weights are not used by SeACo
    ignored: list[str] = field(default_factory=list)  # unknown fields, for the log

    @property
    def is_pcm(self) -> bool:
        """Raw s16le PCM frames (else the bytes of an audio file, decoded when the input ends)."""
        return self.wav_format.lower() in ("pcm", "raw", "s16le", "")

    @property
    def streaming(self) -> bool:
        """Modes that run the online model."""
        return self.mode in ("online", "2pass")


KNOWN_FIELDS = {"mode", "wav_name", "wav_format", "audio_fs", "chunk_size", "chunk_interval", "is_speaking",
                "is_end", "is_finished", "itn", "hotwords", "encoder_chunk_look_back", "decoder_chunk_look_back",
                "svs_lang", "svs_itn"}


def parse_text_frame(text: str) -> dict:
    """A text frame as a JSON object, else :class:`ProtocolError`."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ProtocolError(f"malformed JSON in a text frame: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a text frame must hold a JSON object, got {type(message).__name__}")
    return message


def is_end_of_input(message: dict) -> bool:
    """``{"is_speaking": false}`` (or ``is_end`` / ``is_finished`` true): the client's audio has ended."""
    return (message.get("is_speaking", True) is False or _truthy(message.get("is_end"))
            or _truthy(message.get("is_finished")))


def _truthy(value: Any) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.lower() == "true")


def _int(message: dict, name: str, default: int, low: int, high: int) -> int:
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProtocolError(f"{name} must be an integer, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ProtocolError(f"{name} must be an integer, got {value!r}") from None
    if number != int(number) or not low <= number <= high:
        raise ProtocolError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(number)


MAX_HOTWORDS_CHARS = 10_000


def parse_hotwords(value: Any) -> Optional[list[str]]:
    """The ``hotwords`` field as FunASR's clients send it: a JSON object string ``{"word": weight, ...}`` (its
    Python client and HTML5 page), such an object itself, or plain space-separated words. None when empty."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        if len(value) > MAX_HOTWORDS_CHARS:
            raise ProtocolError(f"hotwords is {len(value)} characters long; at most {MAX_HOTWORDS_CHARS}")
        try:
            value = json.loads(value) if value.lstrip().startswith("{") else value
        except json.JSONDecodeError:
            raise ProtocolError("hotwords starts with '{' but is not a JSON object: send {\"word\": weight, ...} "
                                "or space-separated words") from None
    if isinstance(value, dict):
        words = [str(word).strip() for word in value]
    elif isinstance(value, str):
        words = value.split()
    else:
        raise ProtocolError(f"hotwords must be a string or a JSON object, got {type(value).__name__}")
    return [word for word in words if word] or None


def parse_chunk_size(value: Any) -> tuple[int, int, int]:
    """``[left, chunk, right]`` in 60 ms frames (a list, or a "5,10,5" string as FunASR's server accepts)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ProtocolError(f"chunk_size must be 3 integers [left, chunk, right], got {value!r}")
    numbers = []
    for item in value:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise ProtocolError(f"chunk_size must be 3 integers [left, chunk, right], got {value!r}") from None
        if isinstance(item, bool) or number != int(number):
            raise ProtocolError(f"chunk_size must be 3 integers [left, chunk, right], got {value!r}")
        numbers.append(int(number))
    left, chunk, right = numbers
    if chunk <= 0 or left < 0 or right < 0 or max(numbers) > MAX_CHUNK_FRAMES:
        raise ProtocolError(f"chunk_size {numbers}: the chunk must be in [1, {MAX_CHUNK_FRAMES}] frames and "
                            f"left / right in [0, {MAX_CHUNK_FRAMES}]")
    return left, chunk, right


def parse_config(message: dict) -> SessionConfig:
    """The first JSON message as a :class:`SessionConfig`; a clear :class:`ProtocolError` for bad values."""
    mode = message.get("mode", "2pass")
    if mode not in MODES:
        raise ProtocolError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    wav_name = message.get("wav_name") or "microphone"
    wav_format = message.get("wav_format") or "pcm"
    if not isinstance(wav_name, str) or not isinstance(wav_format, str):
        raise ProtocolError("wav_name and wav_format must be strings")
    config = SessionConfig(
        mode=mode, wav_name=wav_name[:256], wav_format=wav_format[:16],
        audio_fs=_int(message, "audio_fs", 16000, MIN_AUDIO_FS, MAX_AUDIO_FS),
        chunk_size=parse_chunk_size(message.get("chunk_size", [5, 10, 5])),
        chunk_interval=_int(message, "chunk_interval", 10, 1, 1000),
        encoder_chunk_look_back=_int(message, "encoder_chunk_look_back", 4, -1, MAX_LOOK_BACK),
        decoder_chunk_look_back=_int(message, "decoder_chunk_look_back", 0, -1, MAX_LOOK_BACK),
        itn=_truthy(message.get("itn", True)),
        hotwords=parse_hotwords(message.get("hotwords")),
        ignored=sorted(set(message) - KNOWN_FIELDS))
    if not config.is_pcm and mode != "offline":
        raise ProtocolError(f"wav_format {wav_format!r} (a whole audio file) needs mode 'offline'; "
                            "online and 2pass take raw s16le PCM (wav_format 'pcm')")
    return config


def reply_mode(mode: str, offline_pass: bool) -> str:
    """The ``mode`` field of a reply: 2pass replies say which pass they come from."""
    if mode == "2pass":
        return "2pass-offline" if offline_pass else "2pass-online"
    return mode


def format_timestamp(timestamps: Sequence[Sequence[int]]) -> str:
    """Timestamps as FunASR's C++ server sends them: a JSON string ``"[[100,200],[200,500]]"`` (its HTML5 page
    parses the string)."""
    return json.dumps([[int(a), int(b)] for a, b in timestamps], separators=(",", ":"))


def result_message(mode: str, wav_name: str, text: str, is_final: bool, offline_pass: bool = False,
                   timestamps: Optional[Sequence[Sequence[int]]] = None, **extra: Any) -> str:
    """One reply as JSON text."""
    message: dict[str, Any] = {"mode": reply_mode(mode, offline_pass), "text": text, "wav_name": wav_name,
                               "is_final": bool(is_final)}
    if timestamps:
        message["timestamp"] = format_timestamp(timestamps)
    message.update(extra)
    return json.dumps(message, ensure_ascii=False)


def end_ack_message(mode: str, wav_name: str, error: Optional[str] = None) -> str:
    """The acknowledgement of ``is_end`` after the last result (FunASR PR #3440)."""
    message: dict[str, Any] = {"mode": mode, "wav_name": wav_name, "is_final": error is None, "is_end": True}
    if error:
        message["error"] = error
    return json.dumps(message, ensure_ascii=False)


def error_message(error: str, code: int, mode: Optional[str] = None, wav_name: Optional[str] = None) -> str:
    """A reply that says why the server closes the connection (then it closes with ``code``)."""
    message: dict[str, Any] = {"error": error, "code": code, "is_final": True}
    if mode:
        message["mode"] = mode
    if wav_name:
        message["wav_name"] = wav_name
    return json.dumps(message, ensure_ascii=False)


class TextDelta:
    """Text increments of a growing token list without re-joining all of it: the join of the last token and the
    new ones, less the last token's own text (the tokenizer's spacing and ``@@`` glue depend on the previous
    token only)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.last: Optional[str] = None

    def add(self, token_ids: Sequence[int]) -> str:
        """The text that ``token_ids`` (the next ids of the utterance) add to it."""
        if self.tokenizer is None or not token_ids:
            return ""
        tokens = self.tokenizer.decode_tokens(token_ids)
        if not tokens:
            return ""
        if self.last is None:
            text = self.tokenizer.join(tokens)
        else:
            text = self.tokenizer.join([self.last, *tokens])[len(self.tokenizer.join([self.last])):]
        self.last = tokens[-1]
        return text

    def reset(self) -> None:
        """A new utterance starts."""
        self.last = None
