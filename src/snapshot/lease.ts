/**
 * Leases: a prune and a snapshot of one store never run at once, on one machine or several. The run
 * lock (lock.ts) covers one machine; a lease is an object in the store, so every machine sees it.
 *
 * - A snapshot writes `leases/snapshot/<account>/<id>-0.json` (holder, expiry), reads it back, then
 *   lists the leases: while a prune holds one, it steps aside (deletes its own) and waits.
 * - A prune writes `leases/prune/<id>-0.json`, reads it back, then lists the leases: any other live
 *   lease (a snapshot, another prune) and it deletes its own and refuses. It lists them again right
 *   before each round of deletions, and stops if it finds one.
 * Each writes its own lease before it looks for the other's, and the store lists what was written
 * before (S3 and Ceph list strongly, a folder too): of a snapshot and a prune that start together, at
 * least one sees the other, and both may step aside; never neither. So a snapshot that started
 * before the prune looked is seen, and nothing it reuses is deleted; one that starts after waits.
 *
 * A lease expires `ttlMs` after it was written unless renewed (every third of it, under the next
 * `<n>`, the old one deleted after): a holder that dies holds nothing for long. A lease of this host
 * whose process is gone (host.ts) is dead at once. Leases are written unlocked and deleted when their
 * run ends; prune removes the expired ones. Expiry is judged by the clocks of the machines: they
 * must agree to well within the lease time (NTP).
 *
 * Written with the store's conditional write (If-None-Match: *, after a HEAD) and read back. Keys are
 * unique to each run, so two writers never aim at one key; what a server that ignores conditional
 * writes (Ceph RGW in a versioned bucket, so in every Object Lock bucket) leaves open is another
 * writer of the store replacing a lease under its key: reading back catches it only when it happens
 * before the read.
 */
import { createHash } from 'node:crypto';
import { SyncguardError, describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import { holderState, thisProcess, type Holder } from '../host.js';
import type { Log } from '../log.js';
import { sleep } from '../providers/_pacer.js';
import { readAll, type Store } from '../store/types.js';
import { readJsonObject } from './untrusted.js';
import { LEASES, leaseKey, newLeaseId, parseLeaseKey, type LeaseKind } from './layout.js';

/** A lease not renewed for this long is expired. */
export const LEASE_TTL_MS = 10 * 60_000;
const MAX_LEASE_BYTES = 16 * 1024;

export interface LeaseRecord extends Holder {
  format: 'syncguard-lease';
  version: 1;
  kind: LeaseKind;
  /** The snapshot's account. */
  account?: string;
  id: string;
  started: string;
  expires: string;
}

export interface StoredLease extends LeaseRecord {
  key: string;
}

export interface LeaseOptions {
  ttlMs?: number;
  /** How often the lease is renewed (default: a third of ttlMs). */
  renewMs?: number;
  /** A snapshot waits this long for a prune to end, then is skipped (BUSY); default 2 hours. */
  waitMs?: number;
  /** How often a waiting snapshot looks again (default 30 s). */
  pollMs?: number;
  signal?: AbortSignal;
}

/** What leases need of a repository. */
export interface LeaseRepo {
  readonly store: Store;
  readonly log: Log;
  now(): Date;
}

export class Lease {
  private n = 0;
  private timer?: NodeJS.Timeout;
  private renewing?: Promise<void>;

  private constructor(
    private readonly repo: LeaseRepo,
    private record: LeaseRecord,
    private current: string,
    private readonly ttlMs: number,
    private readonly renewMs: number,
  ) {}

  /** Writes a new lease and reads it back. */
  static async write(
    repo: LeaseRepo,
    kind: LeaseKind,
    account: string | undefined,
    opts: LeaseOptions = {},
  ): Promise<Lease> {
    const ttlMs = opts.ttlMs ?? LEASE_TTL_MS;
    const now = repo.now();
    const id = newLeaseId(now);
    const record: LeaseRecord = {
      format: 'syncguard-lease',
      version: 1,
      kind,
      ...(account ? { account } : {}),
      id,
      ...thisProcess(),
      started: now.toISOString(),
      expires: new Date(now.getTime() + ttlMs).toISOString(),
    };
    const lease = new Lease(repo, record, leaseKey(kind, account, id, 0), ttlMs, opts.renewMs ?? ttlMs / 3);
    await putChecked(repo.store, lease.current, record);
    return lease;
  }

  get id(): string {
    return this.record.id;
  }

  get key(): string {
    return this.current;
  }

  get expires(): Date {
    return new Date(this.record.expires);
  }

  /** Renews the lease every renewMs until released. */
  keepRenewed(): void {
    this.timer ??= setInterval(() => void this.renew(), this.renewMs);
    this.timer.unref();
  }

  /** Writes the lease again under the next key, with a later expiry, then deletes the one before. */
  async renew(): Promise<void> {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      const next = {
        ...this.record,
        expires: new Date(this.repo.now().getTime() + this.ttlMs).toISOString(),
      };
      const key = leaseKey(next.kind, next.account, next.id, this.n + 1);
      try {
        await putChecked(this.repo.store, key, next);
      } catch (e) {
        this.repo.log(
          'warn',
          `the lease ${key} could not be renewed (${describeError(e)}); it expires ${this.record.expires}`,
        );
        return;
      }
      const old = this.current;
      [this.n, this.current, this.record] = [this.n + 1, key, next];
      await this.remove(old);
    })().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  /** Throws BUSY when the lease has run out, or nearly (the machine slept, the store was out of
   *  reach): another machine may take the store at any moment, so whatever it guards must stop. */
  assertHeld(): void {
    const left = this.expires.getTime() - this.repo.now().getTime();
    if (left < this.ttlMs / 6) {
      throw new SyncguardError(
        'BUSY',
        `the ${this.record.kind}'s lease ${this.current} ran out (it expires ${this.record.expires}, and could not be renewed in time): stopped, since a run elsewhere may have started; run it again`,
      );
    }
  }

  /** The other live leases on the store. */
  async others(signal?: AbortSignal): Promise<StoredLease[]> {
    const now = this.repo.now();
    return (await listLeases(this.repo, signal)).filter((l) => l.id !== this.id && isLive(l, now));
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await this.remove(this.current);
  }

  private async remove(key: string): Promise<void> {
    try {
      await this.repo.store.delete(key);
    } catch (e) {
      // Not fatal: the lease expires by itself, and the next prune removes it.
      this.repo.log(
        'warn',
        `the lease ${key} could not be removed (${describeError(e)}); it expires by itself`,
      );
    }
  }
}

/** Every lease in the store that can be read, live or not. A lease that cannot be read (too large,
 *  not JSON, not a lease) is passed over with a warning: it names no holder. */
export async function listLeases(repo: LeaseRepo, signal?: AbortSignal): Promise<StoredLease[]> {
  const out: StoredLease[] = [];
  for await (const o of repo.store.list(LEASES, signal)) {
    const k = parseLeaseKey(o.key);
    let why: string | undefined;
    if (!k) why = 'its name is not a lease key';
    let r: Partial<LeaseRecord> | undefined;
    if (!why) {
      try {
        r = await readJsonObject(repo.store, o.key, {
          size: o.size,
          maxBytes: MAX_LEASE_BYTES,
          signal,
        });
      } catch (e) {
        if (isSyncguardError(e, 'NOT_FOUND')) continue; // released meanwhile
        if (isSyncguardError(e, 'ABORTED')) throw e;
        why = describeError(e);
      }
      if (!why && !validLease(r, k!)) why = 'it is not a syncguard lease';
    }
    if (why) {
      repo.log('warn', `${o.key} is ignored: ${why}`);
      continue;
    }
    out.push({ ...(r as LeaseRecord), key: o.key });
  }
  return out;
}

/** Not expired, and not of this host with its process gone. */
export function isLive(l: LeaseRecord, now: Date): boolean {
  return Date.parse(l.expires) > now.getTime() && holderState(l) !== 'gone';
}

/** "a snapshot of "docs" on host nas (pid 42, lease leases/…, until …)". */
export function describeLease(l: StoredLease): string {
  const what = l.kind === 'prune' ? 'a prune of the store' : `a snapshot of "${l.account}"`;
  return `${what} on host ${l.host} (pid ${l.pid}, lease ${l.key}, until ${l.expires})`;
}

/**
 * A snapshot's lease: written once no prune holds the store. While one does, waits (looking again
 * every pollMs) up to waitMs, then throws BUSY naming it.
 */
export async function takeSnapshotLease(
  repo: LeaseRepo,
  account: string,
  opts: LeaseOptions = {},
): Promise<Lease> {
  const { signal } = opts;
  const waitMs = opts.waitMs ?? 2 * 3_600_000;
  const began = Date.now();
  let told = false;
  for (;;) {
    throwIfAborted(signal);
    const lease = await Lease.write(repo, 'snapshot', account, opts);
    let prunes: StoredLease[];
    try {
      prunes = (await lease.others(signal)).filter((l) => l.kind === 'prune');
    } catch (e) {
      await lease.release();
      throw e;
    }
    if (prunes.length === 0) {
      lease.keepRenewed();
      return lease;
    }
    await lease.release();
    const p = prunes[0];
    if (Date.now() - began >= waitMs) {
      throw new SyncguardError(
        'BUSY',
        `${describeLease(p)} holds the store, and did not end in ${Math.round(waitMs / 60_000)} minutes; if no syncguard prune runs on ${p.host}, delete ${p.key} from the store`,
      );
    }
    if (!told) repo.log('info', `${account}: waits for ${describeLease(p)} to end`);
    told = true;
    await sleep(opts.pollMs ?? 30_000, signal);
  }
}

/** A prune's lease: written, then refused (BUSY, naming the other holder) if any other live lease
 *  exists. Expired and dead leases found on the way are removed. */
export async function takePruneLease(repo: LeaseRepo, opts: LeaseOptions = {}): Promise<Lease> {
  const lease = await Lease.write(repo, 'prune', undefined, opts);
  try {
    const now = repo.now();
    const all = (await listLeases(repo, opts.signal)).filter((l) => l.id !== lease.id);
    const live = all.filter((l) => isLive(l, now));
    if (live.length > 0) throw busyStore(live[0]);
    for (const l of all) await repo.store.delete(l.key).catch(() => {});
  } catch (e) {
    await lease.release();
    throw e;
  }
  lease.keepRenewed();
  return lease;
}

/** Before a prune deletes: its lease still held, and no other live lease on the store. */
export async function checkPruneAlone(lease: Lease, signal?: AbortSignal): Promise<void> {
  lease.assertHeld();
  const others = await lease.others(signal);
  if (others.length > 0) throw busyStore(others[0]);
}

function busyStore(l: StoredLease): SyncguardError {
  return new SyncguardError(
    'BUSY',
    `${describeLease(l)} holds the store; if syncguard no longer runs on ${l.host}, delete ${l.key} from the store, or wait until the lease expires`,
  );
}

function validLease(r: Partial<LeaseRecord> | undefined, k: NonNullable<ReturnType<typeof parseLeaseKey>>) {
  return (
    !!r &&
    r.format === 'syncguard-lease' &&
    r.kind === k.kind &&
    r.id === k.id &&
    r.account === k.account &&
    typeof r.host === 'string' &&
    Number.isSafeInteger(r.pid) &&
    typeof r.started === 'string' &&
    typeof r.expires === 'string' &&
    !Number.isNaN(Date.parse(r.expires))
  );
}

/** Writes a lease conditionally (write-once) and reads it back: it must be what was written. */
async function putChecked(store: Store, key: string, record: LeaseRecord): Promise<void> {
  const body = Buffer.from(JSON.stringify(record) + '\n');
  const sha256 = createHash('sha256').update(body).digest('hex');
  await store.put(key, body, { size: body.length, sha256 });
  const info = await store.head(key);
  const back = info?.size === body.length ? await readAll(store, key, { length: body.length }) : undefined;
  if (!back?.equals(body)) {
    throw new SyncguardError(
      'STORE_CONFLICT',
      `the lease ${key} read back differs from the one written: another writer replaced it (the server does not honour conditional writes); try again`,
    );
  }
}
