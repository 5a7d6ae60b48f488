/**
 * One run per account on this machine: a lock file in the state folder, `locks/<account>.lock`,
 * naming its holder (host, boot, pid, process start time; see host.ts) and what it does (a snapshot,
 * or a prune, which holds every account). A lock is stale only when its holder is of this host and
 * its boot is over or its process is gone; a lock of another host (a state folder on a shared disk)
 * is never taken over, and a lock held by this same process (the daemon's own snapshot) is refused,
 * not judged by its pid.
 *
 * Taking over a stale lock is atomic. A taker first claims that stale lock: it links a claim file
 * named by the stale lock's content (`<lock>.takeover-<hash>-<n>`); link() lets only one taker have
 * it. The claimer then checks that the lock still holds the same stale content, and renames its own
 * lock over it: there is no moment without a lock, and a fresh lock can never be replaced, since
 * replacing needs a claim of the content it replaces. (Renaming the stale lock away first would move
 * a fresh lock of a faster taker away, leaving a gap in which two can win.) A claim whose claimer
 * died is passed over to the next `<n>`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { SyncguardError } from './errors.js';
import { bootTime, holderState, thisProcess, type Holder } from './host.js';

export interface RunLock {
  /** The lock file. */
  readonly file: string;
  release(): Promise<void>;
}

export type LockPurpose = 'snapshot' | 'prune';

export interface LockRecord extends Holder {
  format: 'syncguard-lock';
  version: 1;
  account: string;
  purpose: LockPurpose;
  /** When it was taken, ISO 8601. */
  started: string;
  /** Unique to this taking of the lock. */
  token: string;
}

const ATTEMPTS = 20;
const CLAIMS = 8;

/** The locks this process holds, by file: shared by every copy of this module in the process. */
const held: Map<string, LockRecord> = ((globalThis as Record<symbol, unknown>)[
  Symbol.for('syncguard.runLocks')
] ??= new Map<string, LockRecord>()) as Map<string, LockRecord>;

export async function acquireRunLock(
  stateDir: string,
  account: string,
  opts: { purpose?: LockPurpose } = {},
): Promise<RunLock> {
  const dir = join(stateDir, 'locks');
  const file = join(dir, `${account}.lock`);
  const mine = held.get(file);
  if (mine) {
    throw new SyncguardError('BUSY', `${what(mine, account)} is already running in this process`);
  }
  const record: LockRecord = {
    format: 'syncguard-lock',
    version: 1,
    account,
    purpose: opts.purpose ?? 'snapshot',
    ...thisProcess(),
    started: new Date().toISOString(),
    token: randomBytes(12).toString('hex'),
  };
  // Taken before the first await: a second taker in this process is refused above.
  held.set(file, record);
  const text = JSON.stringify(record) + '\n';
  const tmp = `${file}.${record.token}.tmp`;
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    // The lock appears whole or not at all: written beside it, then linked (or renamed) into place.
    await fsp.writeFile(tmp, text, { mode: 0o600 });
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (await linkNew(tmp, file)) return granted(file, text);
      const raw = await readText(file);
      if (raw === undefined) continue;
      const busy = await judge(raw, file, account);
      if (busy) throw busy;
      if (await takeOver(file, raw, tmp)) return granted(file, text);
      // Another process is taking the same stale lock over: look again once it has.
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
    }
    throw new SyncguardError(
      'BUSY',
      `could not take the run lock ${file}: other processes kept taking it; try again`,
    );
  } catch (e) {
    held.delete(file);
    throw e;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

function granted(file: string, text: string): RunLock {
  return {
    file,
    release: async () => {
      // Removed only while it is still ours.
      if ((await readText(file)) === text) await fsp.rm(file, { force: true });
      held.delete(file);
    },
  };
}

/** BUSY when the lock's holder may still run; undefined when the lock is stale. */
async function judge(raw: string, file: string, account: string): Promise<SyncguardError | undefined> {
  const r = parseLock(raw);
  if (r) {
    const since = `pid ${r.pid}, since ${r.started}`;
    switch (holderState(r)) {
      case 'gone':
      case 'self': // not in `held`: a lock this process failed to remove
        return undefined;
      case 'elsewhere':
        return new SyncguardError(
          'BUSY',
          `${what(r, account)} holds the run lock ${file} on host ${r.host} (${since}); if syncguard no longer runs there, delete ${file}`,
        );
      case 'alive':
        return busyHere(what(r, account), since, r.pid, file);
    }
  }
  // A lock of an older version: a bare pid. Written before this boot, its pid names another process.
  const legacy = /^(\d+)\s*$/.exec(raw);
  if (!legacy) return undefined;
  const pid = Number(legacy[1]);
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st || st.mtimeMs < bootTime() - 60_000) return undefined;
  const state = holderState({ ...thisProcess(), pid, startTime: undefined });
  if (state !== 'alive') return undefined;
  return busyHere(`a snapshot of "${account}"`, `pid ${pid}, since ${st.mtime.toISOString()}`, pid, file);
}

function busyHere(what: string, since: string, pid: number, file: string): SyncguardError {
  return new SyncguardError(
    'BUSY',
    `${what} is already running on this machine (${since}); if no syncguard process has pid ${pid}, delete ${file}`,
  );
}

function what(r: LockRecord, account: string): string {
  return r.purpose === 'prune' ? 'a prune of the store' : `a snapshot of "${account}"`;
}

function parseLock(raw: string): LockRecord | undefined {
  try {
    const r = JSON.parse(raw) as LockRecord;
    return r?.format === 'syncguard-lock' &&
      typeof r.host === 'string' &&
      Number.isSafeInteger(r.pid) &&
      r.pid > 0
      ? r
      : undefined;
  } catch {
    return undefined;
  }
}

/** Replaces the stale lock `raw` with ours (the file `tmp`), if no other taker does first. */
async function takeOver(file: string, raw: string, tmp: string): Promise<boolean> {
  const base = `${file}.takeover-${createHash('sha256').update(raw).digest('hex').slice(0, 16)}`;
  for (let n = 0; n < CLAIMS; n++) {
    const claim = `${base}-${n}`;
    if (await linkNew(tmp, claim)) {
      if ((await readText(file)) !== raw) {
        await fsp.rm(claim, { force: true });
        return false;
      }
      await fsp.rename(tmp, file);
      for (let i = 0; i <= n; i++) await fsp.rm(`${base}-${i}`, { force: true });
      return true;
    }
    const claimer = parseLock((await readText(claim)) ?? '');
    // Claimed by a live process (or its claim was just removed): it takes over, or already has.
    if (!claimer || holderState(claimer) === 'alive' || holderState(claimer) === 'elsewhere') return false;
  }
  return false;
}

async function linkNew(from: string, to: string): Promise<boolean> {
  try {
    await fsp.link(from, to);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
