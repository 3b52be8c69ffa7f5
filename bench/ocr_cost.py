"""What the on-screen text channel costs: change detection and OCR on a generated lecture.

    .venv/bin/python bench/ocr_cost.py --workdir WORKDIR [--minutes 10] [--seed 0] [--compare-grab]

Makes a lecture-like video (tests/media.py ``make_lecture``: 1280x720 H.264 at ``--video-fps`` (x264's default keyframe interval, 250 frames), white
slides of a title and two lines that change every 20-60 s, a ``testsrc2`` inset of 1/9 of the
frame drifting slowly), decodes it at 1 fps at 224 x 224 as the indexer does, runs
:class:`ChangeDetector` and :func:`screen_text`, and prints one JSON line of figures: frames,
changes found vs true slide changes (a found change matches a true one within 1 s), seconds
and CPU-minutes per video hour of each stage (CPU time measured with getrusage, this process
and its ffmpeg children; also wall x threads for OCR), the share of frames a "still frames are
not embedded twice" policy would embed, and how many slides' title OCR read.

``--compare-grab`` also times the two ways of getting the OCR frames at 1280x720: one fast seek
per change time (what :mod:`groundzero.indexer.ocr` does) against one ffmpeg pass with a
``select`` filter over the whole video, for 60 times spread over the video.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

# make_lecture lives with the other synthetic test media
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (
    "archive", "photosynthesis", "enzyme", "protein", "vector", "matrix", "gradient",
    "entropy", "neuron", "kernel", "theorem", "lattice", "voltage", "plasma", "quantum",
    "spectrum", "genome", "tensor", "signal", "market", "inflation", "orbit", "crystal",
    "catalyst", "polymer", "algebra", "topology", "circuit", "isotope",
)


def cpu_sec() -> float:
    """CPU seconds (user + system) of this process and its waited-for children so far."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def lecture_slides(seconds: int, seed: int) -> list[tuple[list[str], float]]:
    """Slides of 20-60 s (whole seconds) filling ``seconds``, each with unique words."""
    rng = random.Random(seed)
    slides, t, k = [], 0, 0
    while t < seconds:
        d = min(rng.randint(20, 60), seconds - t)
        w = rng.sample(WORDS, 5)
        slides.append(([f"{k + 1} {w[0].capitalize()} {w[1]}", f"about {w[2]} and {w[3]}", f"see {w[4]}"], d))
        t, k = t + d, k + 1
    return slides


def grab_by_select(path: Path, times: list[float], fps: int) -> float:
    """Seconds for one ffmpeg pass that outputs the frames at ``times`` (a ``select`` filter)."""
    expr = "+".join(f"eq(n,{round(t * fps)})" for t in times)
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-vf",
                    f"select='{expr}',scale=1280:720", "-fps_mode", "passthrough", "-pix_fmt", "bgr24",
                    "-f", "rawvideo", "-y", "/dev/null"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated lecture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--video-fps", type=int, default=5, help="frame rate of the generated lecture")
    ap.add_argument("--threads", type=int, default=0, help="OCR threads (0: min(4, CPUs))")
    ap.add_argument("--compare-grab", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from groundzero.indexer.changes import ChangeDetector
    from groundzero.indexer.decode import DecodeConfig, iter_frames
    from groundzero.indexer.ocr import OcrConfig, grab_frame, ocr_engine, screen_text
    from groundzero.indexer.probe import probe
    from tests.media import make_lecture

    seconds, fps = int(args.minutes * 60), args.video_fps
    slides = lecture_slides(seconds, args.seed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"lecture_{seconds}s_{fps}fps_seed{args.seed}.mp4"
    if not video.is_file():
        make_lecture(video, slides, fps=fps)
    info = probe(str(video))
    hours = info.duration_sec / 3600
    true_starts = np.cumsum([0] + [d for _, d in slides[:-1]]).astype(float)

    cfg = OcrConfig(threads=args.threads)
    det = ChangeDetector(cfg.change)
    ts_all, flags_all, detect_cpu, decode_t0, decode_cpu0 = [], [], 0.0, time.perf_counter(), cpu_sec()
    for chunk in iter_frames(str(video), DecodeConfig(fps=1.0, size=224), info):
        c0 = time.process_time()
        flags_all.append(det.feed(chunk.frames, chunk.timestamps_sec))
        detect_cpu += time.process_time() - c0
        ts_all.append(chunk.timestamps_sec)
    decode_wall, decode_cpu = time.perf_counter() - decode_t0, cpu_sec() - decode_cpu0 - detect_cpu
    ts, flags = np.concatenate(ts_all), np.concatenate(flags_all)
    found = ts[flags]
    matched = sum(bool(np.any(np.abs(found - s) <= 1.0)) for s in true_starts)

    ocr_engine(cfg.resolved_threads())  # load outside the timing
    t0 = time.perf_counter()
    for t in found:  # the frame grabs alone, as screen_text makes them
        grab_frame(str(video), min(t + cfg.offset_sec, info.duration_sec), (1280, 720), info.stream_index)
    grab_wall = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), cpu_sec()
    segs = screen_text(str(video), found.tolist(), info.duration_sec, cfg, info)
    ocr_wall, ocr_cpu = time.perf_counter() - t0, cpu_sec() - c0
    titles_read = sum(any(lines[0].lower() in s.text.lower() for s in segs) for lines, _ in slides)

    row = {
        "video_sec": round(info.duration_sec, 1), "frames": len(ts), "slides": len(slides),
        "changes_found": int(flags.sum()), "true_changes_matched": int(matched),
        "extra_changes": int(flags.sum()) - int(matched),
        "segments": len(segs), "titles_read": int(titles_read),
        "decode_224_sec": round(decode_wall, 2),
        "decode_cpu_min_per_video_hour": round(decode_cpu / 60 / hours, 2),
        "detect_sec": round(detect_cpu, 3),
        "detect_cpu_min_per_video_hour": round(detect_cpu / 60 / hours, 3),
        "screen_text_sec": round(ocr_wall, 2), "of_which_grab_sec": round(grab_wall, 2),
        "ocr_threads": cfg.resolved_threads(),
        "ocr_only_sec_per_change": round((ocr_wall - grab_wall) / max(1, int(flags.sum())), 3),
        "ocr_cpu_min_per_video_hour": round(ocr_cpu / 60 / hours, 2),
        "ocr_wall_x_threads_min_per_video_hour": round(ocr_wall * cfg.resolved_threads() / 60 / hours, 2),
        "embed_share": round(float(flags.mean()), 4),
    }
    if args.compare_grab:
        times = list(np.linspace(1, info.duration_sec - 2, 60))
        t0 = time.perf_counter()
        for t in times:
            grab_frame(str(video), t, (1280, 720), info.stream_index)
        seek = time.perf_counter() - t0
        select = grab_by_select(video, times, fps)
        row |= {"grab60_seek_sec": round(seek, 2), "grab60_select_pass_sec": round(select, 2)}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
