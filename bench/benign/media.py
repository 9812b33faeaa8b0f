"""Images and video: ImageMagick ``mogrify -resize`` over the JPEGs (in place), Pillow re-encoding
every JPEG/PNG in place and writing thumbnails, ffmpeg transcoding generated videos to H.264 in
place of the originals (same name through a temp file, and to .mkv with the original removed)."""

from __future__ import annotations

from pathlib import Path

from bench.benign.common import Assets, Workload, asset, sh


@asset("clips")
def _clips(assets: Assets, d: Path) -> None:
    """Three 6 s camera-like clips (MPEG-4 Part 2 + AAC, 640x360) made with ffmpeg -f lavfi."""
    for i, src in enumerate(["testsrc2", "smptebars", "testsrc"]):
        sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{src}=size=640x360:rate=25:duration=6",
            "-f", "lavfi", "-i", f"sine=frequency={300 + 100 * i}:duration=6", "-c:v", "mpeg4", "-q:v", "4", "-c:a", "aac",
            "-shortest", str(d / f"VID_2025010{i + 1}_1200{i}.mp4")], timeout=300)  # fmt: skip


def _pre_clips(tree: Path, assets: Assets, scratch: Path) -> None:
    sh(["cp", "-a", str(assets.get("clips")), str(tree / "Videos")])


_PILLOW = r'''
"$PY" - <<'PYEOF'
import os
from PIL import Image
os.makedirs("Photos/.thumbnails", exist_ok=True)
for root in ("Photos", "Shared"):
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            ext = name.lower().rsplit(".", 1)[-1]
            if ext not in ("jpg", "jpeg", "png"):
                continue
            with Image.open(p) as im:
                im.load()
            if ext == "png":
                im.save(p, optimize=True)
            else:
                im.convert("RGB").save(p, quality=82, optimize=True, progressive=True)
            th = im.copy()
            th.thumbnail((160, 160))
            th.convert("RGB").save(os.path.join("Photos/.thumbnails", name.rsplit(".", 1)[0] + ".jpg"), quality=80)
PYEOF
'''

WORKLOADS = [
    Workload(
        "mogrify-resize", "media",
        title="ImageMagick mogrify -resize 50% over every JPEG (in place)",
        script="""
find Photos Shared -name '*.jpg' -print0 | xargs -0 mogrify -resize 50% -quality 85
""",
        needs=("mogrify", "xargs"), apt=("imagemagick",), quick=True, tested=True,
    ),
    Workload(
        "pillow-reencode", "media",
        title="Pillow: re-encode every JPEG/PNG in place, write thumbnails",
        script=_PILLOW,
        needs=(), apt=(),
        note="Pillow from the nocry venv (PyPI)",
    ),
    Workload(
        "ffmpeg-transcode", "media",
        title="ffmpeg: 3 MPEG-4 clips to H.264, two in place (temp file renamed over), one to .mkv with the original removed",
        script="""
cd Videos
for f in VID_20250101_12000.mp4 VID_20250102_12001.mp4; do
  ffmpeg -nostdin -loglevel error -y -i "$f" -c:v libx264 -preset veryfast -crf 26 -c:a copy "${f%.mp4}.part.mp4"
  mv "${f%.mp4}.part.mp4" "$f"
done
ffmpeg -nostdin -loglevel error -y -i VID_20250103_12002.mp4 -c:v libx264 -preset veryfast -crf 26 -c:a copy VID_20250103_12002.mkv
rm VID_20250103_12002.mp4
""",
        needs=("ffmpeg",), apt=("ffmpeg",), assets=("clips",), pre=_pre_clips, timeout=900,
    ),
]  # fmt: skip
