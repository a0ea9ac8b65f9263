#!/usr/bin/env bash
# Set up napari-deepcut on a fresh Debian/Ubuntu machine: system libraries for a napari window
# (Qt, OpenGL, a virtual display for headless machines), a virtual environment in .venv with
# torch and torchvision, then the project with its GUI and test extras (timm included).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
# No pip cache: where torch is downloaded (a CUDA build, several GB) a cached copy would double the
# disk it takes.
export PIP_NO_CACHE_DIR=1
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so the version is known; timm (the dino extra) needs the torchvision that
# matches it. These are the registry's default builds, which run on the CPU as well as on CUDA.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[testing]"
echo "napari-deepcut is installed in .venv"
