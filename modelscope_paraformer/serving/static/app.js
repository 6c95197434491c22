// The page's client of FunASR's WebSocket protocol: microphone (AudioWorklet, 16-bit PCM with audio_fs) or a file.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { ws: null, context: null, stream: null, node: null, partial: "" };

function serverUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  return `${scheme}//${location.host}/` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function mode() { return document.querySelector("input[name=mode]:checked").value; }
function setStatus(text) { $("status").textContent = text; }
function setBusy(busy) {
  $("start").disabled = busy; $("upload").disabled = busy; $("stop").disabled = !busy;
  document.querySelectorAll("input[name=mode]").forEach((r) => { r.disabled = busy; });
}

function showPartial() { $("partial").textContent = state.partial; }

function addSentence(text, timestamp) {
  if (!text) return;
  const line = document.createElement("p");
  line.className = "sentence";
  if (timestamp) {
    try {
      const stamps = JSON.parse(timestamp);  // FunASR sends a JSON string "[[start,end],...]" in ms
      if (stamps.length) {
        const time = document.createElement("span");
        time.className = "time";
        time.textContent = (stamps[0][0] / 1000).toFixed(2) + " s";
        line.appendChild(time);
      }
    } catch (e) { /* no timestamps then */ }
  }
  line.appendChild(document.createTextNode(text));
  $("sentences").appendChild(line);
}

function onMessage(event) {
  const msg = JSON.parse(event.data);
  if (msg.error) { setStatus("Server: " + msg.error); return; }
  if (msg.mode === "online" || msg.mode === "2pass-online") {
    state.partial += msg.text || "";  // online texts are increments
  } else if (msg.mode === "offline" || msg.mode === "2pass-offline") {
    if (msg.text !== undefined) {
      addSentence(msg.text, msg.timestamp);
      state.partial = "";  // the corrected sentence replaces its partials
    }
  }
  if (msg.is_final && msg.mode === "online" && !msg.is_end) {
    addSentence(state.partial); state.partial = "";
  }
  showPartial();
  if (msg.is_end) finishSession();  // the acknowledgement of our is_end: every result is in
}

function openSocket(config) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(serverUrl());  // no subprotocol, as FunASR's own page
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { ws.send(JSON.stringify(config)); resolve(ws); };
    ws.onerror = () => reject(new Error("cannot connect to " + serverUrl()));
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      if (state.ws === ws) { state.ws = null; stopCapture(); setBusy(false); }
      if (e.code !== 1000 && e.code !== 1005) setStatus(`Connection closed (${e.code}${e.reason ? ": " + e.reason : ""}).`);
    };
    state.ws = ws;
  });
}

function finishSession() {
  setStatus("Done.");
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(1000); }
  setBusy(false);
}

async function startMicrophone() {
  setBusy(true);
  try {
    // the browser's processing alters the samples: the recogniser wants them as captured
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    state.context = new AudioContext();
    await state.context.resume();  // created in the click handler: allowed to run
    await state.context.audioWorklet.addModule("/static/pcm-worklet.js");
    const source = state.context.createMediaStreamSource(state.stream);
    state.node = new AudioWorkletNode(state.context, "pcm-capture");
    const mute = state.context.createGain();
    mute.gain.value = 0;
    source.connect(state.node).connect(mute).connect(state.context.destination);
    const ws = await openSocket({ mode: mode(), chunk_size: [5, 10, 5], chunk_interval: 10, wav_name: "microphone",
      wav_format: "pcm", is_speaking: true, audio_fs: state.context.sampleRate, itn: true });
    state.node.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    setStatus(`Listening (${mode()}, ${state.context.sampleRate} Hz)...`);
  } catch (error) {
    stopCapture(); setBusy(false); setStatus("Microphone: " + error.message);
  }
}

function stopCapture() {
  if (state.node) { state.node.port.onmessage = null; state.node.disconnect(); state.node = null; }
  if (state.stream) { state.stream.getTracks().forEach((t) => t.stop()); state.stream = null; }
  if (state.context) { state.context.close(); state.context = null; }
}

function stopMicrophone() {
  stopCapture();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ is_speaking: false, is_end: true }));
    setStatus("Finishing...");
  } else {
    setBusy(false);
  }
}

async function recogniseFile() {
  const file = $("file").files[0];
  if (!file) { setStatus("Choose an audio file first."); return; }
  setBusy(true);
  $("stop").disabled = true;
  const extension = (file.name.split(".").pop() || "wav").toLowerCase();
  try {
    const data = await file.arrayBuffer();
    const ws = await openSocket({ mode: "offline", wav_name: file.name, wav_format: extension, audio_fs: 16000,
      is_speaking: true, itn: true });
    const step = 64 * 1024;  // well under the server's frame limit
    for (let start = 0; start < data.byteLength; start += step) ws.send(data.slice(start, start + step));
    ws.send(JSON.stringify({ is_speaking: false, is_end: true }));
    setStatus(`Recognising ${file.name}...`);
  } catch (error) {
    setBusy(false); setStatus(error.message);
  }
}

$("start").addEventListener("click", startMicrophone);
$("stop").addEventListener("click", stopMicrophone);
$("upload").addEventListener("click", recogniseFile);
$("clear").addEventListener("click", () => { $("sentences").textContent = ""; state.partial = ""; showPartial(); });
