// Blob's browser console: sign in (local mode), pick or add a child, hold the button to talk.
// The microphone is captured at 16 kHz, cut into 20 ms frames and sent as v4 binary frames on the
// voice socket, exactly as the phone app does (docs/ws-messages.md).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("blob.token"),
  sessionId: null,
  lastSeq: null,
  ws: null,
  frameSeq: 0,
  thread: crypto.getRandomValues(new Uint8Array(16)),
  audio: null,
  holding: false,
  paused: false,
  reply: null,
};

function showError(message) {
  $("error").textContent = message || "";
}

function log(line) {
  const pre = $("log");
  pre.textContent = (line + "\n" + pre.textContent).slice(0, 20000);
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const envelope = await response.json();
  if (!envelope.success) {
    const error = new Error(envelope.error.code + ": " + envelope.error.message);
    error.code = envelope.error.code;
    throw error;
  }
  return envelope.data;
}

// --- sign-in and children ---------------------------------------------------------------------

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError();
  try {
    const data = await api("POST", "/api/v1/auth/local-sign-in", { email: $("email").value });
    state.token = data.token;
    localStorage.setItem("blob.token", data.token);
    await loadChildren();
  } catch (error) {
    showError(error.message);
  }
});

async function loadChildren(select) {
  const children = await api("GET", "/api/v1/children");
  const list = $("children");
  list.replaceChildren(...children.map((child) => {
    const option = document.createElement("option");
    option.value = child.child_id;
    option.textContent = child.name + " (" + child.permission + ")";
    return option;
  }));
  if (select) list.value = select;
  $("who").textContent = "Signed in. " + children.length + " child(ren).";
  $("child").hidden = false;
  $("start").disabled = children.length === 0;
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError();
  try {
    const child = await api("POST", "/api/v1/children", {
      name: $("child-name").value.trim(),
      grade_level: Number($("child-grade").value),
    });
    $("child-name").value = "";
    await loadChildren(child.child_id);
  } catch (error) {
    showError(error.message);
  }
});

$("start").addEventListener("click", async () => {
  showError();
  try {
    const session = await api("POST", "/api/v1/sessions", { child_id: $("children").value });
    state.sessionId = session.session_id;
    const saved = localStorage.getItem("blob.lastSeq." + session.session_id);
    state.lastSeq = saved === null ? null : Number(saved);
    $("session-id").textContent = session.session_id;
    $("conversation-id").textContent = session.active_conversation_id;
    $("talk").hidden = false;
    connect();
  } catch (error) {
    showError(error.message);
  }
});

// --- the voice socket -------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  let url = scheme + location.host + "/ws/voice?token=" + encodeURIComponent(state.token) +
    "&session_id=" + encodeURIComponent(state.sessionId);
  if (state.lastSeq !== null) url += "&last_seq=" + state.lastSeq;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  $("socket-state").textContent = "connecting";
  ws.onopen = () => { $("socket-state").textContent = "open"; };
  ws.onclose = (event) => {
    if (state.ws === ws) {
      $("socket-state").textContent = "closed (" + event.code + ")";
      state.ws = null;
    }
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") handle(JSON.parse(event.data));
  };
}

function send(action, payload) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "request", action, payload: payload || {}, meta: { request_id: crypto.randomUUID() } }));
  }
}

function line(className, text) {
  const item = document.createElement("li");
  item.className = className;
  item.textContent = text;
  $("transcript").append(item);
  return item;
}

function note(text) {
  line("note", text);
}

// The list item of the reply being received (made by its first sentence).
function replyLine() {
  if (!state.reply) state.reply = line("blob", "");
  return state.reply;
}

function handle(message) {
  const seq = message.meta && message.meta.seq;
  if (typeof seq === "number") {
    if (state.lastSeq !== null && seq <= state.lastSeq) return; // replayed, already shown
    state.lastSeq = seq;
    localStorage.setItem("blob.lastSeq." + state.sessionId, String(seq));
  }
  const payload = message.payload || {};
  if (message.action !== "audio_ack") log(message.type + " " + message.action + " " + JSON.stringify(payload));
  switch (message.action) {
    case "session.created":
      note("New conversation.");
      setPaused(payload.paused);
      break;
    case "session.resumed":
      if (payload.reason === "unpaused") {
        setPaused(false);
      } else {
        note("Conversation resumed: " + payload.resumed_turns_count + " exchanges so far, " + payload.replayed + " messages replayed.");
        setPaused(payload.paused);
      }
      break;
    case "session.paused":
      setPaused(true);
      break;
    case "audio_ack":
      $("acks").textContent = String(Number($("acks").textContent) + 1);
      break;
    case "conversation.state":
      $("state").textContent = payload.state;
      break;
    case "stt_result":
      line("child", payload.transcript);
      break;
    case "stt_rejected":
      note("Not heard clearly (" + payload.reason + ").");
      break;
    case "ai_response.chunk": {
      const reply = replyLine();
      reply.textContent = (reply.textContent + " " + payload.text).trim();
      break;
    }
    case "ai_response": {
      const reply = replyLine();
      reply.textContent = payload.text;
      reply.dataset.done = "true";
      state.reply = null;
      speak(payload.text, payload.tts_hint || {});
      break;
    }
    case "ai_response.cancelled":
      note("Blob stopped: the child spoke.");
      state.reply = null;
      speechSynthesis.cancel();
      break;
    case "ping":
      send("pong");
      break;
    case "error":
      note("Error " + payload.code + ": " + payload.message);
      break;
    default:
      break;
  }
}

function speak(text, hint) {
  if (!$("speak").checked || !("speechSynthesis" in window)) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = hint.language || "en";
  utterance.rate = hint.speed || 1;
  const voices = speechSynthesis.getVoices();
  utterance.voice = voices.find((v) => v.name === hint.voice) ||
    voices.find((v) => v.lang === utterance.lang) || null;
  speechSynthesis.speak(utterance);
}

function setPaused(paused) {
  state.paused = Boolean(paused);
  $("pause").textContent = state.paused ? "Resume" : "Pause";
}

$("pause").addEventListener("click", () => send(state.paused ? "resume" : "pause"));

$("reconnect").addEventListener("click", () => {
  if (state.ws) {
    const old = state.ws;
    state.ws = null;
    old.close(1000);
  }
  note("Reconnecting…");
  connect();
});

// --- the microphone ---------------------------------------------------------------------------

function frame(samples) {
  const bytes = new ArrayBuffer(22 + samples.length * 2);
  const view = new DataView(bytes);
  view.setUint8(0, 0xb1);
  view.setUint8(1, 0x04);
  view.setUint32(2, state.frameSeq, true);
  state.frameSeq = (state.frameSeq + 1) >>> 0;
  new Uint8Array(bytes, 6, 16).set(state.thread);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(22 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return bytes;
}

function sendSamples(samples) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(frame(samples));
    $("frames").textContent = String(Number($("frames").textContent) + 1);
    let peak = Number($("peak").textContent);
    for (const s of samples) peak = Math.max(peak, Math.round(Math.abs(s) * 32767));
    $("peak").textContent = String(peak);
  }
}

async function openMicrophone() {
  if (state.audio) return state.audio;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext({ sampleRate: 16000 });
  await context.audioWorklet.addModule("/console/capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "capture");
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(context.destination);
  capture.port.onmessage = (event) => {
    if (state.holding) sendSamples(event.data);
  };
  state.audio = { stream, context };
  return state.audio;
}

async function press(event) {
  event.preventDefault();
  showError();
  try {
    const audio = await openMicrophone();
    await audio.context.resume();
    state.holding = true;
    $("hold").classList.add("active");
    $("hold").textContent = "Listening… release when done";
  } catch (error) {
    showError("Microphone: " + error.message);
  }
}

function release(event) {
  event.preventDefault();
  if (!state.holding) return;
  state.holding = false;
  $("hold").classList.remove("active");
  $("hold").textContent = "Hold to talk";
  // Letting go is the end of the turn: the recogniser ends it now rather than at the silence
  // that would end it (every frame already sent comes first).
  send("turn.end");
}

$("hold").addEventListener("pointerdown", press);
$("hold").addEventListener("pointerup", release);
$("hold").addEventListener("pointerleave", release);

// A token from an earlier visit skips the sign-in.
if (state.token) {
  loadChildren().catch(() => {
    state.token = null;
    localStorage.removeItem("blob.token");
  });
}
