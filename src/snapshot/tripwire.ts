/**
 * The ransomware tripwire. Each run compares what changed with what is normal: ransomware rewrites
 * most files at once, with content that no longer compresses, often under a new extension, and leaves
 * a note in every folder. When it fires, the snapshot is still taken and kept, marked in its manifest,
 * and pruning of that account stops until a person acknowledges it (`syncguard ack <account>`), which
 * writes a small record to the store, so that every machine sees the same state.
 */
import { deflateRawSync } from 'node:zlib';
import { hostname, userInfo } from 'node:os';
import { createHash } from 'node:crypto';
import picomatch from 'picomatch';
import type { TripwireConfig } from '../config/schema.js';
import { SyncguardError, isSyncguardError } from '../errors.js';
import { showPath } from '../paths.js';
import { readAll, type Store } from '../store/types.js';
import { readJsonObject } from './untrusted.js';
import { ackKey, ackPrefix, parseAckKey, snapshotId, timeOfSnapshotId } from './layout.js';
import type { ManifestEntry, ManifestHeader } from './manifest.js';
import { datedAhead, type Repository } from './repository.js';
import { forEachLimit } from '../util.js';
import type { InspectInput } from './take.js';

const SAMPLE = 4096;
/** Below this, a sample says little about whether it is encrypted. */
const MIN_SAMPLE = 512;

/** File names ransomware leaves as notes (matched against the name, not the folder). */
const NOTE_NAMES: RegExp[] = [
  /(^|[^a-z])decrypt/i,
  /(restore|recover|unlock|return)[-_ ]?(my|your|all|the)?[-_ ]?(files|data|documents)/i,
  /your[-_ ]?(files|data|documents)[-_ ]?(are|were|have[-_ ]?been)?[-_ ]?(encrypted|locked|stolen)/i,
  /ransom/i,
  /^_readme\.txt$/i,
  /^!+[-_ ]?read[-_ ]?me[-_ ]?!+/i,
];
const NOTE_EXTENSIONS = new Set(['', 'txt', 'html', 'htm', 'hta', 'rtf', 'url', 'md', 'png', 'bmp']);

export interface TripwireAnalysis {
  fired: boolean;
  reasons: string[];
  /** Files in the previous snapshot, and in this one. */
  previousFiles: number;
  files: number;
  modified: number;
  deleted: number;
  /** Files that reappeared under another extension. */
  renamed: number;
  added: number;
  /** New files named like ransom notes (at most 20 shown). */
  ransomNotes: string[];
  /** Changed files whose old and new first bytes were compared; of those, the ones whose old content
   *  compressed (judged), and of those the ones whose new content does not (encrypted). */
  sampled: number;
  judged: number;
  encrypted: number;
}

export interface Tripwire {
  /** For takeSnapshot's `inspect`. */
  inspect(input: InspectInput): Promise<ManifestHeader['tripwire']>;
  /** The last analysis, for the run report. */
  analysis(): TripwireAnalysis | undefined;
}

/** A tripwire that reads old versions' first bytes from `store` (one ranged GET each). */
export function createTripwire(
  settings: TripwireConfig,
  store: Pick<Store, 'get'>,
  signal?: AbortSignal,
): Tripwire {
  let last: TripwireAnalysis | undefined;
  return {
    async inspect(input) {
      last = await analyse(input, settings, (e) => readOldSample(store, e, signal));
      return last.fired ? { fired: true, reasons: last.reasons } : undefined;
    },
    analysis: () => last,
  };
}

async function readOldSample(
  store: Pick<Store, 'get'>,
  e: ManifestEntry,
  signal?: AbortSignal,
): Promise<Buffer | undefined> {
  if (!e.object || e.size === 0) return undefined;
  const length = Math.min(SAMPLE, e.size);
  try {
    return await readAll(store, e.object, { offset: e.offset ?? 0, length, signal });
  } catch (err) {
    if (isSyncguardError(err, 'ABORTED')) throw err;
    return undefined;
  }
}

/** Compares a new snapshot with the previous one. `readOld` gives the first bytes of an old version. */
export async function analyse(
  input: InspectInput,
  settings: TripwireConfig,
  readOld: (e: ManifestEntry) => Promise<Buffer | undefined>,
): Promise<TripwireAnalysis> {
  const prevFiles: ManifestEntry[] = [];
  for (const e of input.previous?.values() ?? []) if (e.type === 'file') prevFiles.push(e);
  const next = new Map<string, ManifestEntry>();
  for (const e of input.next) if (e.type === 'file') next.set(e.path, e);
  const nextShas = new Set<string>();
  for (const e of next.values()) nextShas.add(e.sha256!);

  const prevPaths = new Set(prevFiles.map((e) => e.path));
  const added = [...next.values()].filter((e) => !prevPaths.has(e.path));
  // Where an old file could have reappeared: the same path plus an extension, or the same stem.
  const addedByPath = new Map<string, ManifestEntry>();
  const addedByStem = new Map<string, ManifestEntry>();
  for (const e of added) {
    const { dir, stem } = splitName(e.path);
    const dot = e.path.lastIndexOf('.');
    if (dot > e.path.lastIndexOf('/') + 1) addedByPath.set(e.path.slice(0, dot), e);
    addedByStem.set(dir + stem, e);
  }

  const changed: Array<{ before: ManifestEntry; after: ManifestEntry }> = [];
  let modified = 0,
    deleted = 0,
    renamed = 0;
  const newExtensions = new Map<string, number>();
  for (const before of prevFiles) {
    const after = next.get(before.path);
    if (after) {
      if (after.sha256 !== before.sha256) {
        modified++;
        changed.push({ before, after });
      }
      continue;
    }
    const { dir, stem, ext } = splitName(before.path);
    const moved = addedByPath.get(before.path) ?? addedByStem.get(dir + stem);
    if (moved && splitName(moved.path).ext !== ext) {
      renamed++;
      const to = splitName(moved.path).ext;
      newExtensions.set(to, (newExtensions.get(to) ?? 0) + 1);
      if (moved.sha256 !== before.sha256) changed.push({ before, after: moved });
    } else if (!nextShas.has(before.sha256!)) {
      deleted++;
    }
  }

  const reasons: string[] = [];
  const n = prevFiles.length;
  // An empty snapshot after a non-empty one is what a listing that lost its way looks like (every item
  // orphaned, a drive swapped under the account) as much as a wiped account: never without an alarm,
  // whatever the account's size.
  if (n > 0 && next.size === 0)
    reasons.push(
      `the snapshot holds no files while the previous one held ${n}: check the account's source before you acknowledge (\`syncguard ack\`)`,
    );
  if (n >= settings.minFiles && n > 0) {
    const share = (k: number, limit: number, what: string) => {
      if (k > 0 && k / n >= limit)
        reasons.push(`${pct(k / n)} of the files ${what} (${k} of ${n}; the threshold is ${pct(limit)})`);
    };
    share(modified, settings.modified, 'changed content');
    share(deleted, settings.deleted, 'were deleted');
    if (renamed > 0 && renamed / n >= settings.renamed) {
      const top = [...newExtensions]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([e, k]) => `${e ? '.' + e : 'no extension'}: ${k}`)
        .join(', ');
      reasons.push(
        `${pct(renamed / n)} of the files reappeared under another extension (${renamed} of ${n}: ${top}; the threshold is ${pct(settings.renamed)})`,
      );
    }
  }

  // On a first snapshot every file is new: there is no change to judge a name by.
  const extra = settings.ransomNotes.length
    ? picomatch(settings.ransomNotes, { nocase: true, dot: true, basename: true })
    : undefined;
  const notes = input.previous
    ? added.filter((e) => isRansomNote(e.path) || (extra?.(e.path) ?? false)).map((e) => e.path)
    : [];
  if (notes.length > 0) {
    const folders = new Set(notes.map((p) => splitName(p).dir)).size;
    reasons.push(
      `${notes.length} new file${notes.length > 1 ? 's' : ''} named like a ransom note, such as ${showPath(notes[0])}${folders > 1 ? ` (in ${folders} folders)` : ''}`,
    );
  }

  // Content that no longer compresses where it did: look at an even spread of the changed files.
  let sampled = 0,
    judged = 0,
    encrypted = 0;
  const picks = spread(
    changed.sort((a, b) => (a.after.path < b.after.path ? -1 : 1)),
    settings.samples,
  );
  await forEachLimit(picks, 8, async ({ before, after }) => {
    const fresh = input.sample(after.path);
    if (!fresh || fresh.length < MIN_SAMPLE || before.size < MIN_SAMPLE) return;
    const old = await readOld(before);
    if (!old || old.length < MIN_SAMPLE) return;
    sampled++;
    if (looksRandom(old)) return;
    judged++;
    if (looksRandom(fresh)) encrypted++;
  });
  if (encrypted >= settings.encrypted && judged > 0 && encrypted / judged >= settings.encryptedShare) {
    reasons.push(
      `${encrypted} changed files now look encrypted (their content no longer compresses; it did before), ${pct(encrypted / judged)} of the ${judged} looked at`,
    );
  }

  return {
    fired: reasons.length > 0 && settings.enabled,
    reasons,
    previousFiles: n,
    files: next.size,
    modified,
    deleted,
    renamed,
    added: added.length,
    ransomNotes: notes.slice(0, 20),
    sampled,
    judged,
    encrypted,
  };
}

export function isRansomNote(path: string): boolean {
  const name = path.slice(path.lastIndexOf('/') + 1);
  if (!NOTE_EXTENSIONS.has(splitName(name).ext)) return false;
  return NOTE_NAMES.some((re) => re.test(name));
}

/** Whether bytes look like ciphertext (or other already-compressed data): they do not compress, and
 *  every byte value is about as likely. */
export function looksRandom(buf: Buffer): boolean {
  if (buf.length === 0) return false;
  const ratio = deflateRawSync(buf, { level: 6 }).length / buf.length;
  return ratio > 0.95 && entropy(buf) > 7;
}

/** Shannon entropy in bits per byte. */
export function entropy(buf: Buffer): number {
  const counts = new Array<number>(256).fill(0);
  for (const b of buf) counts[b]++;
  let h = 0;
  for (const c of counts)
    if (c > 0) {
      const p = c / buf.length;
      h -= p * Math.log2(p);
    }
  return h;
}

function splitName(path: string): { dir: string; stem: string; ext: string } {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const first = name.indexOf('.', 1);
  const last = name.lastIndexOf('.');
  return {
    dir,
    stem: first > 0 ? name.slice(0, first) : name,
    ext: last > 0 ? name.slice(last + 1).toLowerCase() : '',
  };
}

function spread<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  if (n <= 0) return [];
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]);
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

// ---- the state: fired, and not yet acknowledged ----

export interface TripwireState {
  /** A snapshot's tripwire fired after the last acknowledgement: pruning of the account stops. */
  tripped: boolean;
  /** Those snapshots, oldest first. */
  fired: Array<{ id: string; time: string; reasons: string[] }>;
  /** When the tripwire was last acknowledged. */
  acknowledged?: string;
}

export interface AckRecord {
  format: 'syncguard-ack';
  version: 1;
  account: string;
  time: string;
  /** Who ran `syncguard ack`, and where (a user name and a host name, nothing secret). */
  by: string;
  host: string;
  /** The newest snapshot acknowledged: the ack holds for it and the snapshots before it. */
  snapshot: string;
  acknowledged: Array<{ id: string; reasons: string[] }>;
  note?: string;
}

/** An acknowledgement read back from the store and found sound. */
export interface Ack {
  key: string;
  /** When it was written (its key's time). */
  time: Date;
  /** The newest snapshot it acknowledges: it holds for that one and the ones before it, no later. */
  upTo: string;
}

/** An ack is a small JSON record; anything larger is not one of ours. */
const MAX_ACK_BYTES = 256 * 1024;

/**
 * The acknowledgements of an account that can be trusted, oldest first. The store's keys are not
 * enough: whoever can write the store can create any key (`acks/<account>/99991231T235959.999Z.json`,
 * empty). An ack is used only when its record is well formed, belongs to the account, carries its
 * key's time, names the snapshot it acknowledges (taken before it), and is not dated after `now` (plus
 * a few minutes of clock skew). Any other is ignored with a warning.
 */
export async function listAcks(
  repo: Repository,
  account: string,
  signal?: AbortSignal,
  now: Date = repo.now(),
): Promise<Ack[]> {
  const out: Ack[] = [];
  for await (const o of repo.store.list(ackPrefix(account), signal)) {
    const p = parseAckKey(o.key);
    if (!p || p.account !== account) continue;
    const why = await ackProblem(repo, o.key, o.size, p.time, account, now, signal).catch((e: unknown) => {
      if (isSyncguardError(e, 'ABORTED')) throw e;
      return `it cannot be read (${e instanceof Error ? e.message : String(e)})`;
    });
    if (typeof why === 'string') {
      repo.log('warn', `the acknowledgement ${o.key} is ignored: ${why}`);
      continue;
    }
    out.push({ key: o.key, time: p.time, upTo: why.upTo });
  }
  return out.sort((a, b) => a.time.getTime() - b.time.getTime());
}

async function ackProblem(
  repo: Repository,
  key: string,
  size: number,
  time: Date,
  account: string,
  now: Date,
  signal?: AbortSignal,
): Promise<string | { upTo: string }> {
  const ahead = datedAhead(time, now);
  if (ahead) return ahead;
  let r: Partial<AckRecord>;
  try {
    r = await readJsonObject(repo.store, key, {
      size,
      maxBytes: MAX_ACK_BYTES,
      signal,
    });
  } catch (e) {
    if (!isSyncguardError(e, 'INTEGRITY')) throw e;
    return e.message;
  }
  if (r.format !== 'syncguard-ack' || r.version !== 1) return 'it is not a syncguard acknowledgement record';
  if (r.account !== account) return `it names the account ${JSON.stringify(r.account)}`;
  if (typeof r.time !== 'string' || Date.parse(r.time) !== time.getTime())
    return "its time is not its key's time";
  const ids = Array.isArray(r.acknowledged)
    ? r.acknowledged.map((a) => (a && typeof a === 'object' ? a.id : undefined))
    : [];
  const upTo =
    r.snapshot ??
    ids
      .filter((id): id is string => typeof id === 'string')
      .sort()
      .pop();
  const upToTime = typeof upTo === 'string' ? timeOfSnapshotId(upTo) : undefined;
  if (!upTo || !upToTime || snapshotId(upToTime) !== upTo) return 'it names no snapshot it acknowledges';
  if (upToTime > time) return `it acknowledges ${upTo}, a snapshot taken after it was written`;
  return { upTo };
}

/**
 * Which fired snapshots no trusted acknowledgement covers. An ack covers a snapshot it names or one
 * before it (by id), and only when the snapshot had finished when the ack was written: one still
 * running then was not seen by the person. A later firing is never covered by an earlier ack.
 */
export function tripwireState(
  snapshots: Array<{ id: string; time: Date; header: ManifestHeader }>,
  acks: Ack[] = [],
): TripwireState {
  const covered = (s: { id: string; time: Date; header: ManifestHeader }) =>
    acks.some((a) => s.id <= a.upTo && finished(s) <= a.time.getTime());
  const fired = snapshots
    .filter((s) => s.header.tripwire?.fired && !covered(s))
    .map((s) => ({ id: s.id, time: s.time.toISOString(), reasons: s.header.tripwire!.reasons }));
  const last = acks[acks.length - 1];
  return { tripped: fired.length > 0, fired, acknowledged: last?.time.toISOString() };
}

function finished(s: { time: Date; header: ManifestHeader }): number {
  const t = Date.parse(s.header.finished);
  return Number.isNaN(t) ? s.time.getTime() : t;
}

/** `syncguard ack`: writes an acknowledgement of the fired snapshots (locked as everything else is).
 *  Returns undefined, and writes nothing, when nothing is waiting for one. */
export async function acknowledge(
  repo: Repository,
  account: string,
  state: TripwireState,
  opts: { note?: string; signal?: AbortSignal } = {},
): Promise<{ key: string; record: AckRecord } | undefined> {
  if (!state.tripped) return undefined;
  const time = repo.now();
  const record: AckRecord = {
    format: 'syncguard-ack',
    version: 1,
    account,
    time: time.toISOString(),
    by: userName(),
    host: hostname(),
    snapshot: state.fired.map((f) => f.id).sort()[state.fired.length - 1],
    acknowledged: state.fired.map((f) => ({ id: f.id, reasons: f.reasons })),
    ...(opts.note ? { note: opts.note } : {}),
  };
  const body = Buffer.from(JSON.stringify(record, null, 2) + '\n');
  const key = ackKey(account, time);
  try {
    await repo.store.put(key, body, {
      sha256: createHash('sha256').update(body).digest('hex'),
      size: body.length,
      retainUntil: repo.retainUntil(),
      signal: opts.signal,
    });
  } catch (e) {
    if (isSyncguardError(e, 'STORE_CONFLICT'))
      throw new SyncguardError(
        'STORE_CONFLICT',
        `another acknowledgement of "${account}" was written at the same moment; run \`syncguard status ${account}\` to see the state`,
      );
    throw e;
  }
  return { key, record };
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}
