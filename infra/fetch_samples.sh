#!/usr/bin/env bash
# Fill OUT_DIR with real sample images for local runs and benchmarks.
#
# usage: infra/fetch_samples.sh OUT_DIR [PYTHON]
#
#   OUT_DIR/photos/       real photographs (query/corpus images)
#     mate-<Name>.jpg       photographic wallpapers of the Debian package
#                           mate-backgrounds (its nature/ folder: the other
#                           folders hold renders/digital art, and the same
#                           "Elephants" artwork in three resolutions)
#     gnome-<name>.jpg|png  .jpg/.png wallpapers of gnome-backgrounds, if that
#                           version ships any (Debian 12's 43.1 ships only
#                           .webp illustrations + .svg, so none there)
#     skimage-<name>.jpg    scikit-image's bundled real photos (always)
#   OUT_DIR/wallpapers/   the other raster wallpapers, one file per design
#                         (benchmark originals next to photos/):
#     mate-<Name>.*         mate-backgrounds' abstract/ and desktop/ folders;
#                           colour variants of one design are kept once
#                           (Ubuntu-Mate-Cold of its 4, MATE-Stripes-Dark of
#                           its 2, the 1920x1080 Elephants of its 3 sizes);
#                           transparent PNGs are flattened, as the MATE
#                           desktop draws them, over the colour gradient its
#                           background-properties XML names (saved as JPEG)
#     gnome-<name>-l.webp   gnome-backgrounds' 4096x4096 .webp wallpapers, the
#                           light variant of each design (dark variants are
#                           the same design; vnc-* is a 256x256 flat colour)
#   OUT_DIR/large/        JPEGs of >= 12 megapixels for ingest benchmarks:
#                         mate's Elephants_5640x3172.jpg as shipped, and every
#                         gnome-backgrounds 4096x4096 .webp re-encoded as
#                         JPEG (quality 90, same pixels, no upscaling)
#   OUT_DIR/distractors/  raster images (.jpg/.jpeg/.png, >= 64x64, decodable,
#                         de-duplicated by content) from the Debian package
#                         opencv-doc: sample data + doc figures; used as
#                         benchmark distractors.
#   OUT_DIR/photo-distractors/  distractors from the originals' own domain
#                         (desktop wallpapers, photographs among them), one
#                         file per design: plasma-workspace-wallpapers (the
#                         1920-wide or nearest light image of each design),
#                         ukui-wallpapers and lomiri-wallpapers(-20.04)
#                         (every raster), at most 1920 px on the long side,
#                         as JPEG. Never the same design as an original
#                         (other packages than the originals').
#
# The Debian part needs apt-get + dpkg (no root needed for `apt-get download`
# itself, root for the `apt-get update` fallback). Without them, or if the
# download fails, only scikit-image's bundled photos are written.
#
# PYTHON (default: <repo>/.venv/bin/python) must have numpy, scikit-image and
# Pillow. Idempotent: a run that completed leaves OUT_DIR/photos/.done and later
# runs only print the summary. Delete the .done file to fetch again; a .done
# written by an older version of this script (another SAMPLES_VERSION) is
# fetched again too.
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR [PYTHON]" >&2
    exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage

OUT_DIR=$1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
PYTHON=${2:-$REPO_ROOT/.venv/bin/python}

if ! "$PYTHON" -c 'import numpy, skimage, PIL' 2>/dev/null; then
    echo "error: $PYTHON cannot import numpy, skimage and PIL" >&2
    exit 1
fi

PHOTOS=$OUT_DIR/photos
WALLPAPERS=$OUT_DIR/wallpapers
LARGE=$OUT_DIR/large
DISTRACTORS=$OUT_DIR/distractors
PHOTO_DISTRACTORS=$OUT_DIR/photo-distractors
MARKER=$PHOTOS/.done
# Bump when the set of files this script writes changes: older .done markers then fetch again.
SAMPLES_VERSION=3
DEB_PACKAGES=(mate-backgrounds gnome-backgrounds opencv-doc plasma-workspace-wallpapers ukui-wallpapers
    lomiri-wallpapers lomiri-wallpapers-20.04)

# Prints counts, total size and the width x height range of both folders.
summary() {
    "$PYTHON" - "$PHOTOS" "$WALLPAPERS" "$LARGE" "$DISTRACTORS" "$PHOTO_DISTRACTORS" <<'PY'
import os, sys
from PIL import Image

for d in sys.argv[1:]:
    files = sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []
    if not files:
        print(f"{d}: 0 images")
        continue
    total = 0
    sizes = []
    by_prefix = {}
    for f in files:
        p = os.path.join(d, f)
        total += os.path.getsize(p)
        with Image.open(p) as im:
            sizes.append(im.size)
        by_prefix[f.split("-", 1)[0]] = by_prefix.get(f.split("-", 1)[0], 0) + 1
    px = [w * h for w, h in sizes]
    small = sizes[px.index(min(px))]
    large = sizes[px.index(max(px))]
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(by_prefix.items()))
    print(f"{d}: {len(files)} images ({parts}), {total / 1e6:.1f} MB; "
          f"smallest {small[0]}x{small[1]}, largest {large[0]}x{large[1]}; "
          f"width {min(w for w, _ in sizes)}..{max(w for w, _ in sizes)}, "
          f"height {min(h for _, h in sizes)}..{max(h for _, h in sizes)}")
PY
}

if [[ -f $MARKER ]] && grep -q "samples_version=$SAMPLES_VERSION\b" "$MARKER"; then
    echo "$PHOTOS already complete ($MARKER exists); nothing to do"
    summary
    exit 0
fi
if [[ -f $MARKER ]]; then
    echo "$MARKER was written by an older version of this script: fetching again"
fi

START=$SECONDS
mkdir -p "$PHOTOS" "$WALLPAPERS" "$LARGE" "$DISTRACTORS" "$PHOTO_DISTRACTORS"
# A run that did not complete may have left files: start from a clean state.
rm -f "$MARKER" "$PHOTOS"/mate-* "$PHOTOS"/gnome-* "$PHOTOS"/skimage-* "$DISTRACTORS"/opencv-* \
    "$WALLPAPERS"/mate-* "$WALLPAPERS"/gnome-* "$LARGE"/mate-* "$LARGE"/gnome-* "$PHOTO_DISTRACTORS"/*

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- (a) Debian packages ---------------------------------------------------
APT_OK=0
APT_WHY=""
if ! command -v apt-get >/dev/null 2>&1; then
    APT_WHY="apt-get not found"
elif ! command -v dpkg >/dev/null 2>&1; then
    APT_WHY="dpkg not found"
else
    mkdir -p "$TMP/debs" "$TMP/x"
    # Let apt's unprivileged _apt user write there (else apt warns and
    # downloads unsandboxed).
    if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then
        { chmod 755 "$TMP" && chown _apt "$TMP/debs"; } || true
    fi
    apt_download() { (cd "$TMP/debs" && apt-get download -q "$@") >>"$TMP/apt.log" 2>&1; }

    echo "apt-get download ${DEB_PACKAGES[*]}"
    if ! apt_download "${DEB_PACKAGES[@]}"; then
        echo "apt-get download failed; running apt-get update and retrying per package"
        apt-get update -q >>"$TMP/apt.log" 2>&1 || echo "warning: apt-get update failed" >&2
        for pkg in "${DEB_PACKAGES[@]}"; do
            apt_download "$pkg" || echo "warning: could not download $pkg" >&2
        done
    fi
    shopt -s nullglob
    debs=("$TMP/debs"/*.deb)
    shopt -u nullglob
    if [[ ${#debs[@]} -eq 0 ]]; then
        APT_WHY="apt-get download failed: $(tail -n 1 "$TMP/apt.log" 2>/dev/null || true)"
    else
        for deb in "${debs[@]}"; do
            pkg=$(dpkg-deb -f "$deb" Package)
            echo "  $(basename "$deb") ($(du -h "$deb" | cut -f1))"
            mkdir -p "$TMP/x/$pkg"
            dpkg -x "$deb" "$TMP/x/$pkg"
        done
        rm -rf "$TMP/debs"   # ~175 MB, no longer needed
        "$PYTHON" - "$TMP/x" "$PHOTOS" "$DISTRACTORS" "$WALLPAPERS" "$LARGE" "$PHOTO_DISTRACTORS" <<'PY'
import hashlib, os, re, shutil, sys
import xml.etree.ElementTree as ET
import numpy as np
from PIL import Image, ImageColor

root, photos, distractors, wallpapers, large, photo_distractors = sys.argv[1:]
RASTER = (".jpg", ".jpeg", ".png")


def files(pkg, exts=RASTER):
    base = os.path.join(root, pkg)
    for dirpath, _, names in sorted(os.walk(base)):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            if n.lower().endswith(exts) and os.path.isfile(p) and not os.path.islink(p):
                yield p, os.path.relpath(p, base)


def size_of(path):
    """(w, h) if the file fully decodes, else None."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception:
        return None


def copy_photo(src, prefix, rel):
    name = f"{prefix}-{os.path.basename(src)}"
    if os.path.exists(os.path.join(photos, name)):
        # same basename in two folders: qualify with the folder
        name = f"{prefix}-{os.path.basename(os.path.dirname(rel))}-{os.path.basename(src)}"
    shutil.copyfile(src, os.path.join(photos, name))


# mate-backgrounds: only usr/share/backgrounds/mate/nature/ holds photographs.
n = 0
for p, rel in files("mate-backgrounds"):
    if "/nature/" in "/" + rel and size_of(p):
        copy_photo(p, "mate", rel)
        n += 1
if os.path.isdir(os.path.join(root, "mate-backgrounds")):
    print(f"  mate-backgrounds: {n} photos")

# mate-backgrounds' abstract/ and desktop/ rasters: one file per design, flattened as MATE draws them.
MATE_SKIP = {
    "Elephants_3840x2160.jpg": "the 1920x1080 Elephants.jpg is the same artwork",
    "Elephants_5640x3172.jpg": "same artwork as Elephants.jpg (goes to large/)",
    "MATE-Stripes-Light.png": "light variant of MATE-Stripes-Dark",
    "Ubuntu-Mate-Dark-no-logo.png": "colour variant of Ubuntu-Mate-Cold-no-logo",
    "Ubuntu-Mate-Radioactive-no-logo.png": "colour variant of Ubuntu-Mate-Cold-no-logo",
    "Ubuntu-Mate-Warm-no-logo.png": "colour variant of Ubuntu-Mate-Cold-no-logo",
}


def mate_shading():
    """basename -> (shade_type, pcolor, scolor) from mate-background-properties/*.xml."""
    shading = {}
    props = os.path.join(root, "mate-backgrounds", "usr/share/mate-background-properties")
    for name in sorted(os.listdir(props)) if os.path.isdir(props) else []:
        for w in ET.parse(os.path.join(props, name)).getroot().iter("wallpaper"):
            fields = {c.tag: (c.text or "").strip() for c in w}
            shading[os.path.basename(fields.get("filename", ""))] = (
                fields.get("shade_type", "solid"), fields.get("pcolor", "#000000"), fields.get("scolor", "#000000"))
    return shading


def flatten(path, shade):
    """An image with transparency composited over its desktop background (a pcolor -> scolor gradient)."""
    shade_type, pcolor, scolor = shade
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    w, h = rgba.size
    c1 = np.array(ImageColor.getrgb(pcolor)[:3], dtype=np.float32)
    c2 = np.array(ImageColor.getrgb(scolor)[:3], dtype=np.float32)
    if shade_type == "horizontal-gradient":
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    elif shade_type == "vertical-gradient":
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    else:
        t = np.zeros((1, 1, 1), dtype=np.float32)
    bg = np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).round().astype(np.uint8)
    out = Image.fromarray(np.ascontiguousarray(bg)).convert("RGBA")
    out.alpha_composite(rgba)
    return out.convert("RGB")


shading = mate_shading()
n = flat = skipped = 0
for p, rel in files("mate-backgrounds"):
    if not ("/abstract/" in "/" + rel or "/desktop/" in "/" + rel) or not size_of(p):
        continue
    base = os.path.basename(p)
    if base == "Elephants_5640x3172.jpg":
        shutil.copyfile(p, os.path.join(large, "mate-" + base))
    if base in MATE_SKIP:
        skipped += 1
        continue
    with Image.open(p) as im:
        alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        opaque = not alpha or im.getchannel("A").getextrema()[0] == 255
    if opaque:
        shutil.copyfile(p, os.path.join(wallpapers, "mate-" + base))
    else:
        flatten(p, shading.get(base, ("solid", "#000000", "#000000"))).save(
            os.path.join(wallpapers, "mate-" + os.path.splitext(base)[0] + ".jpg"), quality=95)
        flat += 1
    n += 1
if os.path.isdir(os.path.join(root, "mate-backgrounds")):
    print(f"  mate-backgrounds: {n} abstract/desktop wallpapers ({flat} flattened over their gradient, "
          f"{skipped} variants of the same designs skipped)")

# gnome-backgrounds' .webp wallpapers: the light variant of each design as an original; all of them, re-encoded
# as JPEG, as large images for ingest benchmarks.
n = big = 0
for p, rel in files("gnome-backgrounds", (".webp",)):
    wh = size_of(p)
    if not rel.startswith("usr/share/backgrounds/") or not wh or min(wh) < 1024:
        continue  # vnc-*.webp: 256x256 of one flat colour
    base = os.path.basename(p)
    if base.endswith("-l.webp"):
        shutil.copyfile(p, os.path.join(wallpapers, "gnome-" + base))
        n += 1
    if wh[0] * wh[1] >= 12_000_000:
        with Image.open(p) as im:
            im.convert("RGB").save(os.path.join(large, "gnome-" + os.path.splitext(base)[0] + ".jpg"), quality=90)
        big += 1
if os.path.isdir(os.path.join(root, "gnome-backgrounds")):
    print(f"  gnome-backgrounds: {n} .webp wallpapers (light variants), {big} re-encoded as large JPEGs")

# gnome-backgrounds: any .jpg/.png wallpaper (recent versions ship none).
n = 0
for p, rel in files("gnome-backgrounds"):
    if rel.startswith("usr/share/backgrounds/") and size_of(p):
        copy_photo(p, "gnome", rel)
        n += 1
if os.path.isdir(os.path.join(root, "gnome-backgrounds")):
    print(f"  gnome-backgrounds: {n} .jpg/.png wallpapers (.webp/.svg are skipped)")

# opencv-doc: every decodable raster >= 64x64, once per distinct content.
seen = set()
n = small = broken = dup = 0
for p, rel in files("opencv-doc"):
    wh = size_of(p)
    if wh is None:
        broken += 1
        continue
    if min(wh) < 64:
        small += 1
        continue
    digest = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if digest in seen:
        dup += 1
        continue
    seen.add(digest)
    rel = rel.removeprefix("usr/share/doc/opencv-doc/")
    shutil.copyfile(p, os.path.join(distractors, "opencv-" + rel.replace("/", "_")))
    n += 1
if os.path.isdir(os.path.join(root, "opencv-doc")):
    print(f"  opencv-doc: {n} distractors (skipped {small} smaller than 64x64, "
          f"{dup} duplicates, {broken} undecodable)")

# Same-domain distractors: other desktops' wallpapers, one file per design.
n = 0
designs = {}
for p, rel in files("plasma-workspace-wallpapers"):
    m = re.match(r"usr/share/wallpapers/([^/]+)/contents/images/(\d+)x(\d+)\.(jpg|jpeg|png)$", rel)
    if m and int(m.group(2)) >= int(m.group(3)):  # landscape, light (images/, not images_dark/)
        designs.setdefault(m.group(1), []).append((abs(int(m.group(2)) - 1920), p))


def shrunk(src, name):
    """A distractor at most 1920 pixels on its long side, as JPEG quality 92 (a distractor's resolution does not
    make the task harder; decoding 24-megapixel PNGs would only slow the bench)."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    rgb.thumbnail((1920, 1920), Image.LANCZOS)
    rgb.save(os.path.join(photo_distractors, os.path.splitext(name)[0] + ".jpg"), quality=92)


for design, options in sorted(designs.items()):
    p = min(options)[1]
    if size_of(p):
        shrunk(p, f"plasma-{design}")
        n += 1
for pkg in ("ukui-wallpapers", "lomiri-wallpapers", "lomiri-wallpapers-20.04"):
    for p, rel in files(pkg):
        if rel.startswith("usr/share/backgrounds/") and os.path.getsize(p) > 0 and size_of(p):
            shrunk(p, f"{pkg.split('-')[0]}-{os.path.basename(p)}")
            n += 1
if os.path.isdir(os.path.join(root, "plasma-workspace-wallpapers")):
    print(f"  plasma/ukui/lomiri wallpapers: {n} same-domain distractors")
PY
        APT_OK=1
    fi
fi

# --- (b) scikit-image's bundled photos (no download) -------------------------
"$PYTHON" - "$PHOTOS" <<'PY'
import os, sys, warnings
import numpy as np
from PIL import Image
import skimage.data as data
from skimage.util import img_as_ubyte

out = sys.argv[1]
# Real photographs shipped inside the scikit-image wheel (synthetic ones such as
# horse, logo, checkerboard, shepp_logan_phantom are left out; lily, eagle,
# kidney, skin... need a download and are left out too).
NAMES = ["astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee",
         "coins", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
         "microaneurysms", "moon", "page", "retina", "rocket", "text",
         "motorcycle_left"]
n = 0
for name in NAMES:
    try:
        if name == "motorcycle_left":
            img = data.stereo_motorcycle()[0]
        else:
            img = getattr(data, name)()
    except Exception as e:  # not bundled in this scikit-image version
        print(f"  skimage: skipped {name} ({type(e).__name__})")
        continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = img_as_ubyte(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    Image.fromarray(np.ascontiguousarray(img)).save(
        os.path.join(out, f"skimage-{name}.jpg"), quality=95)
    n += 1
print(f"  scikit-image: {n} bundled photos")
PY

if [[ $APT_OK -eq 0 ]]; then
    echo "($APT_WHY)"
    n=$(find "$PHOTOS" -maxdepth 1 -name 'skimage-*.jpg' | wc -l)
    echo "apt-get not available: using only scikit-image's bundled photos ($n photos)"
fi

SUMMARY=$(summary)
echo "$SUMMARY"
echo "done in $((SECONDS - START)) s"
{
    echo "completed $(date -u +%Y-%m-%dT%H:%M:%SZ) debian_packages=$APT_OK samples_version=$SAMPLES_VERSION"
    echo "$SUMMARY"
} >"$MARKER"
