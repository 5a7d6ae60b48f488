/**
 * Retention: which snapshots the keep policy holds, keeping what they name locked while it does, and
 * prune, which removes the rest once their locks have run out.
 *
 * Lock horizons. A manifest is written last and locked no longer than any object it names (take.ts).
 * Extending a kept snapshot moves the retention of every object it names first and of its manifest
 * last, so the manifest's own Object Lock retention — one HEAD away, on any machine — is the
 * snapshot's lock horizon: nothing is written beside it, a crash half-way leaves the manifest behind
 * (the next run extends again), and it can never claim more than the store enforces.
 *
 * Prune deletes a manifest only when the policy drops it and its lock has run out; an object only when
 * no remaining manifest names it, it has been seen unreferenced for the grace period (a run elsewhere
 * may be about to name it), and its lock has run out. A pack goes with its index, index first.
 */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { KeepPolicy } from '../config/schema.js';
import { SyncguardError, isSyncguardError, throwIfAborted } from '../errors.js';
import { showPath } from '../paths.js';
import { BLOBS, PACKS, blobSha, isPackIndexKey, packKeyOfIndex } from './layout.js';
import type { ManifestHeader } from './manifest.js';
import { datedAhead, type Repository, type SnapshotInfo } from './repository.js';
import { forEachLimit } from '../util.js';
import { listAcks, tripwireState, type TripwireState } from './tripwire.js';
import { gunzipLines, parseJson } from './untrusted.js';

const DAY = 86_400_000;

export interface SnapshotLock extends SnapshotInfo {
  header: ManifestHeader;
  /** The manifest's retention now: until when the snapshot is locked, extensions included. */
  lockedUntil?: Date;
}

/** The snapshots of an account (or of all), oldest first, with headers and lock horizons. */
export async function readSnapshotLocks(
  repo: Repository,
  account?: string,
  signal?: AbortSignal,
  opts: { skipDamaged?: boolean } = {},
): Promise<SnapshotLock[]> {
  const infos = await repo.listSnapshots(account, signal);
  const out = new Array<SnapshotLock | undefined>(infos.length);
  await forEachLimit(
    infos.map((s, i) => [s, i] as const),
    8,
    async ([s, i]) => {
      try {
        const [header, info] = await Promise.all([repo.readHeader(s.key, signal), repo.store.head(s.key)]);
        out[i] = {
          ...s,
          header,
          // The store's word only: a header's lockedUntil is what the run meant to set, and a crash
          // between writing a manifest and locking it leaves a header that claims a lock the store lacks.
          lockedUntil: info?.retainUntil,
        };
      } catch (e) {
        // Listing goes on past a damaged manifest (and says so); prune does not: it cannot know what
        // the damaged snapshot needs, so it deletes nothing.
        if (!opts.skipDamaged || !isSyncguardError(e, 'INTEGRITY')) throw e;
        repo.log(
          'warn',
          `${e.message}: the snapshot ${s.id} of "${s.account}" is not listed; run \`syncguard verify\``,
        );
      }
    },
  );
  return out.filter((s): s is SnapshotLock => s !== undefined);
}

// ---- the keep policy ----

export interface Policy {
  keep: KeepPolicy;
  /** Days, weeks, months and years are counted in this timezone (default: the process's). */
  timeZone?: string;
}

/**
 * The snapshots the policy keeps, each with why: the newest always; then, newest first, the last N,
 * and the newest snapshot of each of the last N days, ISO weeks, months and years that have one.
 */
export function applyPolicy(
  snapshots: Array<{ id: string; time: Date }>,
  policy: Policy,
): Map<string, string[]> {
  const sorted = [...snapshots].sort((a, b) => b.time.getTime() - a.time.getTime());
  const kept = new Map<string, string[]>();
  const add = (id: string, why: string) => kept.set(id, [...(kept.get(id) ?? []), why]);
  if (sorted.length > 0) add(sorted[0].id, 'the newest');
  const rules: Array<[keyof KeepPolicy, (s: { id: string; time: Date }) => string]> = [
    ['last', (s) => s.id],
    ['daily', (s) => day(zonedParts(s.time, policy.timeZone))],
    ['weekly', (s) => isoWeek(zonedParts(s.time, policy.timeZone))],
    ['monthly', (s) => day(zonedParts(s.time, policy.timeZone)).slice(0, 7)],
    ['yearly', (s) => String(zonedParts(s.time, policy.timeZone).year)],
  ];
  for (const [rule, bucket] of rules) {
    let left = policy.keep[rule];
    let previous: string | undefined;
    for (const s of sorted) {
      if (left <= 0) break;
      const b = bucket(s);
      if (b === previous) continue;
      previous = b;
      left--;
      add(s.id, rule === 'last' ? 'last' : `${rule} ${b}`);
    }
  }
  return kept;
}

export interface ZonedParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock parts of `date` in a timezone (the process's when none is given). */
export function zonedParts(date: Date, timeZone?: string): ZonedParts {
  const tz = timeZone ?? '';
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, f);
  }
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(date)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return { year: p.year, month: p.month, day: p.day, hour: p.hour % 24, minute: p.minute, second: p.second };
}

const pad = (n: number) => String(n).padStart(2, '0');

function day(p: ZonedParts): string {
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

function isoWeek(p: ZonedParts): string {
  // The ISO week is the one its Thursday falls in; weeks start on Monday.
  const d = new Date(Date.UTC(p.year, p.month - 1, p.day));
  d.setUTCDate(d.getUTCDate() + 4 - (d.getUTCDay() || 7));
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / DAY + 1) / 7);
  return `${year}-W${pad(week)}`;
}

// ---- an account's retention state ----

export interface AccountRetention {
  account: string;
  /** Every snapshot of the account, oldest first. */
  snapshots: SnapshotLock[];
  /** The snapshots kept, with why. */
  kept: Map<string, string[]>;
  tripwire: TripwireState;
}

/** What the policy keeps of an account now. Everything is kept while its tripwire has fired and
 *  nobody acknowledged it, and when the account is not in the config (`policy` undefined). With
 *  skipDamaged, a manifest that cannot be read is passed over (for extending locks: a planted object
 *  must not stop the real snapshots' locks from being extended); prune never passes one over. */
export async function accountRetention(
  repo: Repository,
  account: string,
  policy: Policy | undefined,
  signal?: AbortSignal,
  opts: { skipDamaged?: boolean } = {},
): Promise<AccountRetention> {
  const [snapshots, acks] = await Promise.all([
    readSnapshotLocks(repo, account, signal, opts),
    listAcks(repo, account, signal),
  ]);
  // A snapshot dated in the future is no part of the policy or the tripwire's state: it is kept, for
  // a person to look at (`snapshots` and `verify` flag it).
  const now = repo.now();
  const ahead = snapshots.filter((s) => datedAhead(s.time, now));
  const dated = snapshots.filter((s) => !datedAhead(s.time, now));
  const tripwire = tripwireState(dated, acks);
  let kept: Map<string, string[]>;
  if (!policy) {
    kept = new Map(snapshots.map((s) => [s.id, ['the account is not in the config']]));
  } else if (tripwire.tripped) {
    const why = `the tripwire fired on ${tripwire.fired[0].id} and nobody acknowledged it yet (\`syncguard ack ${account}\`)`;
    kept = new Map(snapshots.map((s) => [s.id, [why]]));
  } else {
    kept = applyPolicy(dated, policy);
  }
  for (const s of ahead) kept.set(s.id, ['dated in the future: not trusted, kept for a person to look at']);
  return { account, snapshots, kept, tripwire };
}

// ---- extending the locks of kept snapshots ----

export interface LockExtension {
  account: string;
  /** The snapshots whose locks were extended. */
  snapshots: string[];
  /** Objects they name (each was extended, or was locked long enough already). */
  objects: number;
  until?: string;
}

/**
 * Keeps every kept snapshot locked at least the lock time ahead, as take.ts does for what a new
 * snapshot names: when a kept snapshot's horizon comes nearer than that, every kept snapshot whose
 * horizon ends before now + lock time + slack moves there — each object they name first, then their
 * manifests. They then share one horizon, and the next nights have nothing to do until the slack is
 * used up: one batch every quarter of the lock time, not a call per file per night. A missing object
 * is an INTEGRITY error that names the snapshot.
 */
export async function extendKeptLocks(
  repo: Repository,
  r: AccountRetention,
  signal?: AbortSignal,
): Promise<LockExtension> {
  const done: LockExtension = { account: r.account, snapshots: [], objects: 0 };
  if (!repo.lockDays) return done;
  const now = repo.now().getTime();
  const horizon = now + repo.lockDays * DAY;
  const extendTo = horizon + repo.lockSlackDays() * DAY;
  const kept = r.snapshots.filter((s) => r.kept.has(s.id));
  const until = (s: SnapshotLock) => s.lockedUntil?.getTime() ?? 0;
  if (!kept.some((s) => until(s) < horizon)) return done;
  const due = kept.filter((s) => until(s) < extendTo);
  const to = new Date(extendTo);
  const namedBy = new Map<string, string>();
  const readable: SnapshotLock[] = [];
  for (const s of due) {
    let named: Set<string>;
    try {
      named = await namedObjects(repo, s.key, signal);
    } catch (e) {
      // A manifest that cannot be read (damaged, or planted by whoever can write the store) must not
      // stop the locks of the real snapshots from being extended; verify reports it.
      if (!isSyncguardError(e, 'INTEGRITY')) throw e;
      repo.log('warn', `${e.message}; its lock is not extended`);
      continue;
    }
    readable.push(s);
    for (const o of named) if (!namedBy.has(o)) namedBy.set(o, s.id);
  }
  await forEachLimit(namedBy, 8, async ([object, id]) => {
    throwIfAborted(signal);
    try {
      await repo.store.extendRetention(object, to);
    } catch (e) {
      if (isSyncguardError(e, 'NOT_FOUND')) {
        throw new SyncguardError(
          'INTEGRITY',
          `the snapshot ${id} of "${r.account}" names ${showPath(object)}, which is missing from the store: run \`syncguard verify ${r.account}\``,
        );
      }
      throw e;
    }
  });
  await forEachLimit(readable, 8, async (s) => {
    throwIfAborted(signal);
    await repo.store.extendRetention(s.key, to);
    s.lockedUntil = to;
  });
  repo.log(
    'info',
    `${r.account}: extended the locks of ${readable.length} kept snapshot${readable.length > 1 ? 's' : ''} (${namedBy.size} objects) to ${to.toISOString()}`,
  );
  return {
    account: r.account,
    snapshots: readable.map((s) => s.id),
    objects: namedBy.size,
    until: to.toISOString(),
  };
}

/**
 * Every object a manifest names. Read line by line without judging paths: an entry restore would
 * refuse still names content someone may want (`zcat | jq`). A line that cannot be read stops the
 * caller: prune must never guess what a kept snapshot needs.
 */
export async function namedObjects(
  repo: Repository,
  key: string,
  signal?: AbortSignal,
): Promise<Set<string>> {
  const out = new Set<string>();
  const body = await repo.store.get(key, { signal, versionId: repo.manifestVersion(key) });
  let n = 0;
  try {
    for await (const lines of gunzipLines(body, `the manifest ${key}`))
      for (const line of lines) {
        if (n++ === 0 || line === '') continue;
        const e = parseJson(line, `line ${n}`) as { object?: unknown } | null;
        if (typeof e?.object === 'string') out.add(e.object);
      }
  } catch (e) {
    if (isSyncguardError(e) && e.code !== 'INTEGRITY') throw e;
    throw new SyncguardError(
      'INTEGRITY',
      `the manifest ${key} cannot be read (line ${n}: ${(e as Error).message}); nothing it names is deleted until it can: run \`syncguard verify\``,
      { cause: e },
    );
  }
  if (n === 0) throw new SyncguardError('INTEGRITY', `the manifest ${key} is empty`);
  return out;
}

// ---- prune ----

export interface PruneOptions {
  /** The accounts in the config, with their policies; snapshots of any other account are kept. */
  policies: Map<string, Policy>;
  /** How long an object must have been seen unreferenced before it is deleted. */
  graceMs: number;
  dryRun?: boolean;
  /** A file in the state folder that remembers when each unreferenced object was first seen. */
  marksFile?: string;
  /** Called right before each round of deletions; throws to stop the prune (a snapshot has started
   *  somewhere: leases.ts). */
  beforeDelete?: (signal?: AbortSignal) => Promise<void>;
  /** Called before each deletion; throws when the prune no longer holds the store (its lease ran out). */
  stillHeld?: () => void;
  signal?: AbortSignal;
}

export interface PrunedSnapshot {
  account: string;
  id: string;
  time: string;
  /** keep: the policy keeps it; remove: removed (in a dry run: would be); locked: the policy drops
   *  it, but its lock has not run out: a later prune removes it. */
  action: 'keep' | 'remove' | 'locked';
  reasons: string[];
  lockedUntil?: string;
}

export interface PruneResult {
  dryRun: boolean;
  time: string;
  snapshots: PrunedSnapshot[];
  /** Accounts whose snapshots are all kept because the tripwire fired. */
  blocked: Array<{ account: string; fired: TripwireState['fired'] }>;
  objects: {
    /** Objects named by a remaining snapshot. */
    referenced: number;
    /** Objects no remaining snapshot names. */
    unreferenced: number;
    /** Deleted (in a dry run: would be), with their sizes. */
    deleted: Array<{ key: string; size: number }>;
    bytesDeleted: number;
    /** Unreferenced, but not for the grace period yet: deleted by a prune from `waitingUntil` on. */
    waiting: number;
    waitingUntil?: string;
    /** Unreferenced, but still locked: deleted by a prune after `lockedUntil` (the earliest). */
    locked: number;
    lockedUntil?: string;
  };
  /** Old acknowledgement records removed (the newest of each account is kept). */
  records: number;
  locks: LockExtension[];
}

interface Marks {
  format: 'syncguard-prune-marks';
  version: 1;
  marks: Record<string, string>;
}

export async function prune(repo: Repository, opts: PruneOptions): Promise<PruneResult> {
  const { signal } = opts;
  const now = repo.now();
  const dry = !!opts.dryRun;
  const result: PruneResult = {
    dryRun: dry,
    time: now.toISOString(),
    snapshots: [],
    blocked: [],
    objects: { referenced: 0, unreferenced: 0, deleted: [], bytesDeleted: 0, waiting: 0, locked: 0 },
    records: 0,
    locks: [],
  };

  // 1. Manifests outside the policy, once unlocked.
  const all = await repo.listSnapshots(undefined, signal);
  const accounts = [...new Set([...all.map((s) => s.account), ...opts.policies.keys()])].sort();
  const gone = new Set<string>();
  const retentions: AccountRetention[] = [];
  if (!dry) await opts.beforeDelete?.(signal);
  for (const account of accounts) {
    const r = await accountRetention(repo, account, opts.policies.get(account), signal);
    retentions.push(r);
    if (r.tripwire.tripped && opts.policies.has(account))
      result.blocked.push({ account, fired: r.tripwire.fired });
    for (const s of r.snapshots) {
      const base = {
        account,
        id: s.id,
        time: s.time.toISOString(),
        lockedUntil: s.lockedUntil?.toISOString(),
      };
      const why = r.kept.get(s.id);
      if (why) {
        result.snapshots.push({ ...base, action: 'keep', reasons: why });
        continue;
      }
      if (s.lockedUntil && s.lockedUntil > now) {
        result.snapshots.push({
          ...base,
          action: 'locked',
          reasons: [
            `outside the policy, but locked until ${s.lockedUntil.toISOString()}: a prune after that removes it`,
          ],
        });
        continue;
      }
      if (!dry) {
        opts.stillHeld?.();
        try {
          await repo.store.delete(s.key);
        } catch (e) {
          if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
          result.snapshots.push({
            ...base,
            action: 'locked',
            reasons: [`outside the policy, but the store refused to delete it: ${e.message}`],
          });
          continue;
        }
      }
      gone.add(s.key);
      result.snapshots.push({ ...base, action: 'remove', reasons: ['outside the policy'] });
    }
  }

  // 2. What the remaining manifests name. Read after the deletions: a snapshot written meanwhile
  //    names either objects it wrote (young: the grace period keeps them) or ones it locked.
  const referenced = new Set<string>();
  const live = all.filter((s) => !gone.has(s.key));
  await forEachLimit(live, 4, async (s) => {
    throwIfAborted(signal);
    for (const o of await namedObjects(repo, s.key, signal)) referenced.add(o);
  });
  result.objects.referenced = referenced.size;

  // 3. Objects no remaining snapshot names: blobs, packs (with their index), indexes without a pack.
  const sizes = new Map<string, number>();
  for await (const o of repo.store.list(BLOBS, signal)) if (blobSha(o.key)) sizes.set(o.key, o.size);
  const idxOf = new Map<string, string>();
  for await (const o of repo.store.list(PACKS, signal)) {
    sizes.set(o.key, o.size);
    if (isPackIndexKey(o.key)) idxOf.set(packKeyOfIndex(o.key), o.key);
  }
  // A unit is deleted together: [index, pack], index first, so an index never names a missing pack.
  const units: string[][] = [];
  for (const key of sizes.keys()) {
    if (referenced.has(key)) continue;
    if (key.startsWith(BLOBS)) units.push([key]);
    else if (key.endsWith('.pack')) units.push(idxOf.has(key) ? [idxOf.get(key)!, key] : [key]);
    else if (isPackIndexKey(key) && !sizes.has(packKeyOfIndex(key))) units.push([key]);
  }
  result.objects.unreferenced = units.length;

  // 4. The grace period: an object is deleted once it has been seen unreferenced for graceMs.
  const marks = opts.marksFile ? await readMarks(opts.marksFile) : {};
  const seen: Record<string, string> = {};
  const ready: string[][] = [];
  let waitingUntil = Infinity;
  for (const unit of units) {
    const key = unit[unit.length - 1];
    const first = Date.parse(marks[key] ?? '') || now.getTime();
    seen[key] = new Date(first).toISOString();
    if (now.getTime() - first >= opts.graceMs) ready.push(unit);
    else {
      result.objects.waiting++;
      waitingUntil = Math.min(waitingUntil, first + opts.graceMs);
    }
  }
  if (Number.isFinite(waitingUntil)) result.objects.waitingUntil = new Date(waitingUntil).toISOString();
  if (opts.marksFile && !dry) await writeMarks(opts.marksFile, seen);

  // 5. Delete what is unlocked.
  let lockedUntil = Infinity;
  if (!dry && ready.length > 0) await opts.beforeDelete?.(signal);
  await forEachLimit(ready, 8, async (unit) => {
    throwIfAborted(signal);
    const infos = await Promise.all(unit.map((k) => repo.store.head(k)));
    const held = infos.map((i) => i?.retainUntil?.getTime() ?? 0).filter((t) => t > now.getTime());
    if (held.length > 0) {
      result.objects.locked++;
      lockedUntil = Math.min(lockedUntil, Math.max(...held));
      return;
    }
    for (const key of unit) {
      if (!dry) {
        opts.stillHeld?.();
        try {
          await repo.store.delete(key);
        } catch (e) {
          if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
          result.objects.locked++;
          return;
        }
      }
      const size = sizes.get(key) ?? 0;
      result.objects.deleted.push({ key, size });
      result.objects.bytesDeleted += size;
    }
  });
  if (Number.isFinite(lockedUntil)) result.objects.lockedUntil = new Date(lockedUntil).toISOString();
  result.objects.deleted.sort((a, b) => (a.key < b.key ? -1 : 1));

  // 6. Acknowledgements: only the newest of each account says anything.
  for (const account of accounts) {
    const acks = await listAcks(repo, account, signal);
    for (const a of acks.slice(0, -1)) {
      const info = await repo.store.head(a.key);
      if (info?.retainUntil && info.retainUntil > now) continue;
      if (!dry)
        await repo.store.delete(a.key).catch((e) => {
          if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
        });
      result.records++;
    }
  }

  // 7. Keep what stays locked while it is kept.
  if (!dry) {
    for (const r of retentions) {
      if (!opts.policies.has(r.account)) continue;
      r.snapshots = r.snapshots.filter((s) => !gone.has(s.key));
      const ext = await extendKeptLocks(repo, r, signal);
      if (ext.snapshots.length > 0) result.locks.push(ext);
    }
  }
  return result;
}

async function readMarks(file: string): Promise<Record<string, string>> {
  try {
    const m = JSON.parse(await fsp.readFile(file, 'utf8')) as Marks;
    return m?.format === 'syncguard-prune-marks' && m.marks && typeof m.marks === 'object' ? m.marks : {};
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof SyntaxError) return {};
    throw e;
  }
}

async function writeMarks(file: string, marks: Record<string, string>): Promise<void> {
  await fsp.mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const m: Marks = { format: 'syncguard-prune-marks', version: 1, marks };
  await fsp.writeFile(tmp, JSON.stringify(m), { mode: 0o600 });
  await fsp.rename(tmp, file);
}
