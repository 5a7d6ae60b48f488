/**
 * Raw S3 access for tests that check what syncguard left in a bucket, or that act as an attacker
 * holding the same credentials. Configured as the store is (path style, checksums only when required:
 * Ceph RGW does not understand the SDK's default aws-chunked uploads).
 */
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import type { S3Access } from './cli.js';

export function rawClient(s3: S3Access): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A bucket made the way a user might have made it by hand: no Object Lock. */
export async function createPlainBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

export async function listKeys(
  client: S3Client,
  bucket: string,
  prefix = '',
): Promise<Array<{ key: string; size: number }>> {
  const out: Array<{ key: string; size: number }> = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) out.push({ key: o.Key!, size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export async function headObject(client: S3Client, bucket: string, key: string) {
  return client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

export async function getObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

/** The error a raw DeleteObject of one version gets, or undefined when the server deleted it. */
export async function tryDeleteVersion(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string,
): Promise<{ name: string; status?: number } | undefined> {
  try {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
    return undefined;
  } catch (e) {
    return {
      name: (e as Error).name,
      status: (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode,
    };
  }
}

/**
 * Removes a test bucket and everything in it. Test buckets use GOVERNANCE retention, which the
 * bucket owner may bypass explicitly (x-amz-bypass-governance-retention); COMPLIANCE could not be.
 * Best effort: a test's result never depends on it.
 */
export async function removeBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    let left = Infinity;
    for (;;) {
      const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket }));
      const all = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])];
      // Nothing left, or a pass that removed nothing (an object that cannot be deleted): stop.
      if (all.length === 0 || (!page.IsTruncated && all.length >= left)) break;
      left = page.IsTruncated ? Infinity : all.length;
      await Promise.all(
        all.map((v) =>
          client
            .send(
              new DeleteObjectCommand({
                Bucket: bucket,
                Key: v.Key!,
                VersionId: v.VersionId,
                BypassGovernanceRetention: true,
              }),
            )
            .catch(() => {}),
        ),
      );
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch {
    // A bucket left behind costs memory on the throw-away test server, nothing more.
  }
}
