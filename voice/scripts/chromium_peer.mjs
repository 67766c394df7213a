#!/usr/bin/env node
// An independent WebRTC peer (Chromium's libwebrtc, driven by playwright-core) for interop
// tests and benchmarks. Speaks the voice crate's signaling as JSON lines on stdin/stdout,
// answers the offer it gets, sends --play (a WAV file, through Chromium's fake microphone,
// with its audio processing off) and records what it receives (MediaStreamTrackProcessor,
// 48 kHz) to --record. Ends on "bye", end of input or --timeout seconds; prints Chromium's
// receive stats (getStats inbound-rtp, plus its send side and a once-a-second trace of its
// encoder target and the loss we report) as one JSON line on stderr. libwebrtc sends RED
// (red/48000/2) only to a peer whose SDP lists it before Opus, and the voice engine lists it
// after, as Chromium does: --red prefer moves it first in the offer received and in the
// answer (how a page opts in), so Chromium sends RED; --red off leaves RED out of the
// answer; without --red Chromium answers in its own order (RED accepted, not sent).
// --offer NAME makes it the offering side instead (an offer to NAME, then the answer it gets
// back): two of these talk to each other, libwebrtc on both ends.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const play = arg("play");
const record = arg("record");
const timeout = Number(arg("timeout", "60")) * 1000;
const red = arg("red", "default");
const offerTo = arg("offer");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function wav(samples, rate) {
  const buf = Buffer.alloc(44 + samples.length * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + samples.length * 2, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(samples.length * 2, 40);
  samples.forEach((s, i) => buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(s * 32767))), 44 + i * 2));
  return buf;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${play}`,
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
  ],
});
const page = await browser.newPage();
page.on("console", (m) => process.stderr.write(`chromium: ${m.text()}\n`));
await page.exposeFunction("sendSignal", (json) => send(JSON.parse(json)));
// getUserMedia needs a secure context: a page served from 127.0.0.1 is one, about:blank not.
const server = createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><audio id=a autoplay></audio>");
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
await page.goto(`http://127.0.0.1:${server.address().port}/`);
await page.evaluate(async (red) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  window.recorded = [];
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      window.sendSignal(JSON.stringify({
        peer: "rust", type: "candidate", candidate: e.candidate.candidate,
        sdp_mid: e.candidate.sdpMid, sdp_mline_index: e.candidate.sdpMLineIndex,
      }));
    }
  };
  pc.onconnectionstatechange = () => console.log(`connection ${pc.connectionState}`);
  // Once a second: what Chromium's encoder aims at towards us and the loss it hears of
  // from our receiver reports, to see whether it reacts to our feedback over the call.
  window.statSamples = [];
  setInterval(async () => {
    const s = { t: Math.round(performance.now()) };
    (await pc.getStats()).forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "audio") {
        s.targetBitrate = r.targetBitrate;
        s.bytesSent = r.bytesSent;
      } else if (r.type === "remote-inbound-rtp" && r.kind === "audio") {
        s.fractionLost = r.fractionLost;
      } else if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
        s.availableOutgoingBitrate = r.availableOutgoingBitrate;
      } else if (r.type === "inbound-rtp" && r.kind === "audio") {
        s.packetsLost = r.packetsLost;
        s.packetsReceived = r.packetsReceived;
        s.fec = r.fecPacketsReceived;
      }
    });
    window.statSamples.push(s);
  }, 1000);
  pc.ontrack = async (e) => {
    const stream = new MediaStream([e.track]);
    const el = document.getElementById("a");
    el.srcObject = stream;
    el.volume = 0;
    // A deep queue: the default (10 frames) drops audio whenever the page is busy.
    const reader = new MediaStreamTrackProcessor({ track: e.track, maxBufferSize: 3000 }).readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const n = value.numberOfFrames;
      const buf = new Float32Array(n);
      value.copyTo(buf, { planeIndex: 0, format: "f32-planar" });
      window.recorded.push(buf);
      window.recordRate = value.sampleRate;
      value.close();
    }
  };
  // The offer with RED moved before every other audio format.
  const redFirst = (sdp) => {
    const lines = sdp.split("\r\n");
    const pt = lines.map((l) => /^a=rtpmap:(\d+) red\/48000/i.exec(l)).find(Boolean)?.[1];
    if (!pt) return sdp;
    return lines.map((l) => {
      if (!l.startsWith("m=audio ")) return l;
      const f = l.split(" ");
      return [...f.slice(0, 3), pt, ...f.slice(3).filter((x) => x !== pt)].join(" ");
    }).join("\r\n");
  };
  window.handle = async (msg) => {
    if (msg.type === "offer") {
      const sdp = red === "prefer" ? redFirst(msg.sdp) : msg.sdp;
      await pc.setRemoteDescription({ type: "offer", sdp });
      if (red !== "default") {
        const codecs = RTCRtpReceiver.getCapabilities("audio").codecs;
        const isRed = (c) => c.mimeType.toLowerCase() === "audio/red";
        if (red === "prefer" && !codecs.some(isRed)) console.log("this Chromium has no audio/red");
        const others = codecs.filter((c) => !isRed(c));
        const prefs = red === "prefer" ? [...codecs.filter(isRed), ...others] : others;
        pc.getTransceivers().forEach((t) => t.setCodecPreferences(prefs));
      }
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      window.sendSignal(JSON.stringify({ peer: msg.peer, type: "answer", sdp: pc.localDescription.sdp }));
    } else if (msg.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } else if (msg.type === "candidate") {
      await pc.addIceCandidate({
        candidate: msg.candidate, sdpMid: msg.sdp_mid ?? null, sdpMLineIndex: msg.sdp_mline_index ?? 0,
      });
    }
  };
  window.offer = async (to) => {
    await pc.setLocalDescription(await pc.createOffer());
    window.sendSignal(JSON.stringify({ peer: to, type: "offer", sdp: pc.localDescription.sdp }));
  };
}, red);

// Messages are applied one at a time, in order; candidates that come before the remote
// description (the offer, or the answer to ours) wait.
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
let early = [];
let haveRemote = false;
const apply = async (msg) => {
  if (msg.type === "candidate" && !haveRemote) {
    early.push(msg);
    return;
  }
  await page.evaluate((m) => window.handle(m), msg);
  if (msg.type === "offer" || msg.type === "answer") {
    haveRemote = true;
    for (const c of early) await page.evaluate((m) => window.handle(m), c);
    early = [];
  }
};
if (offerTo) queue = queue.then(() => page.evaluate((to) => window.offer(to), offerTo));
const finished = new Promise((resolve) => {
  lines.on("line", (line) => {
    if (!line.trim()) return;
    const msg = JSON.parse(line);
    if (msg.type === "bye") return resolve();
    queue = queue.then(() => apply(msg)).catch((e) => process.stderr.write(`chromium: signaling error ${e}\n`));
  });
  lines.on("close", resolve);
});
await Promise.race([finished, new Promise((r) => setTimeout(r, timeout))]);

process.stderr.write("chromium: finishing\n");
const stats = await page.evaluate(async () => {
  const report = await window.pc.getStats();
  const pick = (s, keys) => Object.fromEntries(keys.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
  const codec = (id) => report.get(id)?.mimeType;
  const out = { samples: window.statSamples };
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      Object.assign(out, pick(s, ["packetsReceived", "packetsLost", "packetsDiscarded", "jitter",
        "jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferMinimumDelay",
        "jitterBufferEmittedCount", "concealedSamples", "silentConcealedSamples", "concealmentEvents",
        "totalSamplesReceived", "fecPacketsReceived", "fecPacketsDiscarded", "nackCount",
        "insertedSamplesForDeceleration", "removedSamplesForAcceleration", "bytesReceived"]));
      out.codecReceived = codec(s.codecId);
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.outbound = { ...pick(s, ["packetsSent", "bytesSent", "targetBitrate", "nackCount",
        "retransmittedPacketsSent"]), codec: codec(s.codecId) };
    } else if (s.type === "remote-inbound-rtp" && s.kind === "audio") {
      out.remoteInbound = pick(s, ["fractionLost", "packetsLost", "roundTripTime", "jitter"]);
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      out.pair = pick(s, ["availableOutgoingBitrate", "currentRoundTripTime", "packetsSent",
        "packetsReceived"]);
    }
  });
  return out;
});
const { chunks, rate } = await page.evaluate(() => ({
  chunks: window.recorded.map((c) => Array.from(c)),
  rate: window.recordRate || 48000,
}));
writeFileSync(record, wav(chunks.flat(), rate));
process.stderr.write(`chromium-stats ${JSON.stringify(stats)}\n`);
await browser.close();
server.close();
// stdin stays open (the caller keeps its end): leave without waiting for it.
process.exit(0);
