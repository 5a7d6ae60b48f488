import {
  CreateBucketCommand,
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
} from '@aws-sdk/client-s3';
import { SyncguardError } from '../../errors.js';
import type { PrepareOptions, PrepareReport } from '../types.js';
import type { S3Context } from './client.js';
import { nameOf, status } from './errors.js';

/** Checks the bucket (created when asked), its versioning and Object Lock, and sets s3.features to
 *  what the bucket really has. */
export async function prepareBucket(s3: S3Context, opts: PrepareOptions): Promise<PrepareReport> {
  const notes: string[] = [];
  let created = false;
  if (!(await bucketExists(s3))) {
    if (!opts.create) {
      throw new SyncguardError(
        'NOT_FOUND',
        `the bucket ${s3.bucket} does not exist${s3.customEndpoint ? '' : ` in ${s3.region}`}: run \`syncguard init\` to create it`,
      );
    }
    await createBucket(s3);
    created = true;
    notes.push(
      `created the bucket ${s3.bucket}${s3.lockMode ? ' with Object Lock (and so versioning)' : ''}`,
    );
  } else {
    notes.push(`the bucket ${s3.bucket} exists`);
  }
  const versioning = await s3.call('prepare', undefined, () =>
    s3.client.send(new GetBucketVersioningCommand({ Bucket: s3.bucket })),
  );
  const versioned = versioning.Status === 'Enabled';
  const lock = await bucketLock(s3);
  notes.push(`versioning: ${versioning.Status ?? 'never enabled'}`);
  if (s3.lockMode) {
    if (!lock.enabled || !versioned) {
      throw new SyncguardError(
        'STORE_NO_LOCK',
        `the bucket ${s3.bucket} has no Object Lock${lock.enabled ? ' (versioning is off)' : ''}, so its objects could be deleted or overwritten: ` +
          'Object Lock can only be switched on when a bucket is created on most servers, so create a new bucket (`syncguard init` does, with Object Lock) and name it in the config, ' +
          'or write `objectLock: off` in the store section to accept a store without it',
      );
    }
    notes.push(
      `Object Lock is enabled: every object is locked (${s3.lockMode}) until the date its snapshots need`,
    );
    if (lock.defaultRetention)
      notes.push(
        `the bucket also has a default retention (${lock.defaultRetention}): every object is kept at least that long, whatever the keep policy says`,
      );
  } else {
    s3.features.objectLock = false;
    notes.push(
      lock.enabled
        ? 'the bucket has Object Lock, but the config says `objectLock: off`: objects are written without retention of their own'
        : "Object Lock is off (as configured): anyone holding the store's keys can delete the backups",
    );
  }
  s3.features.versioned = versioned;
  return {
    created,
    objectLock: s3.lockMode && lock.enabled ? 'enabled' : 'off',
    versioning: versioned ? 'enabled' : 'off',
    notes,
  };
}

async function bucketExists(s3: S3Context): Promise<boolean> {
  return s3.call('prepare', undefined, async () => {
    try {
      await s3.client.send(new HeadBucketCommand({ Bucket: s3.bucket }));
      return true;
    } catch (e) {
      if (status(e) === 404) return false;
      if (status(e) === 403 && !['InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(nameOf(e))) {
        // A HEAD has no body: a wrong secret, a missing permission and someone else's bucket look alike.
        throw new SyncguardError(
          'STORE_AUTH',
          `the bucket ${s3.bucket} refused these credentials: check accessKeyId and secretAccessKey, that they may use this bucket, and that the name is not someone else's bucket`,
        );
      }
      throw e;
    }
  });
}

async function createBucket(s3: S3Context): Promise<void> {
  await s3.call('create bucket', undefined, async () => {
    try {
      await s3.client.send(
        new CreateBucketCommand({
          Bucket: s3.bucket,
          ObjectLockEnabledForBucket: s3.lockMode ? true : undefined,
          // Only AWS needs the region spelled out; other servers reject names they do not know.
          CreateBucketConfiguration:
            !s3.customEndpoint && s3.region !== 'us-east-1'
              ? { LocationConstraint: s3.region as never }
              : undefined,
        }),
      );
    } catch (e) {
      const name = nameOf(e);
      if (name === 'BucketAlreadyOwnedByYou') return;
      if (name === 'BucketAlreadyExists')
        throw new SyncguardError(
          'STORE_ERROR',
          `the bucket name ${s3.bucket} is taken by someone else: choose another name in the config`,
        );
      throw e;
    }
  });
}

async function bucketLock(s3: S3Context): Promise<{ enabled: boolean; defaultRetention?: string }> {
  return s3.call('prepare', undefined, async () => {
    try {
      const r = await s3.client.send(new GetObjectLockConfigurationCommand({ Bucket: s3.bucket }));
      const d = r.ObjectLockConfiguration?.Rule?.DefaultRetention;
      return {
        enabled: r.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
        defaultRetention: d ? `${d.Mode}, ${d.Days ? `${d.Days} days` : `${d.Years} years`}` : undefined,
      };
    } catch (e) {
      // No configuration (404 ObjectLockConfigurationNotFoundError), or a server without the API.
      if (status(e) === 404 || status(e) === 501 || nameOf(e) === 'ObjectLockConfigurationNotFoundError')
        return { enabled: false };
      throw e;
    }
  });
}
