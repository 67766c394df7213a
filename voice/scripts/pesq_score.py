#!/usr/bin/env python3
"""Prints the ITU-T P.862.2 wide-band PESQ (MOS-LQO) of a degraded WAV against a reference.

Both files must be 16 kHz mono (the benchmark writes them so). Usage:
    pesq_score.py reference.wav degraded.wav
"""
import sys
import wave

import numpy as np
from pesq import pesq


def load(path):
    with wave.open(path) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1:
            sys.exit(f"{path}: need 16 kHz mono, got {w.getframerate()} Hz x{w.getnchannels()}")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


def main():
    ref, deg = load(sys.argv[1]), load(sys.argv[2])
    n = min(len(ref), len(deg))
    print(f"{pesq(16000, ref[:n], deg[:n], 'wb'):.3f}")


if __name__ == "__main__":
    main()
