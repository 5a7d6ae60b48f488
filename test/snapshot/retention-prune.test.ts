import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { promises as fsp } from 'node:fs';
import { isSyncguardError } from '../../src/errors.js';
import {
  accountRetention,
  extendKeptLocks,
  namedObjects,
  prune,
  readSnapshotLocks,
  type Policy,
} from '../../src/snapshot/retention.js';
import { Repository } from '../../src/snapshot/repository.js';
import { acknowledge } from '../../src/snapshot/tripwire.js';
import { faulty } from '../../src/store/faulty.js';
import type { Store } from '../../src/store/types.js';
import { DAY, HOUR, memoryRepo, snap, tempDir, withOverrides, writeFiles } from '../schedule/_helpers.js';

const none = { last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
const onlyNewest = new Map<string, Policy>([['docs', { keep: none, timeZone: 'UTC' }]]);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function objects(store: Store, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

/** Two snapshots a day apart: the second changes one large file (a blob) and one small one (packed). */
async function twoNights(opts: { lockDays?: number } = {}) {
  const m = memoryRepo({ lockDays: opts.lockDays ?? 1, packThreshold: 1024 });
  const root = await tempDir('prune');
  dirs.push(root);
  await writeFiles(root, {
    'big-a.bin': randomBytes(4000),
    'big-b.bin': randomBytes(4000),
    'small-1.txt': 'one',
    'small-2.txt': 'two',
  });
  const s1 = await snap(m.repo, root);
  m.clock.advance(DAY);
  await writeFiles(root, { 'big-a.bin': randomBytes(4000), 'small-1.txt': 'one, edited' });
  const s2 = await snap(m.repo, root);
  const named2 = await namedObjects(m.repo, s2.key);
  const unique1 = [...(await namedObjects(m.repo, s1.key))].filter((o) => !named2.has(o));
  return { ...m, root, s1, s2, named2, unique1 };
}

async function everyObjectOfEveryManifestExists(
  store: Store,
  repo: Parameters<typeof namedObjects>[0],
): Promise<void> {
  const all = new Set(await objects(store));
  for (const s of await repo.listSnapshots()) {
    for (const o of await namedObjects(repo, s.key))
      expect(all.has(o), `${s.key} names ${o}, which is gone`).toBe(true);
  }
}

describe('retention: prune', () => {
  it('removes a dropped snapshot and the objects only it named once their locks run out, and keeps what the kept one shares', async () => {
    const t = await twoNights();
    expect(t.unique1).toHaveLength(1);
    expect(t.unique1[0]).toMatch(/^blobs\//);
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const r = await prune(t.repo, { policies: onlyNewest, graceMs: 0 });
    expect(r.snapshots.map((s) => [s.id, s.action])).toEqual([
      [t.s1.id, 'remove'],
      [t.s2.id, 'keep'],
    ]);
    expect(r.objects.deleted.map((d) => d.key)).toEqual(t.unique1);
    const left = new Set(await objects(t.store));
    expect(left.has(t.s1.key)).toBe(false);
    for (const o of t.named2) expect(left.has(o)).toBe(true);
    await everyObjectOfEveryManifestExists(t.store, t.repo);
  });

  it('keeps a dropped snapshot, and everything it names, while its lock has not run out', async () => {
    const t = await twoNights({ lockDays: 3 });
    const r = await prune(t.repo, { policies: onlyNewest, graceMs: 0 });
    expect(r.snapshots[0]).toMatchObject({ id: t.s1.id, action: 'locked' });
    expect(r.snapshots[0].reasons[0]).toMatch(/locked until .*a prune after that removes it/);
    expect(r.objects.deleted).toEqual([]);
    expect(await t.store.head(t.unique1[0])).toBeDefined();
    // The store itself refuses too.
    await expect(t.store.delete(t.s1.key)).rejects.toMatchObject({ code: 'STORE_LOCKED' });
  });

  it('deletes an unreferenced object only after it has been seen unreferenced for the grace period', async () => {
    const t = await twoNights();
    const marksFile = join(t.root, '..', `marks-${randomBytes(4).toString('hex')}.json`);
    dirs.push(marksFile);
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const first = await prune(t.repo, { policies: onlyNewest, graceMs: 24 * HOUR, marksFile });
    expect(first.snapshots[0].action).toBe('remove');
    expect(first.objects).toMatchObject({ unreferenced: 1, waiting: 1, deleted: [] });
    expect(await t.store.head(t.unique1[0])).toBeDefined();
    t.clock.advance(23 * HOUR);
    expect(
      (await prune(t.repo, { policies: onlyNewest, graceMs: 24 * HOUR, marksFile })).objects.deleted,
    ).toEqual([]);
    t.clock.advance(2 * HOUR);
    const last = await prune(t.repo, { policies: onlyNewest, graceMs: 24 * HOUR, marksFile });
    expect(last.objects.deleted.map((d) => d.key)).toEqual(t.unique1);
  });

  it('never deletes new content no snapshot names yet: a run elsewhere may be about to name it', async () => {
    const t = await twoNights();
    const data = randomBytes(3000);
    const fresh = await t.repo.putBlob(createHash('sha256').update(data).digest('hex'), data, data.length);
    t.clock.advance(2 * DAY + HOUR); // its lock has run out; it was never named
    const marksFile = join(t.root, '..', `marks-${randomBytes(4).toString('hex')}.json`);
    dirs.push(marksFile);
    const r = await prune(t.repo, { policies: onlyNewest, graceMs: 24 * HOUR, marksFile });
    expect(r.objects.deleted.map((d) => d.key)).not.toContain(fresh.object);
    expect(r.objects.waiting).toBeGreaterThanOrEqual(1);
    expect(await t.store.head(fresh.object)).toBeDefined();
  });

  it('deletes a pack no kept snapshot names together with its index, the index first', async () => {
    const m = memoryRepo({ lockDays: 1, packThreshold: 1024 * 1024 });
    const deletes: string[] = [];
    const store = m.store;
    const recording = withOverrides(store, {
      delete: async (key: string) => {
        deletes.push(key);
        return store.delete(key);
      },
    });
    const repo = new Repository({ store: recording, lockDays: 1, now: m.clock.now });
    const root = await tempDir('prune-pack');
    dirs.push(root);
    await writeFiles(root, { 'a.txt': 'first night', 'b.txt': 'also first night' });
    const s1 = await snap(repo, root);
    m.clock.advance(DAY);
    await fsp.rm(join(root, 'a.txt'));
    await fsp.rm(join(root, 'b.txt'));
    await writeFiles(root, { 'c.txt': 'second night' });
    await snap(repo, root);
    m.clock.advance(DAY + HOUR);
    const [pack1] = [...(await namedObjects(repo, s1.key))];
    const r = await prune(repo, { policies: onlyNewest, graceMs: 0 });
    const idx1 = pack1.replace(/\.pack$/, '.idx');
    expect(r.objects.deleted.map((d) => d.key).sort()).toEqual([idx1, pack1].sort());
    expect(deletes.filter((k) => k.startsWith('packs/'))).toEqual([idx1, pack1]);
    expect(await objects(store, 'packs/')).toHaveLength(2);
  });

  it('prunes nothing of an account whose tripwire fired until someone acknowledges it', async () => {
    const m = memoryRepo({ lockDays: 1 });
    const root = await tempDir('prune-trip');
    dirs.push(root);
    await writeFiles(root, { 'a.txt': 'a' });
    await snap(m.repo, root);
    m.clock.advance(DAY);
    await writeFiles(root, { 'a.txt': 'encrypted, say' });
    const fired = await snap(m.repo, root, 'docs', {
      inspect: () => ({ fired: true, reasons: ['a test says so'] }),
    });
    m.clock.advance(DAY);
    await writeFiles(root, { 'a.txt': 'later' });
    await snap(m.repo, root);
    m.clock.advance(2 * DAY);
    const blocked = await prune(m.repo, { policies: onlyNewest, graceMs: 0 });
    expect(blocked.blocked).toEqual([
      {
        account: 'docs',
        fired: [{ id: fired.id, time: fired.time.toISOString(), reasons: ['a test says so'] }],
      },
    ]);
    expect(blocked.snapshots.every((s) => s.action === 'keep')).toBe(true);
    expect(await m.repo.listSnapshots('docs')).toHaveLength(3);

    const state = (await accountRetention(m.repo, 'docs', onlyNewest.get('docs'), undefined)).tripwire;
    expect(state.tripped).toBe(true);
    m.clock.advance(1000);
    expect(await acknowledge(m.repo, 'docs', state)).toBeDefined();
    // While it was blocked, every snapshot was kept, and kept locked: they age out from now on.
    const after = await prune(m.repo, { policies: onlyNewest, graceMs: 0 });
    expect(after.blocked).toEqual([]);
    expect(after.snapshots.map((s) => s.action)).toEqual(['locked', 'locked', 'keep']);
    m.clock.advance(3 * DAY);
    const later = await prune(m.repo, { policies: onlyNewest, graceMs: 0 });
    expect(later.snapshots.map((s) => s.action)).toEqual(['remove', 'remove', 'keep']);
    expect(await m.repo.listSnapshots('docs')).toHaveLength(1);
    // A second acknowledgement has nothing to acknowledge.
    expect(
      await acknowledge(
        m.repo,
        'docs',
        (await accountRetention(m.repo, 'docs', onlyNewest.get('docs'))).tripwire,
      ),
    ).toBeUndefined();
  });

  it('keeps every snapshot of an account that is not in the config', async () => {
    const t = await twoNights();
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const r = await prune(t.repo, { policies: new Map([['other', { keep: none }]]), graceMs: 0 });
    expect(r.snapshots.map((s) => s.action)).toEqual(['keep', 'keep']);
    expect(r.snapshots[0].reasons).toEqual(['the account is not in the config']);
    expect(r.objects.deleted).toEqual([]);
  });

  it('in a dry run says what it would remove, and removes nothing', async () => {
    const t = await twoNights();
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const before = await objects(t.store);
    const r = await prune(t.repo, { policies: onlyNewest, graceMs: 0, dryRun: true });
    expect(r.dryRun).toBe(true);
    expect(r.snapshots.map((s) => s.action)).toEqual(['remove', 'keep']);
    expect(r.objects.deleted.map((d) => d.key)).toEqual(t.unique1);
    expect(await objects(t.store)).toEqual(before);
  });

  it('deletes no object when a remaining manifest cannot be read', async () => {
    const t = await twoNights();
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const broken = faulty(t.store, { op: 'get', key: t.s2.key, corrupt: true });
    const repo = new Repository({ store: broken, lockDays: 1, now: t.clock.now });
    const before = (await objects(t.store)).filter((k) => !k.startsWith('snapshots/'));
    const err = await prune(repo, { policies: onlyNewest, graceMs: 0 }).catch((e: unknown) => e);
    expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
    expect((await objects(t.store)).filter((k) => !k.startsWith('snapshots/'))).toEqual(before);
  });

  it('leaves a consistent store when it stops half-way, and the next prune finishes the work', async () => {
    const t = await twoNights();
    t.clock.advance(DAY + HOUR); // s1 was locked for a day and a day of slack
    const flaky = faulty(t.store, { op: 'delete', nth: 2, error: () => new Error('the machine went down') });
    const repo = new Repository({ store: flaky, lockDays: 1, now: t.clock.now });
    await expect(prune(repo, { policies: onlyNewest, graceMs: 0 })).rejects.toThrow(/went down/);
    await everyObjectOfEveryManifestExists(t.store, t.repo);
    const again = await prune(t.repo, { policies: onlyNewest, graceMs: 0 });
    expect(again.objects.deleted.map((d) => d.key)).toEqual(t.unique1);
    expect(await objects(t.store, 'blobs/')).not.toContain(t.unique1[0]);
    await everyObjectOfEveryManifestExists(t.store, t.repo);
    expect((await prune(t.repo, { policies: onlyNewest, graceMs: 0 })).objects.unreferenced).toBe(0);
  });
});

describe('retention: lock lifetimes', () => {
  it('extends the locks of kept snapshots before they run out, objects first, and not those of dropped ones', async () => {
    const t = await twoNights();
    // s2 names objects s1 wrote, locked until tomorrow: less than the lock time (a day) ahead.
    t.clock.advance(20 * HOUR);
    const policy: Policy = { keep: { ...none, last: 1 }, timeZone: 'UTC' };
    const r = await accountRetention(t.repo, 'docs', policy);
    expect([...r.kept.keys()]).toEqual([t.s2.id]);
    const ext = await extendKeptLocks(t.repo, r);
    const until = t.clock.t + 2 * DAY; // the lock time and a day of slack
    expect(ext).toEqual({
      account: 'docs',
      snapshots: [t.s2.id],
      objects: t.named2.size,
      until: new Date(until).toISOString(),
    });
    for (const o of [...t.named2, t.s2.key])
      expect((await t.store.head(o))!.retainUntil!.getTime()).toBeGreaterThanOrEqual(until);
    for (const o of t.unique1) expect((await t.store.head(o))!.retainUntil!.getTime()).toBeLessThan(until);
    // The horizon reads back from the manifest's own retention.
    const locks = await readSnapshotLocks(t.repo, 'docs');
    expect(locks.find((s) => s.id === t.s2.id)!.lockedUntil!.getTime()).toBe(until);
    expect(Date.parse(locks.find((s) => s.id === t.s2.id)!.header.lockedUntil!)).toBeLessThan(until);
    // Done: the next run an hour later has nothing to do.
    t.clock.advance(HOUR);
    expect((await extendKeptLocks(t.repo, await accountRetention(t.repo, 'docs', policy))).snapshots).toEqual(
      [],
    );
  });

  it('says which snapshot is damaged when an object it names is missing', async () => {
    const t = await twoNights();
    t.clock.advance(3 * DAY);
    const victim = [...t.named2].find((o) => o.startsWith('blobs/'))!;
    await t.store.delete(victim);
    const r = await accountRetention(t.repo, 'docs', { keep: { ...none, last: 1 } });
    await expect(extendKeptLocks(t.repo, r)).rejects.toThrow(
      new RegExp(`snapshot ${t.s2.id} of "docs" names ${victim}, which is missing.*syncguard verify docs`),
    );
  });
});
