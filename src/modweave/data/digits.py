"""MCL-Digits: six modalities of scikit-learn's real handwritten digits, written in real file formats.

Every modality asks the shared concept (which digit, answered with a number word) and one attribute of
its own, each as a separate single-word question. The image stage also asks image attributes whose
answers are every attribute word later modalities use (the frozen LLM must already produce them).
Deterministic per seed: each sample draws from its own generator seeded by (seed, modality, index),
so results do not depend on how work is split over processes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..cpus import available_cores
from .formats import MEDIA_MARKER, Record, write_jsonl
from .templates import ATTRIBUTE_QUESTIONS, DIGIT_QUESTIONS, TEXT_QUESTIONS, render_prompt

log = logging.getLogger(__name__)

DIGIT_MODALITIES = ("text", "image", "video", "audio", "depth", "point_cloud")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIRECTIONS = ("left", "right", "up", "down")
ROTATIONS = ("clockwise", "counterclockwise", "upright")
IMAGE_ATTRIBUTES = {"position": DIRECTIONS, "brightness": ("high", "low"), "size": ("near", "far"), "rotation": ROTATIONS[:2]}
POOL_MIN_SAMPLES = 200  # below this a process pool's start-up costs more than the rendering
MEDIA_SUFFIX = {"image": ".png", "video": ".mp4", "audio": ".wav", "depth": ".png", "point_cloud": ".ply"}


@dataclasses.dataclass
class DigitsConfig:
    """Difficulty knobs (the demo tunes these). Sizes in pixels, depths in metres, angles in degrees."""

    train_fraction: float = 0.8  # first 80% of indices train, the rest test (same split for all)
    # image: the base stage; attribute variants teach every later attribute word
    image_size: int = 32
    digit_px: int = 16
    shift_px: int = 6
    brightness: tuple[float, float] = (1.0, 0.6)  # (high, low) stroke intensity
    size_px: tuple[int, int] = (22, 11)  # (near, far) digit size
    image_rotation_deg: float = 30.0
    image_noise: float = 0.03
    # video: the digit travels across the canvas
    video_size: int = 32
    video_frames: int = 5
    video_fps: int = 5
    video_directions: int = 4  # 2 -> left / right only
    video_travel_px: int = 12
    video_noise: float = 0.02
    video_format: str = "mp4"  # or "frames" (a folder of PNGs)
    # audio: rows of the 8x8 digit = partials, columns = time steps
    audio_seconds: float = 1.0
    sample_rate: int = 16000
    pitch_low_hz: float = 300.0
    pitch_ratio: float = 1.12  # high / low base frequency (~2 semitones: subtle on purpose)
    pitch_jitter: float = 0.02  # relative random shift of the base frequency
    audio_noise: float = 0.02
    # depth: the digit as a relief on a card in front of a wall, seen by a tilted camera
    depth_size: int = 32
    near_m: float = 1.0
    depth_gap_m: float = 0.25  # far card = near + gap
    depth_jitter_m: float = 0.06
    background_m: float = 2.0
    relief_m: float = 0.2  # strokes stand this far out of the card: ~10% of the range after max-normalising
    tilt_m: float = 0.15
    depth_noise_m: float = 0.003
    depth_with_rgb: bool = False  # also write the RGB, media becomes {"depth", "rgb"}
    # point cloud: extruded digit surface, rotated in-plane by a class angle plus a random 3D tilt
    pc_points: int = 1024
    pc_rotations: int = 2  # 3 adds "upright"
    pc_rotation_deg: float = 30.0
    pc_tilt_deg: float = 10.0
    pc_thickness: float = 3.0  # extrusion depth in (16 px) digit pixels
    pc_noise: float = 0.01


def attribute_words(modality: str, cfg: DigitsConfig) -> tuple[str, ...]:
    """Answer words of a modality's attribute question (image: all its families)."""
    if modality == "video":
        return DIRECTIONS[: cfg.video_directions]
    if modality == "audio":
        return ("high", "low")
    if modality == "depth":
        return ("near", "far")
    if modality == "point_cloud":
        return ROTATIONS[: cfg.pc_rotations]
    if modality == "image":
        return tuple(dict.fromkeys(w for ws in IMAGE_ATTRIBUTES.values() for w in ws))
    return ()


# ---- rendering (pure numpy / Pillow; each returns the file it wrote, relative to the root) ----------
def _patch(d8: np.ndarray, px: int, angle: float = 0.0) -> np.ndarray:
    """8x8 digit in [0,1] -> ``[px, px]`` float (bilinear), optionally rotated about its centre."""
    from PIL import Image

    img = Image.fromarray(d8.astype(np.float32), mode="F").resize((px, px), Image.Resampling.BILINEAR)
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0, 1)


def _paste(canvas: np.ndarray, patch: np.ndarray, cy: float, cx: float) -> None:
    """Add ``patch`` centred at (cy, cx), clipped at the canvas border."""
    h, w = patch.shape
    y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, canvas.shape[0]), min(x0 + w, canvas.shape[1])
    if ye > ys and xe > xs:
        canvas[ys:ye, xs:xe] = np.maximum(canvas[ys:ye, xs:xe], patch[ys - y0 : ye - y0, xs - x0 : xe - x0])


def _to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


_OFFSETS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def render_image(d8, rng, cfg: DigitsConfig, root: Path, rel: str) -> tuple[str, str, str]:
    """Write a grayscale PNG; returns (media, attribute family, attribute word)."""
    from PIL import Image

    family = list(IMAGE_ATTRIBUTES)[rng.integers(len(IMAGE_ATTRIBUTES))]
    word = IMAGE_ATTRIBUTES[family][rng.integers(len(IMAGE_ATTRIBUTES[family]))]
    px, angle = cfg.digit_px, rng.uniform(-3, 3)
    gain = float(np.mean(cfg.brightness)) + rng.uniform(-0.05, 0.05)
    dy, dx = rng.integers(-1, 2, size=2)
    if family == "position":
        oy, ox = _OFFSETS[word]
        dy, dx = dy + oy * cfg.shift_px, dx + ox * cfg.shift_px
    elif family == "brightness":
        gain = cfg.brightness[0 if word == "high" else 1]
    elif family == "size":
        px = cfg.size_px[0 if word == "near" else 1]
    else:  # rotation; PIL angles are counterclockwise
        angle += cfg.image_rotation_deg * (-1 if word == "clockwise" else 1)
    canvas = np.zeros((cfg.image_size, cfg.image_size), np.float32)
    c = cfg.image_size / 2
    _paste(canvas, gain * _patch(d8, px, angle), c + dy, c + dx)
    canvas += rng.normal(0, cfg.image_noise, canvas.shape)
    Image.fromarray(_to_u8(canvas), mode="L").save(root / rel)
    return rel, family, word


def render_video(d8, rng, cfg: DigitsConfig, root: Path, rel: str) -> tuple[str, str]:
    """Write the digit crossing the canvas as MP4 (H.264, lossless) or a PNG frame folder."""
    word = DIRECTIONS[rng.integers(cfg.video_directions)]
    oy, ox = _OFFSETS[word]
    patch, c = _patch(d8, cfg.digit_px), cfg.video_size / 2
    side = rng.uniform(-2, 2)  # offset across the motion, so position alone does not tell the class
    frames = []
    for t in range(cfg.video_frames):
        along = cfg.video_travel_px * (t / max(cfg.video_frames - 1, 1) - 0.5)
        canvas = np.zeros((cfg.video_size, cfg.video_size), np.float32)
        _paste(canvas, patch, c + oy * along + ox * side, c + ox * along + oy * side)
        frames.append(_to_u8(canvas + rng.normal(0, cfg.video_noise, canvas.shape)))
    if cfg.video_format == "frames":
        from PIL import Image

        rel = rel.rsplit(".", 1)[0]
        (root / rel).mkdir()
        for t, f in enumerate(frames):
            Image.fromarray(f, mode="L").save(root / rel / f"{t:03d}.png")
        return rel, word
    _write_mp4(root / rel, frames, cfg.video_fps)
    return rel, word


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"  # gray content lives in luma, so 4:2:0 chroma loses nothing
        stream.options = {"qp": "0", "preset": "ultrafast"}  # lossless; one thread keeps bytes deterministic
        stream.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.repeat(f[..., None], 3, -1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def render_audio(d8, rng, cfg: DigitsConfig, root: Path, rel: str) -> tuple[str, str]:
    """Sonify: row r of the digit drives a partial (top row highest), columns are time steps; 16-bit WAV."""
    import soundfile as sf

    word = ("high", "low")[rng.integers(2)]
    base = cfg.pitch_low_hz * (cfg.pitch_ratio if word == "high" else 1.0) * (1 + rng.uniform(-1, 1) * cfg.pitch_jitter)
    n = int(cfg.audio_seconds * cfg.sample_rate)
    t = np.arange(n) / cfg.sample_rate
    freqs = base * 2.0 ** (0.5 * np.arange(8)[::-1])  # half-octave ladder over 3.5 octaves
    # amplitude of each partial over time: the digit's columns, linearly interpolated (no clicks)
    cols = np.linspace(0, 7, n)
    env = np.stack([np.interp(cols, np.arange(8), d8[r]) for r in range(8)])
    phases = rng.uniform(0, 2 * np.pi, size=(8, 1))
    wave = (env * np.sin(2 * np.pi * freqs[:, None] * t + phases)).sum(0)
    wave = wave / (np.abs(wave).max() + 1e-6) * 0.8 + rng.normal(0, cfg.audio_noise, n)
    buf = io.BytesIO()  # soundfile's close() syncs the file to disk: ~10 ms a file; write the bytes ourselves
    sf.write(buf, np.clip(wave, -1, 1).astype(np.float32), cfg.sample_rate, subtype="PCM_16", format="WAV")
    (root / rel).write_bytes(buf.getvalue())
    return rel, word


def render_depth(d8, rng, cfg: DigitsConfig, root: Path, rel: str) -> tuple[Any, str]:
    """Digit relief on a card at a near / far distance before a wall; 16-bit PNG in mm, scale in metadata."""
    from PIL import Image, PngImagePlugin

    word = ("near", "far")[rng.integers(2)]
    s = cfg.depth_size
    card = cfg.near_m + (cfg.depth_gap_m if word == "far" else 0.0) + rng.uniform(-1, 1) * cfg.depth_jitter_m
    depth = np.full((s, s), cfg.background_m, np.float32)
    m = s // 8  # card covers the central 3/4 of the view
    depth[m : s - m, m : s - m] = card - cfg.relief_m * _patch(d8, s - 2 * m)
    depth += cfg.tilt_m * rng.uniform(-1, 1) * ((np.arange(s) - s / 2) / s)[:, None]  # camera tilt
    depth += rng.normal(0, cfg.depth_noise_m, depth.shape)
    info = PngImagePlugin.PngInfo()
    info.add_text("depth_scale", "0.001")  # metres per stored unit
    Image.fromarray(np.clip(depth * 1000, 0, 65535).round().astype(np.uint16)).save(root / rel, pnginfo=info)
    if not cfg.depth_with_rgb:
        return rel, word
    rgb = rel.replace(".png", "_rgb.png")
    canvas = np.zeros((s, s), np.float32)
    _paste(canvas, _patch(d8, s - 2 * m), s / 2, s / 2)
    Image.fromarray(_to_u8(canvas), mode="L").convert("RGB").save(root / rgb)
    return {"depth": rel, "rgb": rgb}, word


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def render_point_cloud(d8, rng, cfg: DigitsConfig, root: Path, rel: str) -> tuple[str, str]:
    """Sample the extruded digit's surface (faces by area), rotate, jitter, write a binary PLY."""
    word = ROTATIONS[rng.integers(cfg.pc_rotations)]
    mask = _patch(d8, 16) > 0.35
    th = cfg.pc_thickness
    r, c = np.nonzero(mask)
    x, y = c.astype(np.float64), -r - 1.0
    pad = np.pad(mask, 1)
    ex, ey, ez = np.eye(3)
    # unit cells of the surface as (origin, u, v): top and bottom faces, then walls on the outline
    parts = [(np.stack([x, y, np.full_like(x, z)], 1), ex, ey) for z in (th / 2, -th / 2)]
    for free, dx, dy, u in ((~pad[r + 1, c], 0, 0, ey), (~pad[r + 1, c + 2], 1, 0, ey), (~pad[r, c + 1], 0, 1, ex), (~pad[r + 2, c + 1], 0, 0, ex)):
        parts.append((np.stack([x[free] + dx, y[free] + dy, np.full(free.sum(), -th / 2)], 1), u, ez * th))
    o = np.concatenate([p[0] for p in parts])
    u = np.concatenate([np.broadcast_to(p[1], p[0].shape) for p in parts])
    v = np.concatenate([np.broadcast_to(p[2], p[0].shape) for p in parts])
    area = np.linalg.norm(np.cross(u, v), axis=1)
    pick = rng.choice(len(o), size=cfg.pc_points, p=area / area.sum())
    ab = rng.random((cfg.pc_points, 2))
    pts = o[pick] + ab[:, :1] * u[pick] + ab[:, 1:] * v[pick]
    pts = (pts - pts.mean(0)) / 8.0
    angle = {"clockwise": -1, "counterclockwise": 1, "upright": 0}[word] * cfg.pc_rotation_deg + rng.uniform(-5, 5)
    rot = _rot(0, rng.uniform(-1, 1) * cfg.pc_tilt_deg) @ _rot(1, rng.uniform(-1, 1) * cfg.pc_tilt_deg) @ _rot(2, angle)
    pts = pts @ rot.T + rng.normal(0, cfg.pc_noise, pts.shape)
    # binary little-endian PLY written here rather than via modalities.ply: importing the modalities
    # package pulls in torch, seconds per worker process for a 6-line header
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    (root / rel).write_bytes(header.encode("ascii") + pts.astype("<f4").tobytes())
    return rel, word


RENDERERS = {"image": render_image, "video": render_video, "audio": render_audio, "depth": render_depth, "point_cloud": render_point_cloud}
ATTRIBUTE_FAMILY = {"video": "direction", "audio": "pitch", "depth": "distance", "point_cloud": "rotation"}


# ---- records ------------------------------------------------------------------------------------
def _record(modality: str, idx: int, kind: str, question: str, answer: str, candidates: Sequence[str], media: Any) -> dict:
    return Record(f"{modality}-{idx:04d}-{kind}", modality, media, "qa", render_prompt(modality, "qa", question), answer, list(candidates)).to_dict()


def sample_records(modality: str, idx: int, d8: np.ndarray, label: int, seed: int, cfg: DigitsConfig, root: Path) -> list[dict]:
    """Render sample ``idx`` of ``modality`` under ``root`` and return its two records (digit, attribute)."""
    rng = np.random.default_rng([seed, DIGIT_MODALITIES.index(modality), idx])
    word = DIGIT_WORDS[label]
    if modality == "text":
        step = ("after", "before")[rng.integers(2)] if 0 < label < 9 else ("after" if label == 0 else "before")
        other = DIGIT_WORDS[label + (1 if step == "after" else -1)]
        return [
            _record("text", idx, "spell", TEXT_QUESTIONS["spell"].format(label), word, DIGIT_WORDS, None),
            _record("text", idx, step, TEXT_QUESTIONS[step].format(word), other, DIGIT_WORDS, None),
        ]
    rel = f"{modality}/{idx:04d}{MEDIA_SUFFIX[modality]}"
    out = RENDERERS[modality](d8, rng, cfg, root, rel)
    if modality == "image":
        media, family, attr = out
        cands = IMAGE_ATTRIBUTES[family]
    else:
        (media, attr), family = out, ATTRIBUTE_FAMILY[modality]
        cands = attribute_words(modality, cfg)
    return [
        _record(modality, idx, "digit", DIGIT_QUESTIONS[modality], word, DIGIT_WORDS, media),
        _record(modality, idx, family, ATTRIBUTE_QUESTIONS[family], attr, cands, media),
    ]


def _render_chunk(job: tuple) -> list[dict]:
    modality, indices, images, labels, seed, cfg, root = job
    out: list[dict] = []
    for idx, d8, y in zip(indices, images, labels):
        out.extend(sample_records(modality, int(idx), d8, int(y), seed, cfg, Path(root)))
    return out


def split_indices(n_total: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous index split (sklearn's digits are grouped by writer, so test handwriting is unseen)."""
    cut = int(round(n_total * train_fraction))
    return np.arange(cut), np.arange(cut, n_total)


def digits_texts(config: DigitsConfig | None = None, modalities: Sequence[str] = DIGIT_MODALITIES) -> list[str]:
    """Every prompt, answer and candidate text the benchmark can produce (for a word-level vocabulary)."""
    cfg = config or DigitsConfig()
    texts = set(DIGIT_WORDS)
    for m in modalities:
        if m == "text":
            for y, w in enumerate(DIGIT_WORDS):
                texts |= {render_prompt("text", "qa", TEXT_QUESTIONS["spell"].format(y))}
                texts |= {render_prompt("text", "qa", TEXT_QUESTIONS[k].format(w)) for k in ("after", "before")}
            continue
        texts.add(render_prompt(m, "qa", DIGIT_QUESTIONS[m]))
        families = IMAGE_ATTRIBUTES if m == "image" else {ATTRIBUTE_FAMILY[m]: attribute_words(m, cfg)}
        for fam, words in families.items():
            texts.add(render_prompt(m, "qa", ATTRIBUTE_QUESTIONS[fam]))
            texts |= set(words)
    from .digit_pairs import PAIR_ANSWERS, PAIR_QUESTIONS

    for kind, question in PAIR_QUESTIONS.items():  # the X-modal pair questions (markers split out)
        texts |= {MEDIA_MARKER.sub(" ", render_prompt("pair", "qa", question)), *PAIR_ANSWERS.get(kind, ())}
    return sorted(texts)


def vocabulary(texts: Iterable[str]) -> list[str]:
    """Word-level vocabulary: lower-cased words and punctuation marks (as the word tokenizer splits)."""
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})


def write_digits(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    modalities: Sequence[str] = DIGIT_MODALITIES,
    config: DigitsConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    pairs: int = 60,
    train_pairs: int | None = None,
) -> dict:
    """Write MCL-Digits to ``out_dir``: ``<modality>/<media>``, ``<modality>_{train,test}.jsonl``, ``meta.json``,
    and the X-modal pair questions ``xmodal_{train,test}.jsonl`` (see data/digit_pairs.py): ``pairs`` test
    questions per pair of media modalities (0: none), ``train_pairs`` image + image training questions
    (default: two per image training digit).

    Everything is written into a temporary sibling folder and renamed at the end, so a failure leaves
    nothing half-written. ``n_train`` / ``n_test`` take the first indices of each split. Returns the meta dict.
    """
    from sklearn.datasets import load_digits
    from tqdm.auto import tqdm

    cfg = config or DigitsConfig()
    out = Path(out_dir)
    bad = [m for m in modalities if m not in DIGIT_MODALITIES]
    if bad:
        raise ValueError(f"unknown modality {bad[0]!r} for MCL-Digits (known: {', '.join(DIGIT_MODALITIES)})")
    if pairs < 0 or (train_pairs is not None and train_pairs < 0):
        raise ValueError(f"pairs={pairs}, train_pairs={train_pairs}: must be >= 0")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: already exists and is not empty (pass overwrite=True / --overwrite)")
    digits = load_digits()
    images, labels = digits.images.astype(np.float32) / 16.0, digits.target.astype(int)
    splits = dict(zip(("train", "test"), split_indices(len(labels), cfg.train_fraction)))
    for name, want in (("train", n_train), ("test", n_test)):
        if want is not None:
            if not 0 < want <= len(splits[name]):
                raise ValueError(f"n_{name}={want} outside 1..{len(splits[name])}")
            splits[name] = splits[name][:want]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        jobs = []
        for m in modalities:
            (tmp / m).mkdir(parents=True)
            for split, idx in splits.items():
                for chunk in np.array_split(idx, max(1, len(idx) // 64)):
                    jobs.append((m, chunk, images[chunk], labels[chunk], seed, cfg, str(tmp)))
        results = _run_jobs(jobs, workers, progress and len(jobs) > 4, tqdm)
        meta = _write_annotations(tmp, jobs, results, splits, modalities, seed, cfg, (pairs, train_pairs))
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote MCL-Digits to %s (%s)", out, meta["counts"])
    return meta


def _run_jobs(jobs: list[tuple], workers: int | None, progress: bool, tqdm) -> list[list[dict]]:
    """Render every chunk, in a process pool when it pays off; results keep the job order."""
    workers = workers if workers is not None else min(available_cores(), 8)
    n_media = sum(len(j[1]) for j in jobs if j[0] != "text")
    bar = tqdm(total=len(jobs), desc="MCL-Digits", unit="chunk", disable=not progress)
    try:
        if workers <= 1 or n_media < POOL_MIN_SAMPLES:
            results = []
            for j in jobs:
                results.append(_render_chunk(j))
                bar.update()
            return results
        import multiprocessing as mp

        # fork where there is one: instant start, and it works from scripts without a __main__ guard
        # (forkserver / spawn re-import the caller's main module). Children use numpy/PIL/av only,
        # never torch, so an inherited torch thread pool is harmless.
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = []
            for r in pool.map(_render_chunk, jobs):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


def _write_annotations(root: Path, jobs, results, splits, modalities, seed: int, cfg: DigitsConfig,
                       pairs: tuple[int, int | None] = (0, None)) -> dict:
    from .digit_pairs import XMODAL_FILE, write_pair_records

    by_file: dict[tuple[str, str], list[dict]] = {(m, s): [] for m in modalities for s in splits}
    split_of = {int(i): s for s, idx in splits.items() for i in idx}
    for job, recs in zip(jobs, results):
        by_file[(job[0], split_of[int(job[1][0])])].extend(recs)
    xmodal = write_pair_records(by_file, modalities, seed, *pairs)
    texts: set[str] = set()
    files = [(root / f"{m}_{s}.jsonl", recs) for (m, s), recs in by_file.items()]
    files += [(root / XMODAL_FILE.format(split=s), recs) for s, recs in xmodal.items() if recs]
    for path, recs in files:
        write_jsonl(path, recs)
        for r in recs:  # `<media:K>` markers never reach a tokenizer (the collator splits them out)
            texts |= {MEDIA_MARKER.sub(" ", r["prompt"]), r["answer"], *r.get("candidates", [])}
    meta = {
        "benchmark": "mcl-digits",
        "seed": seed,
        "modalities": list(modalities),
        "splits": {s: len(idx) for s, idx in splits.items()},
        "counts": {m: {s: len(by_file[(m, s)]) for s in splits} for m in modalities},
        "answers": {m: sorted({r["answer"] for s in splits for r in by_file[(m, s)]}) for m in modalities},
        "xmodal": {"pairs": sorted({r["modality"] for recs in xmodal.values() for r in recs}),
                   "counts": {s: len(recs) for s, recs in xmodal.items()}},
        "vocabulary": vocabulary(texts),
        "config": dataclasses.asdict(cfg),
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta
