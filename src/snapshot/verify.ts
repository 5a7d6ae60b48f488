/** verify: re-read stored content and check every hash, for all kept snapshots or a sample. */
import { createHash, randomInt } from 'node:crypto';
import { describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import { showPath } from '../paths.js';
import { blobSha } from './layout.js';
import {
  blobVersionHolds,
  checkBuffer,
  olderVersionThatHolds,
  plantedVersion,
  readPackSpanChecked,
} from './content.js';
import type { StoredVersion } from '../store/types.js';
import type { ManifestEntry } from './manifest.js';
import { datedAhead, type Repository } from './repository.js';
import { forEachLimit } from '../util.js';

export interface VerifyProblem {
  /** The object, or the manifest, that is missing or damaged. */
  object: string;
  problem: string;
  /** A file that needs it, and the snapshot it is in. */
  path?: string;
  snapshot?: string;
  /** Every snapshot that names the damaged content (or object): each restores it wrong or not at all.
   *  The next snapshot stores that content again instead of reusing it. */
  snapshots?: string[];
}

export interface VerifyResult {
  snapshots: number;
  objects: number;
  objectsChecked: number;
  bytesChecked: number;
  contentsChecked: number;
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  account?: string;
  /** Check this share of the objects, chosen at random (default 100). */
  samplePercent?: number;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: { objectsChecked: number; objects: number; bytesChecked: number }) => void;
}

export async function verify(repo: Repository, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const { signal } = opts;
  const snaps = await repo.listSnapshots(opts.account, signal);
  const problems: VerifyProblem[] = [];
  const now = repo.now();
  for (const s of snaps) {
    const ahead = datedAhead(s.time, now);
    if (ahead)
      problems.push({
        object: s.key,
        problem: `${ahead}; no run builds on it. Look at it, and delete it once its lock allows if nobody here wrote it`,
        snapshot: s.key,
      });
  }
  // object → the distinct contents (by offset) that kept manifests need from it, and who names each
  const needed = new Map<string, Map<number, ManifestEntry & { snapshot: string; snapshots: string[] }>>();
  for (const s of snaps) {
    try {
      const m = await repo.readManifest(s.key, signal);
      for await (const e of m.entries) {
        if (e.type !== 'file') continue;
        const byOffset = needed.get(e.object!) ?? needed.set(e.object!, new Map()).get(e.object!)!;
        const held = byOffset.get(e.offset ?? -1);
        if (!held) byOffset.set(e.offset ?? -1, { ...e, snapshot: s.key, snapshots: [s.key] });
        else if (held.snapshots[held.snapshots.length - 1] !== s.key) held.snapshots.push(s.key);
      }
      for (const u of m.unsafe)
        problems.push({
          object: s.key,
          problem: `names an unsafe path ${showPath(u.path)}`,
          snapshot: s.key,
        });
    } catch (e) {
      if (isSyncguardError(e, 'ABORTED')) throw e;
      problems.push({ object: s.key, problem: `manifest unreadable: ${describeError(e)}`, snapshot: s.key });
    }
  }
  let objects = [...needed.keys()];
  const total = objects.length;
  const pct = Math.min(100, Math.max(0, opts.samplePercent ?? 100));
  if (pct < 100) {
    const want = Math.max(total > 0 ? 1 : 0, Math.ceil((total * pct) / 100));
    for (let i = objects.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [objects[i], objects[j]] = [objects[j], objects[i]];
    }
    objects = objects.slice(0, want);
  }
  const result: VerifyResult = {
    snapshots: snaps.length,
    objects: total,
    objectsChecked: 0,
    bytesChecked: 0,
    contentsChecked: 0,
    problems,
  };
  const damaged = await repo.damagedLocations();
  const damage = (
    object: string,
    offset: number | undefined,
    e: ManifestEntry & { snapshot: string },
    problem: string,
    snapshots: string[],
  ) => {
    problems.push({ object, problem, path: e.path, snapshot: e.snapshot, snapshots });
    damaged.add({ object, offset, sha256: e.sha256, found: repo.now().toISOString(), problem });
  };
  await forEachLimit(objects, opts.concurrency ?? 4, async (object) => {
    throwIfAborted(signal);
    const contents = [...needed.get(object)!.values()];
    const first = contents[0];
    try {
      const sha = blobSha(object);
      if (sha) {
        const hash = createHash('sha256');
        let n = 0;
        for await (const c of await repo.store.get(object, { signal })) {
          hash.update(c as Buffer);
          n += (c as Buffer).length;
        }
        result.bytesChecked += n;
        if (hash.digest('hex') !== sha) {
          const older = await olderVersionThatHolds(
            repo.store,
            object,
            (vid) => blobVersionHolds(repo.store, object, sha, first.size, vid, signal),
            repo.log,
            signal,
          );
          if (older) problems.push(planted(object, older, first, contents));
          else damage(object, undefined, first, 'content does not match its hash', allSnapshots(contents));
        } else if (n !== first.size)
          problems.push({
            object,
            problem: `is ${n} bytes, the manifest says ${first.size}`,
            path: first.path,
            snapshot: first.snapshot,
          });
        result.contentsChecked++;
      } else {
        const span = await readPackSpanChecked(repo.store, object, contents, repo.log, signal);
        if (span.planted) problems.push(planted(object, span.planted, first, contents));
        result.bytesChecked += span.data.length;
        for (const e of contents) {
          try {
            checkBuffer(
              span.data.subarray(e.offset! - span.start, e.offset! - span.start + e.size),
              e.sha256!,
              showPath(e.path),
            );
          } catch {
            damage(object, e.offset, e, `content at offset ${e.offset} does not match its hash`, e.snapshots);
          }
          result.contentsChecked++;
        }
      }
    } catch (e) {
      if (isSyncguardError(e, 'ABORTED') || isSyncguardError(e, 'STORE_AUTH')) throw e;
      const problem = isSyncguardError(e, 'NOT_FOUND') ? 'missing from the store' : describeError(e);
      if (isSyncguardError(e, 'NOT_FOUND') || isSyncguardError(e, 'INTEGRITY'))
        damage(object, undefined, first, problem, allSnapshots(contents));
      else problems.push({ object, problem, path: first.path, snapshot: first.snapshot });
    }
    result.objectsChecked++;
    opts.onProgress?.({
      objectsChecked: result.objectsChecked,
      objects: objects.length,
      bytesChecked: result.bytesChecked,
    });
  });
  await damaged.save();
  return result;
}

/** A problem for a person to see, not damage: the content is whole in an older version, which restore
 *  uses, but someone wrote a newer version over the key. */
function planted(
  object: string,
  v: StoredVersion,
  e: ManifestEntry & { snapshot: string },
  contents: Array<{ snapshots: string[] }>,
) {
  return {
    object,
    problem: `${plantedVersion(object, v)}; restore uses that version`,
    path: e.path,
    snapshot: e.snapshot,
    snapshots: allSnapshots(contents),
  };
}

function allSnapshots(contents: Array<{ snapshots: string[] }>): string[] {
  return [...new Set(contents.flatMap((c) => c.snapshots))].sort();
}
