# SPDX-License-Identifier: GPL-3.0-or-later
"""A small program that keeps one Piper voice loaded and speaks many texts: run by the piper venv.

NOT a module of the app. It imports piper (piper-tts, GPL-3.0-or-later), so it runs only
as a separate process, started by worker/providers/speech/piper.py with the python of the
piper virtualenv that scripts/ensure-tts made:

    <piper-venv>/bin/python -I piper_driver.py --model VOICE.onnx [--threads N]

and nothing of ours imports it; it imports nothing of ours. It talks over pipes:

- once loaded it writes a line {"ready": true, "sample_rate", "num_speakers", "load_seconds"}
  (or {"ready": false, "error"} and exits 1);
- then for each JSON line on stdin {"text": str, "speaker"?: int, "length_scale"?: float,
  "sentence_silence"?: float} it writes one header line, then the audio:
  {"ok": true, "bytes": N, "sample_rate": R, "seconds": synthesis time}\\n + N bytes of
  16-bit little-endian mono PCM, or {"ok": false, "error": "..."}\\n;
- it exits when stdin ends (so it never outlives the worker that started it).
Piper's log and anything else printed go to stderr; stdout carries only the protocol.
"""
import argparse
import json
import sys
import time


def main() -> int:
    """Load the voice, say ready, then answer one header and its PCM per JSON line on stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the voice's .onnx file (its .onnx.json beside it)")
    parser.add_argument("--config", help="the voice's .onnx.json (default: MODEL.json)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for one synthesis")
    args = parser.parse_args()

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must never corrupt the protocol

    def send(header: dict, payload: bytes = b"") -> None:
        out.write(json.dumps(header).encode() + b"\n")
        if payload:
            out.write(payload)
        out.flush()

    started = time.monotonic()
    try:
        import numpy as np
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        with open(args.config or args.model + ".json", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, args.threads)
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(args.model, sess_options=options,
                                               providers=["CPUExecutionProvider"])
        voice = PiperVoice(session=session, config=config)
        # Warm up: the first run of a session and espeak's first phonemisation are slow.
        for _ in voice.synthesize("Hello."):
            pass
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which decides
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"ready": True, "sample_rate": config.sample_rate, "num_speakers": config.num_speakers,
          "load_seconds": round(time.monotonic() - started, 3)})

    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        t0 = time.monotonic()
        try:
            request = json.loads(line)
            text = request["text"]
            if not isinstance(text, str):
                raise ValueError("text must be a string")
            syn = SynthesisConfig(speaker_id=request.get("speaker"),
                                  length_scale=request.get("length_scale"))
            gap = np.zeros(int(config.sample_rate * float(request.get("sentence_silence", 0.15))),
                           dtype=np.int16).tobytes()
            parts = []
            for i, chunk in enumerate(voice.synthesize(text, syn)):
                if i:
                    parts.append(gap)
                parts.append(chunk.audio_int16_bytes)  # int16, native order: little-endian here
            pcm = b"".join(parts)
            if sys.byteorder != "little":
                pcm = np.frombuffer(pcm, dtype=np.int16).byteswap().tobytes()
        except Exception as exc:  # noqa: BLE001 -- one bad text must not end the process
            send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        send({"ok": True, "bytes": len(pcm), "sample_rate": config.sample_rate,
              "seconds": round(time.monotonic() - t0, 4)}, pcm)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
