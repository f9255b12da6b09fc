#!/usr/bin/env bash
# Stage the build context of images/Dockerfile in DEST: the files git sees (tracked, and untracked
# ones that are not ignored; so no .venv, caches or outputs), plus the .h5 files of WEIGHTS_DIR under
# images/weights/ when it is given. Nothing is written into the checkout.
#
#   images/stage-context.sh DEST [WEIGHTS_DIR]
set -euo pipefail
die() { printf 'Error: %s\n' "$*" >&2; exit 2; }
(($# >= 1)) || die "usage: $0 DEST [WEIGHTS_DIR]"
dest=$(realpath -m "$1")
weights=${2:-}
cd "$(dirname "$0")/.."
git rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    || die "$PWD is not a git checkout; the build context is staged from the files git sees."
for needed in pyproject.toml README.md components cli pipelines images/Dockerfile requirements.lock; do
    [[ -e $needed ]] || die "$PWD/$needed is missing; the image installs the package from this tree."
done
rm -rf "$dest"
mkdir -p "$dest/images/weights"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' file; do [[ -f $file ]] && printf '%s\0' "$file"; done \
    | tar --null -T - -cf - | tar -C "$dest" -xf -
if [[ -n $weights ]]; then
    compgen -G "$weights/*.h5" >/dev/null || die "no .h5 files in WEIGHTS_DIR=$weights."
    cp "$weights"/*.h5 "$dest/images/weights/"
fi
echo "Staged the build context in $dest ($(du -sh "$dest" | cut -f1))"
