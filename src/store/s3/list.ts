import { ListObjectVersionsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { isSyncguardError, throwIfAborted } from '../../errors.js';
import { checkListPrefix } from '../_util.js';
import type { ObjectInfo, StoredVersion } from '../types.js';
import type { S3Context } from './client.js';

/** The objects under a prefix, page by page (ListObjectsV2). */
export async function* listObjects(
  s3: S3Context,
  prefix: string,
  signal?: AbortSignal,
): AsyncIterable<ObjectInfo> {
  checkListPrefix(prefix);
  let token: string | undefined;
  do {
    throwIfAborted(signal);
    const page = await s3.call(
      'list',
      prefix,
      () =>
        s3.client.send(
          new ListObjectsV2Command({
            Bucket: s3.bucket,
            Prefix: s3.prefix + prefix,
            ContinuationToken: token,
          }),
          { abortSignal: signal },
        ),
      signal,
    );
    for (const o of page.Contents ?? []) {
      // Folder markers ("a/") made by web consoles are not objects of ours.
      if (!o.Key || o.Key.endsWith('/')) continue;
      yield { key: o.Key.slice(s3.prefix.length), size: o.Size ?? 0 };
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/** Every version under a prefix, by key, the oldest version of a key first. */
export async function listVersions(
  s3: S3Context,
  prefix: string,
  signal?: AbortSignal,
): Promise<StoredVersion[]> {
  checkListPrefix(prefix);
  const out: StoredVersion[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  do {
    throwIfAborted(signal);
    const page = await s3.call(
      'list',
      prefix,
      () =>
        s3.client.send(
          new ListObjectVersionsCommand({
            Bucket: s3.bucket,
            Prefix: s3.prefix + prefix,
            KeyMarker: keyMarker,
            VersionIdMarker: versionMarker,
          }),
          { abortSignal: signal },
        ),
      signal,
    );
    for (const v of page.Versions ?? []) {
      if (!v.Key || v.Key.endsWith('/') || !v.VersionId) continue;
      out.push({
        key: v.Key.slice(s3.prefix.length),
        versionId: v.VersionId,
        size: v.Size ?? 0,
        lastModified: v.LastModified ?? new Date(0),
      });
    }
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
  } while (keyMarker);
  // S3 lists keys in order and the versions of a key newest first (times may tie within a second).
  const sorted: StoredVersion[] = [];
  for (let i = 0; i < out.length;) {
    let j = i;
    while (j < out.length && out[j].key === out[i].key) j++;
    sorted.push(...out.slice(i, j).reverse());
    i = j;
  }
  return sorted;
}

/** Version ids of exactly this key, delete markers included; undefined where the server has no
 *  versions API (a plain DeleteObject is then final). */
export async function versionsOf(s3: S3Context, key: string, markers = true): Promise<string[] | undefined> {
  const full = s3.full(key);
  const ids: string[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    let page;
    try {
      page = await s3.call('delete', key, () =>
        s3.client.send(
          new ListObjectVersionsCommand({
            Bucket: s3.bucket,
            Prefix: full,
            KeyMarker: keyMarker,
            VersionIdMarker: versionMarker,
          }),
        ),
      );
    } catch (e) {
      if (
        !s3.features.versioned &&
        isSyncguardError(e, 'STORE_ERROR') &&
        /NotImplemented|HTTP 501/.test(e.message)
      )
        return undefined;
      throw e;
    }
    for (const v of [...(page.Versions ?? []), ...(markers ? (page.DeleteMarkers ?? []) : [])]) {
      if (v.Key === full && v.VersionId) ids.push(v.VersionId);
    }
    if (!page.IsTruncated) return ids;
    keyMarker = page.NextKeyMarker;
    versionMarker = page.NextVersionIdMarker;
  }
}
