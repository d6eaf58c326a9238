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
#   OUT_DIR/distractors/  raster images (.jpg/.jpeg/.png, >= 64x64, decodable,
#                         de-duplicated by content) from the Debian package
#                         opencv-doc: sample data + doc figures; used as
#                         benchmark distractors.
#
# The Debian part needs apt-get + dpkg (no root needed for `apt-get download`
# itself, root for the `apt-get update` fallback). Without them, or if the
# download fails, only scikit-image's bundled photos are written.
#
# PYTHON (default: <repo>/.venv/bin/python) must have numpy, scikit-image and
# Pillow. Idempotent: a run that completed leaves OUT_DIR/photos/.done and later
# runs only print the summary. Delete the .done file to fetch again.
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
DISTRACTORS=$OUT_DIR/distractors
MARKER=$PHOTOS/.done
DEB_PACKAGES=(mate-backgrounds gnome-backgrounds opencv-doc)

# Prints counts, total size and the width x height range of both folders.
summary() {
    "$PYTHON" - "$PHOTOS" "$DISTRACTORS" <<'PY'
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

if [[ -f $MARKER ]]; then
    echo "$PHOTOS already complete ($MARKER exists); nothing to do"
    summary
    exit 0
fi

START=$SECONDS
mkdir -p "$PHOTOS" "$DISTRACTORS"
# A run that did not complete may have left files: start from a clean state.
rm -f "$PHOTOS"/mate-* "$PHOTOS"/gnome-* "$PHOTOS"/skimage-* "$DISTRACTORS"/opencv-*

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
        "$PYTHON" - "$TMP/x" "$PHOTOS" "$DISTRACTORS" <<'PY'
import hashlib, os, shutil, sys
from PIL import Image

root, photos, distractors = sys.argv[1:]
RASTER = (".jpg", ".jpeg", ".png")


def files(pkg):
    base = os.path.join(root, pkg)
    for dirpath, _, names in os.walk(base):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            if n.lower().endswith(RASTER) and os.path.isfile(p) and not os.path.islink(p):
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
    echo "completed $(date -u +%Y-%m-%dT%H:%M:%SZ) debian_packages=$APT_OK"
    echo "$SUMMARY"
} >"$MARKER"
