"""The asyncio WebSocket server: FunASR's runtime protocol, the browser page and a health endpoint on one port.

The event loop only does I/O: each connection parses the protocol (:mod:`.protocol`), cuts utterances with the
causal endpointer (:mod:`..core.endpoint`: energy, or FSMN-VAD with ``serve --vad-model``) and hands audio to
the one engine thread (:mod:`.worker`), which sends results back. Plain HTTP GETs on the same port
(websockets' ``process_request``) serve ``/health`` and the shipped static page; nothing else of the file
system is reachable. The server keeps no state across connections, so any number of processes can run behind
a load balancer that keeps each connection on one.
"""
from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..core.audio import to_float32
from ..core.endpoint import EndpointConfig, FsmnSegmenter, Segmenter, make_segmenter
from ..core.errors import ParaformerError
from . import protocol
from .protocol import ProtocolError, SessionConfig
from .worker import EngineWorker, Progress, StreamSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".ico": "image/x-icon",
                  ".png": "image/png"}


@dataclass
class ServerOptions:
    """Limits and settings of one server process."""

    host: str = "127.0.0.1"
    port: int = 10095
    max_connections: int = 200
    max_frame_bytes: int = 1 << 20  # a larger frame or message is closed with 1009
    max_file_bytes: int = 64 << 20  # offline mode: an audio file's bytes in one session
    max_session_s: float = 4 * 3600.0  # wall-clock limit of one connection
    idle_timeout_s: float = 60.0  # no message for this long: closed
    max_backlog_s: float = 10.0  # undecoded audio per connection before the server stops reading it
    max_pending_replies: int = 512  # replies queued for a client that does not read them: closed
    send_timeout_s: float = 20.0
    token: Optional[str] = None  # required as ?token=... or "Authorization: Bearer ..." when set
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    endpoint: EndpointConfig = EndpointConfig()
    vad: Any = None  # a loaded FSMN-VAD (core.fsmn_vad.FsmnVad) cuts utterances instead of the energy endpointer
    punctuator: Any = None  # a loaded CT-Transformer (core.punctuation.Punctuator) punctuates offline sentences


class ServingError(ParaformerError):
    """The server cannot start with these settings."""


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The shipped assets by URL path, read once: the static route can serve nothing else."""
    assets: dict[str, tuple[bytes, str]] = {}
    if STATIC_DIR.is_dir():
        for path in STATIC_DIR.iterdir():
            if path.is_file() and path.suffix in _CONTENT_TYPES:
                assets[f"/static/{path.name}"] = (path.read_bytes(), _CONTENT_TYPES[path.suffix])
    if "/static/index.html" in assets:
        assets["/"] = assets["/index.html"] = assets["/static/index.html"]
    return assets


def _response(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


def _rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _ConnectionLog(logging.LoggerAdapter):
    """Prefixes every message with the connection id, so one client's story can be read from the log."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[c{self.extra['cid']}] {msg}", kwargs


class Connection:
    """One client: protocol state, endpointer, reply queue; its audio goes to the engine thread."""

    def __init__(self, server: "AsrServer", ws: ServerConnection, cid: int):
        self.server = server
        self.ws = ws
        self.cid = cid
        self.log = _ConnectionLog(logger, {"cid": cid})
        self.config: Optional[SessionConfig] = None
        self.session = 0  # sessions on this connection (a new config after a finished one starts another)
        self.sid: Optional[tuple] = None
        self.progress = Progress()
        self.segmenter: Optional[Segmenter | FsmnSegmenter] = None
        self.finishing = False
        self.finished = asyncio.Event()
        self.want_ack = False
        self.odd_byte = b""
        self.file_bytes: list[bytes] = []
        self.file_size = 0
        self.header_checked = False
        self.replies: asyncio.Queue = asyncio.Queue(maxsize=server.options.max_pending_replies)
        self.closing: Optional[tuple[int, str]] = None
        self.started = time.monotonic()

    # -------------------------------------------------------------------------------- engine events
    def deliver(self, event: tuple) -> None:
        """An engine event (on the loop thread): format the reply and queue it for the sender."""
        if self.config is None or self.closing is not None:
            return
        kind, config = event[0], self.config
        if kind == "partial":
            self._queue(protocol.result_message(config.mode, config.wav_name, event[1], False, audio_ms=event[2]))
        elif kind == "sentence":
            _, text, timestamps, last = event
            self._queue(protocol.result_message(config.mode, config.wav_name, text, last, offline_pass=True,
                                                timestamps=timestamps))
        elif kind == "done":
            if config.mode == "online":
                self._queue(protocol.result_message(config.mode, config.wav_name, "", True))
            if self.want_ack:
                self._queue(protocol.end_ack_message(protocol.reply_mode(config.mode, True), config.wav_name))
            self._end_session()
        elif kind == "error":
            self.fail(f"recognition failed: {event[1]}", protocol.CLOSE_INTERNAL)

    def _queue(self, text: str) -> None:
        try:
            self.replies.put_nowait(text)
        except asyncio.QueueFull:
            self.fail("the client does not read its results", protocol.CLOSE_POLICY, reply=False)

    def fail(self, message: str, code: int, reply: bool = True) -> None:
        """Close with an error reply (sent before the close frame) and a close code; the reader loop stops."""
        if self.closing is not None:
            return
        self.log.warning("closing (%d): %s", code, message)
        if reply:
            mode = self.config.mode if self.config else None
            wav = self.config.wav_name if self.config else None
            try:
                self.replies.put_nowait(protocol.error_message(message, code, mode, wav))
            except asyncio.QueueFull:
                pass
        self.closing = (code, message[:120])
        try:
            self.replies.put_nowait(None)  # the sender closes after the replies before it
        except asyncio.QueueFull:
            asyncio.ensure_future(self.ws.close(code, message[:120]))

    async def sender(self) -> None:
        """Send queued replies in order; a client that stops reading is closed after ``send_timeout_s``."""
        timeout = self.server.options.send_timeout_s
        while True:
            text = await self.replies.get()
            if text is None:
                code, reason = self.closing or (protocol.CLOSE_NORMAL, "")
                await self.ws.close(code, reason)
                return
            try:
                await asyncio.wait_for(self.ws.send(text), timeout)
            except asyncio.TimeoutError:
                self.log.warning("client did not read for %.0f s: dropping it", timeout)
                self.ws.transport.abort()
                return
            except ConnectionClosed:
                return

    # ------------------------------------------------------------------------------------ messages
    async def run(self) -> None:
        """Read messages until the client leaves, a limit is hit or the protocol is broken."""
        options = self.server.options
        while self.closing is None:
            remaining = options.max_session_s - (time.monotonic() - self.started)
            if remaining <= 0:
                self.fail(f"session time limit of {options.max_session_s:.0f} s reached", protocol.CLOSE_POLICY)
                break
            try:
                message = await asyncio.wait_for(self.ws.recv(), min(options.idle_timeout_s, remaining))
            except asyncio.TimeoutError:
                if time.monotonic() - self.started >= options.max_session_s or self.finishing:
                    continue  # the limit above reports it; a client waiting for its results is not idle
                self.fail(f"no message for {options.idle_timeout_s:.0f} s", protocol.CLOSE_POLICY)
                break
            except ConnectionClosed:
                break
            try:
                if isinstance(message, str):
                    await self._on_text(message)
                else:
                    await self._on_audio(message)
            except ProtocolError as error:
                self.fail(str(error), error.code)

    async def _on_text(self, text: str) -> None:
        message = protocol.parse_text_frame(text)
        if self.finishing:  # a new session after this one: wait until its results are out
            await self.finished.wait()
        if self.config is None:
            if "mode" not in message and protocol.is_end_of_input(message):
                return  # an end with nothing begun: nothing to do
            self._start(protocol.parse_config(message))
        elif isinstance(message.get("wav_name"), str):
            self.config.wav_name = message["wav_name"][:256]
        if protocol.is_end_of_input(message):
            self.want_ack = protocol._truthy(message.get("is_end"))
            self._finish()

    def _start(self, config: SessionConfig) -> None:
        worker = self.server.worker
        if config.streaming and not worker.streaming:
            raise ProtocolError(f"mode {config.mode!r} needs a streaming model; this server runs an offline "
                                "model: use mode 'offline'")
        if config.ignored:
            self.log.debug("ignored fields: %s", ", ".join(config.ignored))
        self.config = config
        self.session += 1
        self.sid = (self.cid, self.session)
        self.progress = Progress()
        options = self.server.options
        self.segmenter = make_segmenter(config.audio_fs, options.endpoint, options.vad) if config.is_pcm else None
        self.finishing, self.want_ack, self.odd_byte, self.header_checked = False, False, b"", False
        self.file_bytes, self.file_size = [], 0
        self.finished = asyncio.Event()
        settings = StreamSettings(config.mode, config.chunk_size, config.encoder_chunk_look_back,
                                  config.decoder_chunk_look_back, config.wav_name, config.hotwords)
        worker.open(self.sid, settings, self, self.progress)
        self.log.info("session %d: mode %s, chunk_size %s, audio_fs %d, wav_format %s, wav_name %r", self.session,
                      config.mode, list(config.chunk_size), config.audio_fs, config.wav_format, config.wav_name)

    def _finish(self) -> None:
        if self.finishing or self.config is None:
            return
        self.finishing = True
        worker = self.server.worker
        if not self.config.is_pcm:
            worker.file(self.sid, b"".join(self.file_bytes))
            self.file_bytes = []
        else:
            worker.audio(self.sid, np.zeros(0, np.float32), self.config.audio_fs, final=True)

    def _end_session(self) -> None:
        """All results of the session are queued: the connection may start another one."""
        self.log.info("session %d finished", self.session)
        if self.sid is not None:
            self.server.worker.close(self.sid)
        self.config, self.sid, self.segmenter, self.finishing = None, None, None, False
        self.finished.set()

    async def _on_audio(self, data: bytes) -> None:
        if self.config is None:
            raise ProtocolError("binary audio before the JSON config (send {\"mode\": ...} first)",
                                protocol.CLOSE_UNSUPPORTED)
        if self.finishing:
            self.log.debug("audio after the end of input: dropped")
            return
        config, options = self.config, self.server.options
        if not config.is_pcm:
            self.file_size += len(data)
            if self.file_size > options.max_file_bytes:
                raise ProtocolError(f"audio file over {options.max_file_bytes} bytes", protocol.CLOSE_TOO_BIG)
            self.file_bytes.append(data)
            return
        if not self.header_checked:
            data = self._strip_wav_header(data)
        data = self.odd_byte + data
        self.odd_byte = data[len(data) - len(data) % 2:]
        pcm = np.frombuffer(data[: len(data) - len(self.odd_byte)], dtype="<i2")
        if not pcm.size:
            return
        samples = to_float32(pcm)
        rate = config.audio_fs
        # only utterances go on, each closed at its endpoint: long sessions stay bounded, pauses cost nothing
        segmenter = self.segmenter
        if isinstance(segmenter, FsmnSegmenter):  # network steps: off the event loop that serves every client
            pieces = await asyncio.to_thread(segmenter.accept, samples)
            if segmenter is not self.segmenter:  # the connection failed meanwhile
                return
        else:
            pieces = segmenter.accept(samples)
        for piece, ends, start in pieces:
            self.server.worker.audio(self.sid, piece, rate, cut=ends, start_s=start / rate)
            self.progress.submitted_s += len(piece) / rate
        # backpressure: stop reading (TCP pushes back on the client) while the engine is behind
        while self.progress.backlog_s > options.max_backlog_s and self.closing is None:
            await asyncio.sleep(0.02)

    def _strip_wav_header(self, data: bytes) -> bytes:
        """A client that streams a wav file with its header: skip the header rather than decode it as audio."""
        self.header_checked = True
        if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            position = data.find(b"data", 12, 4096)
            if position >= 0:
                self.log.debug("skipped a %d byte wav header", position + 8)
                return data[position + 8:]
        return data


class AsrServer:
    """The server: engine thread, connection registry, HTTP routes; :meth:`serve` runs it until stopped."""

    def __init__(self, model: Any, offline_model: Any = None, options: ServerOptions = ServerOptions(),
                 max_batch: Optional[int] = None, model_name: str = ""):
        self.model = model
        self.offline_model = offline_model
        self.options = options
        self.max_batch = max_batch
        self.model_name = model_name
        self.worker: Optional[EngineWorker] = None
        self.connections: dict[int, Connection] = {}
        self.served = 0
        self.refused = 0
        self._ids = itertools.count(1)
        self._assets = _load_static()
        self._started = time.monotonic()
        self._ssl = self._ssl_context()
        self.bound_port: Optional[int] = None

    def _ssl_context(self) -> Optional[ssl.SSLContext]:
        options = self.options
        if not options.certfile and not options.keyfile:
            return None
        if not options.certfile:
            raise ServingError("--keyfile needs --certfile")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(options.certfile, options.keyfile)
        except (OSError, ssl.SSLError) as error:
            raise ServingError(f"cannot load the TLS certificate {options.certfile}: {error}") from None
        return context

    # ----------------------------------------------------------------------------------------- HTTP
    def health(self) -> dict:
        """What ``GET /health`` answers."""
        return {"status": "ok" if self.worker and self.worker.stats()["alive"] else "degraded",
                "model": self.model_name, "offline_model": bool(self.offline_model),
                "endpointer": "energy" if self.options.vad is None else "fsmn-vad",
                "punctuation": self.options.punctuator is not None,
                "connections": len(self.connections), "max_connections": self.options.max_connections,
                "served": self.served, "refused": self.refused, "uptime_s": round(time.monotonic() - self._started),
                "rss_mb": _rss_mb(), "engine": self.worker.stats() if self.worker else {}}

    def process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        """Route the handshake request: HTTP GETs are answered here, WebSocket upgrades go on (or are refused)."""
        url = urlsplit(request.path)
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not upgrade:
            if url.path == "/health":
                return _response(HTTPStatus.OK, json.dumps(self.health()).encode(), "application/json")
            asset = self._assets.get(url.path)
            if asset is None:  # only the shipped files: "/static/../x", "/etc/passwd" ... are 404
                return _response(HTTPStatus.NOT_FOUND, b"not found\n")
            return _response(HTTPStatus.OK, asset[0], asset[1])
        if self.options.token is not None:
            given = parse_qs(url.query).get("token", [""])[0]
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.options.token.encode()):
                self.refused += 1
                logger.warning("refused a connection from %s: bad or missing token", connection.remote_address)
                return _response(HTTPStatus.UNAUTHORIZED, b"a valid token is required (?token=...)\n")
        # handshakes in flight are not counted: a burst may pass the limit by the few that race it
        if len(self.connections) >= self.options.max_connections:
            self.refused += 1
            logger.warning("refused a connection: %d connections open (--max-connections)", len(self.connections))
            return _response(HTTPStatus.SERVICE_UNAVAILABLE, b"server busy: too many connections, retry later\n")
        return None

    @staticmethod
    def select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Optional[str]:
        """``binary`` when offered (FunASR's clients), none otherwise (FunASR's HTML5 page offers none)."""
        return "binary" if "binary" in subprotocols else None

    # ------------------------------------------------------------------------------------ WebSocket
    async def handler(self, ws: ServerConnection) -> None:
        """One connection from its handshake to its end; frees its engine stream however it ends."""
        cid = next(self._ids)
        connection = Connection(self, ws, cid)
        self.connections[cid] = connection
        self.served += 1
        connection.log.info("connected from %s (%d open)", ws.remote_address, len(self.connections))
        sender = asyncio.create_task(connection.sender())
        try:
            await connection.run()
            if connection.closing is not None:  # let the error reply and close frame go out
                await asyncio.wait_for(asyncio.shield(sender), 5)
        except Exception:  # a bug must not leak the connection's engine state
            connection.log.exception("connection error")
        finally:
            sender.cancel()
            if connection.sid is not None:
                self.worker.close(connection.sid)
            del self.connections[cid]
            connection.log.info("closed (code %s, %d open)", ws.close_code, len(self.connections))

    async def serve(self, stop: Optional[asyncio.Future] = None, ready: Any = None) -> None:
        """Run until ``stop`` resolves (or SIGTERM / SIGINT when ``stop`` is None); then close cleanly."""
        loop = asyncio.get_running_loop()
        self.worker = EngineWorker(self.model, self.offline_model, self.max_batch, loop,
                                   punctuator=self.options.punctuator)
        self.worker.start()
        if stop is None:
            stop = loop.create_future()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, lambda s=signum: stop.done() or stop.set_result(s))
        options = self.options
        async with serve(self.handler, options.host, options.port, process_request=self.process_request,
                         select_subprotocol=self.select_subprotocol, max_size=options.max_frame_bytes,
                         max_queue=32, ping_interval=None, close_timeout=3, ssl=self._ssl,
                         server_header="modelscope-paraformer") as server:
            self.bound_port = next(iter(server.sockets)).getsockname()[1]
            scheme = "https" if self._ssl else "http"
            logger.info("serving %s on %s://%s:%d/ (ws%s://...)", self.model_name, scheme, options.host,
                        self.bound_port, "s" if self._ssl else "")
            if ready is not None:
                ready(self.bound_port)
            reason = await stop
            logger.info("shutting down (%s): closing %d connections", reason, len(self.connections))
            server.close(close_connections=True)  # close frames with 1001 (going away)
            await server.wait_closed()
        self.worker.stop()
        logger.info("stopped")


def run_server(model: Any, offline_model: Any = None, options: ServerOptions = ServerOptions(),
               max_batch: Optional[int] = None, model_name: str = "") -> int:
    """Serve until SIGTERM / SIGINT; returns the process exit status."""
    if logging.getLogger("websockets").level == logging.NOTSET:  # one line per HTTP request is noise
        logging.getLogger("websockets").setLevel(logging.WARNING)
    server = AsrServer(model, offline_model, options, max_batch, model_name)
    asyncio.run(server.serve())
    return 0
