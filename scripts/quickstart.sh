#!/usr/bin/env bash
# The quick start: snapshot a folder into the `fs` store (a folder on a local disk), change it,
# snapshot again, and restore the first snapshot — no cloud account needed. Everything it makes is
# under .syncguard-demo/ (delete it when done). Run through `npm run quickstart`, which builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.syncguard-demo
rm -rf "$demo"
mkdir -p "$demo/Dropbox/Documents/Taxes 2025" "$demo/Dropbox/Photos" "$demo/Dropbox/Empty folder"
cd "$demo"

# A small folder that stands for the one a Dropbox, OneDrive or iCloud client keeps in sync.
cp "$root/README.md" Dropbox/Documents/README.md
printf 'Steuererklärung\n' > "Dropbox/Documents/Taxes 2025/Erklärung.txt"
printf 'receipts\n' > "Dropbox/Documents/Taxes 2025/receipts.csv"
head -c 3000000 /dev/urandom > Dropbox/Photos/IMG_0001.jpg
head -c 200000 /dev/urandom > Dropbox/Photos/IMG_0002.jpg

cat > syncguard.yaml <<'YAML'
# The embedded default: the store is a folder on this disk (or a NAS). See config.example.yaml.
store:
  type: fs
  path: ./store
stateDir: ./state
accounts:
  - name: my-dropbox
    provider: local
    path: ./Dropbox
YAML

sg() { echo; echo "\$ syncguard $(printf '%q ' "$@")"; node "$root/dist/cli/main.js" "$@"; }

sg init
sg snapshot
first=$(node "$root/dist/cli/main.js" snapshots my-dropbox --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).at(-1).id))')

echo; echo "# ransomware strikes: a file is overwritten, another deleted, a photo renamed"
head -c 1000 /dev/urandom > "Dropbox/Documents/Taxes 2025/Erklärung.txt"
rm Dropbox/Documents/README.md
mv Dropbox/Photos/IMG_0001.jpg Dropbox/Photos/IMG_0001.jpg.locked
sleep 0.1

sg snapshot
sg snapshots
sg diff my-dropbox "$first" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sg ls my-dropbox "Documents/Taxes 2025" --at "$first"
sg restore my-dropbox --at "$first" --to ./restored
sg verify

echo
if diff -r "$root/README.md" restored/Documents/README.md >/dev/null && cmp -s restored/Photos/IMG_0001.jpg Dropbox/Photos/IMG_0001.jpg.locked; then
  echo "ok: ./restored holds the folder as it was before the changes (in $demo)"
else
  echo "the restored folder differs from the original" >&2; exit 1
fi
