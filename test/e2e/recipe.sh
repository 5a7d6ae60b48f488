#!/usr/bin/env bash
# Restore one file from a syncguard store on S3 without syncguard: curl (which signs requests with
# AWS SigV4 itself), zcat and jq. The README quotes this script; test/e2e/recipe.test.ts runs it.
#
#   recipe.sh <account> <path in the snapshot> <output file> [snapshot id, default: the latest]
#
# Environment: S3_ENDPOINT (such as https://s3.eu-central-1.amazonaws.com; path-style requests),
# BUCKET, PREFIX (the store's prefix, such as "syncguard/", or empty), AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1).
set -euo pipefail
account=$1 path=$2 out=$3 id=${4:-}
region=${AWS_REGION:-us-east-1}
base="${S3_ENDPOINT%/}/${BUCKET}"
prefix=${PREFIX:-}

# Every request signed by curl; the keys reach curl through a pipe, never its command line.
s3() {
  curl -sS --fail-with-body --aws-sigv4 "aws:amz:${region}:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -K <(printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY") "$@"
}

# 1. The manifest: snapshots/<account>/<id>.ndjson.gz; ids are UTC times, so the latest sorts last.
if [ -z "$id" ]; then
  list_prefix=$(jq -rn --arg p "${prefix}snapshots/${account}/" '$p | @uri')
  manifest=$(s3 "${base}?list-type=2&prefix=${list_prefix}" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' | sort | tail -n 1)
else
  manifest="${prefix}snapshots/${account}/${id}.ndjson.gz"
fi
[ -n "$manifest" ] || { echo "no snapshot of ${account} in ${BUCKET}" >&2; exit 1; }

# 2. The file's line: which object holds its bytes, and where (offset/length in a pack; a blob is whole).
entry=$(s3 "${base}/${manifest}" | zcat | jq -c --arg p "$path" 'select(.path == $p and .type == "file")')
[ -n "$entry" ] || { echo "no file ${path} in ${manifest}" >&2; exit 1; }
object=$(jq -r '.object' <<<"$entry")
offset=$(jq -r '.offset // empty' <<<"$entry")
size=$(jq -r '.size' <<<"$entry")

# 3. The bytes: a range of a pack, or the whole blob.
if [ -z "$offset" ]; then
  s3 -o "$out" "${base}/${prefix}${object}"
elif [ "$size" -gt 0 ]; then
  s3 -o "$out" -H "Range: bytes=${offset}-$((offset + size - 1))" "${base}/${prefix}${object}"
else
  : >"$out"
fi

# 4. Check them against the manifest's SHA-256, and give the file its time back.
echo "$(jq -r '.sha256' <<<"$entry")  ${out}" | sha256sum --check --quiet -
touch -d "$(jq -r '.mtime' <<<"$entry")" -- "$out"
echo "restored ${path} from ${manifest} (${size} bytes) to ${out}"
