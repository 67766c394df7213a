#!/usr/bin/env python3
"""An independent WebRTC peer (aiortc) for interop tests and benchmarks.

Speaks the voice crate's signaling as JSON lines: reads SignalMessages from stdin, writes
them to stdout. It answers the offer the Rust side sends, plays --play (a WAV file) as its
microphone and records what it receives to --record (a WAV file). It ends on "bye", on
end of input, or after --timeout seconds, and then finishes the recording.
"""
import argparse
import asyncio
import json
import sys

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from aiortc.sdp import candidate_from_sdp


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(args):
    pc = RTCPeerConnection()
    player = MediaPlayer(args.play)
    recorder = MediaRecorder(args.record)
    pc.addTrack(player.audio)
    done = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        recorder.addTrack(track)

    @pc.on("connectionstatechange")
    async def on_state():
        print(f"aiortc: connection {pc.connectionState}", file=sys.stderr, flush=True)
        if pc.connectionState in ("failed", "closed"):
            done.set()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def pump():
        while True:
            line = await reader.readline()
            if not line:
                return
            msg = json.loads(line)
            kind = msg.get("type")
            if kind == "offer":
                await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
                await recorder.start()
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                # aiortc gathers before answering: the answer carries every candidate.
                send({"peer": msg["peer"], "type": "answer", "sdp": pc.localDescription.sdp})
            elif kind == "candidate":
                text = msg["candidate"]
                if text.startswith("candidate:"):
                    text = text[len("candidate:"):]
                if not text:
                    continue
                cand = candidate_from_sdp(text)
                cand.sdpMid = msg.get("sdp_mid") or None
                cand.sdpMLineIndex = msg.get("sdp_mline_index", 0)
                if cand.sdpMid is None and pc.getTransceivers():
                    cand.sdpMid = pc.getTransceivers()[0].mid
                await pc.addIceCandidate(cand)
            elif kind == "bye":
                return

    pump_task = asyncio.ensure_future(pump())
    done_task = asyncio.ensure_future(done.wait())
    await asyncio.wait([pump_task, done_task], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
    await recorder.stop()
    await pc.close()
    print("aiortc: finished", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--play", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
