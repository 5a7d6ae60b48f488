/**
 * The only file that builds store keys (DESIGN.md, "Store layout"). Keys are relative to the store's prefix.
 *
 *   blobs/sha256/ab/abcdef…                 a large file's content, stored as it is
 *   packs/<yyyy>/<mm>/<dd>/<id>.pack        many small files' contents, one after another
 *   packs/<yyyy>/<mm>/<dd>/<id>.idx         the pack's table of contents, JSON
 *   snapshots/<account>/<time>.ndjson.gz    a snapshot's manifest
 *   acks/<account>/<time>.json              a person acknowledged the account's tripwire alarms, up to the snapshot it names
 *   leases/snapshot/<account>/<id>-<n>.json a running snapshot's lease (unlocked; removed when it ends)
 *   leases/prune/<id>-<n>.json              a running prune's lease (<n>: its renewal)
 */
import { randomBytes } from 'node:crypto';

export const BLOBS = 'blobs/sha256/';
export const PACKS = 'packs/';
export const SNAPSHOTS = 'snapshots/';
export const ACKS = 'acks/';
export const LEASES = 'leases/';

const SHA256 = /^[0-9a-f]{64}$/;

export function blobKey(sha256: string): string {
  if (!SHA256.test(sha256)) throw new Error(`not a SHA-256: ${sha256}`);
  return `${BLOBS}${sha256.slice(0, 2)}/${sha256}`;
}

/** The SHA-256 a blob key names, or undefined when the key is not a blob's. */
export function blobSha(key: string): string | undefined {
  const m = /^blobs\/sha256\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[2].startsWith(m[1]) ? m[2] : undefined;
}

export function newPackKeys(now: Date): { pack: string; idx: string } {
  const d = now.toISOString();
  const base = `${PACKS}${d.slice(0, 4)}/${d.slice(5, 7)}/${d.slice(8, 10)}/${randomBytes(16).toString('hex')}`;
  return { pack: `${base}.pack`, idx: `${base}.idx` };
}

export function isPackIndexKey(key: string): boolean {
  return /^packs\/\d{4}\/\d{2}\/\d{2}\/[0-9a-f]{32}\.idx$/.test(key);
}

export function packKeyOfIndex(idxKey: string): string {
  return idxKey.replace(/\.idx$/, '.pack');
}

/**
 * A snapshot's id is its start time in ISO 8601 basic format, to the millisecond: 20261127T020000.123Z.
 * It sorts as it reads, and has no ':' (which SMB shares and Windows refuse in file names).
 */
export function snapshotId(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '');
}

export function timeOfSnapshotId(id: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/.exec(id);
  if (!m) return undefined;
  const d = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

export function manifestPrefix(account: string): string {
  return `${SNAPSHOTS}${account}/`;
}

export function manifestKey(account: string, id: string): string {
  return `${manifestPrefix(account)}${id}.ndjson.gz`;
}

export function parseManifestKey(key: string): { account: string; id: string; time: Date } | undefined {
  const m = /^snapshots\/([a-z0-9][a-z0-9-]*)\/([0-9T.Z]+)\.ndjson\.gz$/.exec(key);
  const time = m ? timeOfSnapshotId(m[2]) : undefined;
  return m && time ? { account: m[1], id: m[2], time } : undefined;
}

export function ackPrefix(account: string): string {
  return `${ACKS}${account}/`;
}

/** An acknowledgement of the tripwire, named by its time (the snapshot id format). */
export function ackKey(account: string, time: Date): string {
  return `${ackPrefix(account)}${snapshotId(time)}.json`;
}

export function parseAckKey(key: string): { account: string; time: Date } | undefined {
  const m = /^acks\/([a-z0-9][a-z0-9-]*)\/([0-9T.Z]+)\.json$/.exec(key);
  const time = m ? timeOfSnapshotId(m[2]) : undefined;
  return m && time ? { account: m[1], time } : undefined;
}

export type LeaseKind = 'snapshot' | 'prune';

/** A new lease's id: its start time (the snapshot id format), then a random part. */
export function newLeaseId(now: Date): string {
  return `${snapshotId(now)}-${randomBytes(6).toString('hex')}`;
}

/** The key of a lease's `n`th writing (a lease is renewed by writing it again under n + 1). */
export function leaseKey(kind: LeaseKind, account: string | undefined, id: string, n: number): string {
  return kind === 'prune' ? `${LEASES}prune/${id}-${n}.json` : `${LEASES}snapshot/${account}/${id}-${n}.json`;
}

export function parseLeaseKey(
  key: string,
): { kind: LeaseKind; account?: string; id: string; n: number } | undefined {
  const m =
    /^leases\/(?:prune|snapshot\/([a-z0-9][a-z0-9-]*))\/(\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{1,32})-(\d{1,9})\.json$/.exec(
      key,
    );
  if (!m) return undefined;
  const kind: LeaseKind = key.startsWith(`${LEASES}prune/`) ? 'prune' : 'snapshot';
  return { kind, ...(m[1] ? { account: m[1] } : {}), id: m[2], n: Number(m[3]) };
}
