import {
  DeleteObjectCommand,
  PutObjectRetentionCommand,
  type ObjectLockRetentionMode,
} from '@aws-sdk/client-s3';
import { SyncguardError, isSyncguardError } from '../../errors.js';
import { checkKey, isFuture } from '../_util.js';
import type { S3Context } from './client.js';
import { versionsOf } from './list.js';

/** The Object Lock headers of a PutObject: none when the bucket has no lock or no date is asked. */
export function lockParams(
  s3: S3Context,
  until: Date | undefined,
): { ObjectLockMode?: ObjectLockRetentionMode; ObjectLockRetainUntilDate?: Date } {
  return s3.features.objectLock && s3.lockMode && until
    ? { ObjectLockMode: s3.lockMode, ObjectLockRetainUntilDate: until }
    : {};
}

/** Ceph ignores lock headers on CreateMultipartUpload: set the retention on the new version and
 *  read it back. A version that should be locked and is not is removed, not left behind. */
export async function lockAfterComplete(
  s3: S3Context,
  key: string,
  versionId: string | undefined,
  until: Date | undefined,
): Promise<void> {
  if (!s3.features.objectLock || !s3.lockMode || !until) return;
  let vid = versionId;
  try {
    vid ??= (await s3.headRaw(key))?.VersionId;
    await s3.call('lock', key, () =>
      s3.client.send(
        new PutObjectRetentionCommand({
          Bucket: s3.bucket,
          Key: s3.full(key),
          VersionId: vid,
          Retention: { Mode: s3.lockMode, RetainUntilDate: until },
        }),
      ),
    );
    const h = await s3.call('lock', key, () => s3.headDirect(key, vid));
    const got = h?.ObjectLockRetainUntilDate;
    if (!got || Math.floor(got.getTime() / 1000) < Math.floor(until.getTime() / 1000)) {
      throw new SyncguardError(
        'STORE_ERROR',
        `put ${s3.where(key)}: the server accepted the retention until ${until.toISOString()} but reports ${got ? got.toISOString() : 'none'}; the upload was removed. This server cannot lock multipart uploads: use another or \`objectLock: off\``,
      );
    }
  } catch (e) {
    if (vid) {
      await s3.client
        .send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: s3.full(key), VersionId: vid }))
        .catch(() =>
          s3.log('warn', `could not remove the unlocked upload ${s3.where(key)} (version ${vid})`),
        );
    }
    throw e;
  }
}

/** Extends every version of the key, not only the latest: anyone who can write the bucket can put a
 *  newer version over a key, and extending only that one would let the real data's lock lapse. */
export async function extendRetention(s3: S3Context, key: string, until: Date): Promise<void> {
  checkKey(key);
  const h = await s3.headRaw(key);
  if (!h) throw s3.notFound(key);
  if (!s3.features.objectLock || !s3.lockMode || !isFuture(until, new Date())) return;
  const versions = (s3.features.versioned ? await versionsOf(s3, key, false) : undefined) ?? [h.VersionId];
  for (const vid of versions) {
    const v =
      vid === h.VersionId ? h : await s3.call('extend retention of', key, () => s3.headDirect(key, vid));
    if (!v) continue;
    const current = v.ObjectLockRetainUntilDate;
    if (current && current.getTime() >= until.getTime()) continue;
    // A version still under retention keeps its mode: changing it needs the governance bypass.
    const mode =
      current && isFuture(current, new Date()) && v.ObjectLockMode ? v.ObjectLockMode : s3.lockMode;
    await s3.call('extend retention of', key, () =>
      s3.client.send(
        new PutObjectRetentionCommand({
          Bucket: s3.bucket,
          Key: s3.full(key),
          VersionId: vid,
          Retention: { Mode: mode, RetainUntilDate: until },
        }),
      ),
    );
  }
}

/** Deletes every version (and delete marker) of the key. A plain DeleteObject would only add a
 *  delete marker in a versioned bucket and leave the data. GOVERNANCE retention is not bypassed. */
export async function deleteAllVersions(s3: S3Context, key: string): Promise<void> {
  checkKey(key);
  const versions = await versionsOf(s3, key);
  if (versions === undefined) {
    await s3.call('delete', key, () =>
      s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: s3.full(key) })),
    );
    return;
  }
  let locked: SyncguardError | undefined;
  for (const versionId of versions) {
    try {
      await s3.call('delete', key, () =>
        s3.client.send(
          new DeleteObjectCommand({ Bucket: s3.bucket, Key: s3.full(key), VersionId: versionId }),
        ),
      );
    } catch (e) {
      if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
      locked ??= await lockedError(s3, key, versionId);
    }
  }
  if (locked) throw locked;
}

async function lockedError(s3: S3Context, key: string, versionId: string): Promise<SyncguardError> {
  const h = await s3.headDirect(key, versionId).catch(() => undefined);
  const until = h?.ObjectLockRetainUntilDate;
  return new SyncguardError(
    'STORE_LOCKED',
    `${s3.where(key)} is locked${until ? ` until ${until.toISOString()}` : ''} (Object Lock${h?.ObjectLockMode ? `, ${h.ObjectLockMode}` : ''})${h?.ObjectLockLegalHoldStatus === 'ON' ? ' and under a legal hold' : ''}: it can be deleted ${until ? 'after that' : 'once its retention ends'}`,
  );
}
