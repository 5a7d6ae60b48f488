import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { describeError, isSyncguardError, type ErrorCode } from '../../src/errors.js';
import { readAll, type ObjectInfo, type Store } from '../../src/store/types.js';

/**
 * What every store must do (unstorage-style: one suite, every driver). `make` returns an empty store,
 * prepared as `syncguard init` leaves it; each test writes under its own keys. Stores with features.objectLock also show
 * that retention refuses a delete; expiry takes real time and is tested per store.
 */

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A stream of `bytes` in chunks of `chunk` bytes, made on demand (never held whole). */
export function streamOf(bytes: Buffer, chunk = 64 * 1024): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= bytes.length) return void this.push(null);
      this.push(bytes.subarray(at, at + chunk));
      at += chunk;
    },
  });
}

export async function collectList(store: Store, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

export async function expectCode(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isSyncguardError(err))
    throw new Error(
      `expected a SyncguardError ${code}, got ${err === undefined ? 'success' : describeError(err)}`,
    );
  expect(err.code, err.message).toBe(code);
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** Larger than one 5 MiB part, so an S3 store with partSize 5 MiB uploads it in parts. */
const LARGE = 5 * 1024 * 1024 + 123_457;
const DAY = 86_400_000;

export interface StoreSuiteOptions {
  /** Two puts of one key racing each other: exactly one wins (default). false for a server that
   *  cannot decide it (Ceph RGW ignores If-None-Match in versioned buckets): both may succeed. */
  atomicCreate?: boolean;
  /** Run the test that lists more than a thousand keys (default). A second configuration of the
   *  same store, listing through the same code, can leave it out to keep the suite quick. */
  manyKeys?: boolean;
  /** Writes the thousand keys of the listing test (default: store.put, 32 at a time). A store
   *  whose put makes more than one request per key can seed them more cheaply: the test is about
   *  listing, and every other test writes through put. */
  seed?: (store: Store, keys: string[]) => Promise<void>;
}

export function storeSuite(name: string, make: () => Promise<Store>, opts: StoreSuiteOptions = {}): void {
  describe(`store suite: ${name}`, () => {
    it('stores a Buffer and gives the same bytes back, with its size', async () => {
      const store = await make();
      const data = randomBytes(10_000);
      await store.put('blobs/sha256/ab/abc', data, { sha256: sha(data), size: data.length });
      expect((await readAll(store, 'blobs/sha256/ab/abc')).equals(data)).toBe(true);
      const info = await store.head('blobs/sha256/ab/abc');
      expect(info).toMatchObject({ key: 'blobs/sha256/ab/abc', size: 10_000 });
      expect(info!.retainUntil).toBeUndefined();
    });

    it('stores an empty object', async () => {
      const store = await make();
      await store.put('empty', Buffer.alloc(0), { sha256: sha(Buffer.alloc(0)) });
      expect(await store.head('empty')).toMatchObject({ size: 0 });
      expect((await readAll(store, 'empty')).length).toBe(0);
      await store.put('empty-stream', Readable.from([]), { size: 0 });
      expect(await store.head('empty-stream')).toMatchObject({ size: 0 });
    });

    it('stores a stream body larger than one upload part, with its sha256 checked', async () => {
      const store = await make();
      const data = randomBytes(LARGE);
      await store.put('blobs/large', streamOf(data), { sha256: sha(data), size: data.length });
      expect(await store.head('blobs/large')).toMatchObject({ size: LARGE });
      expect(sha(await readAll(store, 'blobs/large'))).toBe(sha(data));
    });

    it('reports a missing key: head undefined, get NOT_FOUND', async () => {
      const store = await make();
      expect(await store.head('nothing/here')).toBeUndefined();
      await expectCode(store.get('nothing/here'), 'NOT_FOUND');
      await expectCode(store.get('nothing/here', { offset: 0, length: 0 }), 'NOT_FOUND');
      await expectCode(store.extendRetention('nothing/here', new Date(Date.now() + DAY)), 'NOT_FOUND');
    });

    it('reads byte ranges, and refuses a range beyond the end as INTEGRITY', async () => {
      const store = await make();
      const data = Buffer.from('0123456789abcdefghij');
      await store.put('packs/p1.pack', data);
      expect((await readAll(store, 'packs/p1.pack', { offset: 5, length: 4 })).toString()).toBe('5678');
      expect((await readAll(store, 'packs/p1.pack', { offset: 0, length: 1 })).toString()).toBe('0');
      expect((await readAll(store, 'packs/p1.pack', { offset: 16 })).toString()).toBe('ghij');
      expect((await readAll(store, 'packs/p1.pack', { offset: 19, length: 1 })).toString()).toBe('j');
      expect((await readAll(store, 'packs/p1.pack', { offset: 7, length: 0 })).length).toBe(0);
      expect((await readAll(store, 'packs/p1.pack', { offset: 20 })).length).toBe(0);
      await expectCode(store.get('packs/p1.pack', { offset: 18, length: 5 }), 'INTEGRITY', /20 bytes/);
      await expectCode(store.get('packs/p1.pack', { offset: 25 }), 'INTEGRITY');
    });

    it('writes once: a second put of a key is STORE_CONFLICT and leaves the first content', async () => {
      const store = await make();
      await store.put('snapshots/acc/one.ndjson.gz', Buffer.from('first'));
      await expectCode(
        store.put('snapshots/acc/one.ndjson.gz', Buffer.from('second')),
        'STORE_CONFLICT',
        /written once/,
      );
      await expectCode(
        store.put('snapshots/acc/one.ndjson.gz', streamOf(Buffer.from('third'))),
        'STORE_CONFLICT',
      );
      const big = randomBytes(LARGE);
      await expectCode(
        store.put('snapshots/acc/one.ndjson.gz', streamOf(big), { size: big.length }),
        'STORE_CONFLICT',
      );
      expect((await readAll(store, 'snapshots/acc/one.ndjson.gz')).toString()).toBe('first');
    });

    it(
      opts.atomicCreate === false
        ? 'lets concurrent puts of a key succeed or conflict, and reads back one whole body'
        : 'lets exactly one of several concurrent puts of a key win',
      async () => {
        const store = await make();
        const bodies = ['a', 'b', 'c', 'd', 'e'].map((s) => Buffer.from(s.repeat(1000)));
        const results = await Promise.allSettled(bodies.map((b) => store.put('race', b)));
        for (const r of results) if (r.status === 'rejected') expect(r.reason.code).toBe('STORE_CONFLICT');
        const won = results.filter((r) => r.status === 'fulfilled');
        const stored = await readAll(store, 'race');
        if (opts.atomicCreate === false) {
          expect(won.length).toBeGreaterThanOrEqual(1);
          expect(bodies.some((b) => b.equals(stored))).toBe(true);
        } else {
          expect(won).toHaveLength(1);
          expect(stored.equals(bodies[results.findIndex((r) => r.status === 'fulfilled')])).toBe(true);
        }
        // Once the race is over, the key is taken for good.
        await expectCode(store.put('race', Buffer.from('late')), 'STORE_CONFLICT');
      },
    );

    it('does not commit a Buffer whose sha256 or size differs (INTEGRITY), so the key stays free', async () => {
      const store = await make();
      const data = Buffer.from('the real content');
      await expectCode(
        store.put('blobs/k1', data, { sha256: sha(Buffer.from('other')) }),
        'INTEGRITY',
        /nothing was written/,
      );
      await expectCode(store.put('blobs/k1', data, { size: data.length + 1 }), 'INTEGRITY');
      expect(await store.head('blobs/k1')).toBeUndefined();
      expect(await collectList(store, 'blobs/')).toEqual([]);
      await store.put('blobs/k1', data, { sha256: sha(data) });
      expect((await readAll(store, 'blobs/k1')).equals(data)).toBe(true);
    });

    it('does not commit a stream (small or in parts) whose sha256 differs', async () => {
      const store = await make();
      const small = Buffer.from('small stream');
      await expectCode(store.put('blobs/s', streamOf(small), { sha256: sha(Buffer.from('x')) }), 'INTEGRITY');
      const large = randomBytes(LARGE);
      const wrong = Buffer.from(large);
      wrong[LARGE - 1] ^= 1;
      await expectCode(
        store.put('blobs/l', streamOf(large), { sha256: sha(wrong), size: LARGE }),
        'INTEGRITY',
      );
      await expectCode(store.put('blobs/l', streamOf(large), { size: LARGE - 1 }), 'INTEGRITY');
      expect(await store.head('blobs/s')).toBeUndefined();
      expect(await store.head('blobs/l')).toBeUndefined();
      await store.put('blobs/l', streamOf(large), { sha256: sha(large), size: LARGE });
      expect(sha(await readAll(store, 'blobs/l'))).toBe(sha(large));
    });

    it('lists keys under a prefix, in byte order, with sizes', async () => {
      const store = await make();
      const keys = [
        'snapshots/a/2026-01-02.ndjson.gz',
        'snapshots/a/2026-01-01.ndjson.gz',
        'snapshots/a-b/x',
        'snapshots/ab',
        'snapshots/a.z',
        'blobs/sha256/00/00ff',
        'top',
      ];
      await Promise.all(keys.map((k, i) => store.put(k, Buffer.alloc(i + 1, 1))));
      const all = await collectList(store, '');
      expect(all.map((o) => o.key)).toEqual([
        'blobs/sha256/00/00ff',
        'snapshots/a-b/x',
        'snapshots/a.z',
        'snapshots/a/2026-01-01.ndjson.gz',
        'snapshots/a/2026-01-02.ndjson.gz',
        'snapshots/ab',
        'top',
      ]);
      expect(all.find((o) => o.key === 'top')!.size).toBe(7);
      expect((await collectList(store, 'snapshots/a/')).map((o) => o.key)).toEqual([
        'snapshots/a/2026-01-01.ndjson.gz',
        'snapshots/a/2026-01-02.ndjson.gz',
      ]);
      // A prefix that ends inside a name, as a date prefix does.
      expect((await collectList(store, 'snapshots/a/2026-01-02')).map((o) => o.key)).toEqual([
        'snapshots/a/2026-01-02.ndjson.gz',
      ]);
      expect((await collectList(store, 'snapshots/a')).map((o) => o.key)).toEqual([
        'snapshots/a-b/x',
        'snapshots/a.z',
        'snapshots/a/2026-01-01.ndjson.gz',
        'snapshots/a/2026-01-02.ndjson.gz',
        'snapshots/ab',
      ]);
      expect(await collectList(store, 'nothing/')).toEqual([]);
    });

    it.skipIf(opts.manyKeys === false)(
      'lists more than a thousand keys (more than one S3 page), each once, in order',
      async () => {
        const store = await make();
        const keys = Array.from(
          { length: 1100 },
          (_, i) =>
            `blobs/sha256/${(i % 7).toString(16).padStart(2, '0')}/${i.toString(16).padStart(6, '0')}`,
        );
        if (opts.seed) await opts.seed(store, keys);
        else {
          const queue = [...keys];
          await Promise.all(
            Array.from({ length: 32 }, async () => {
              for (let k = queue.shift(); k !== undefined; k = queue.shift())
                await store.put(k, Buffer.from(k));
            }),
          );
        }
        const listed = (await collectList(store, 'blobs/')).map((o) => o.key);
        expect(listed).toEqual([...keys].sort());
      },
    );

    it('deletes an unlocked object: head is then undefined, and a second delete is no error', async () => {
      const store = await make();
      await store.put('snapshots/acc/t.ndjson.gz', Buffer.from('manifest'));
      await store.delete('snapshots/acc/t.ndjson.gz');
      expect(await store.head('snapshots/acc/t.ndjson.gz')).toBeUndefined();
      await expectCode(store.get('snapshots/acc/t.ndjson.gz'), 'NOT_FOUND');
      expect(await collectList(store, 'snapshots/')).toEqual([]);
      await store.delete('snapshots/acc/t.ndjson.gz');
      await store.delete('never/was');
      await store.put('snapshots/acc/t.ndjson.gz', Buffer.from('again'));
      expect((await readAll(store, 'snapshots/acc/t.ndjson.gz')).toString()).toBe('again');
    });

    it('refuses keys that climb out of the store or are not relative', async () => {
      const store = await make();
      for (const bad of ['../x', 'a/../../x', '/abs', 'a//b', '', 'a/./b']) {
        await expectCode(store.put(bad, Buffer.from('x')), 'UNSAFE_PATH');
        await expectCode(store.head(bad), 'UNSAFE_PATH');
      }
    });

    it('stops a put whose signal fires, and commits nothing', async () => {
      const store = await make();
      const ac = new AbortController();
      ac.abort(new Error('stop now'));
      await expectCode(store.put('aborted/a', Buffer.from('x'), { signal: ac.signal }), 'ABORTED');
      // The signal fires once the store has read the first chunk and asks for more.
      const ac2 = new AbortController();
      let reads = 0;
      const body = new Readable({
        read() {
          if (reads++ === 0) this.push(Buffer.alloc(1000, 7));
          else ac2.abort(new Error('stop mid-stream'));
        },
      });
      await expectCode(store.put('aborted/b', body, { signal: ac2.signal }), 'ABORTED');
      expect(body.destroyed).toBe(true);
      expect(await store.head('aborted/a')).toBeUndefined();
      expect(await store.head('aborted/b')).toBeUndefined();
    });

    it('versions, where the store keeps them: one per key written, each readable by its id', async () => {
      const store = await make();
      if (!store.versions) return expect(store.features.versioned).toBe(false);
      await store.put('packs/v/one.pack', Buffer.from('first'));
      await store.put('packs/v/two.pack', Buffer.from('second!'));
      await store.put('packs/w/other.pack', Buffer.from('x'));
      const vs = await store.versions('packs/v/');
      expect(vs.map((v) => [v.key, v.size])).toEqual([
        ['packs/v/one.pack', 5],
        ['packs/v/two.pack', 7],
      ]);
      expect(vs.every((v) => v.versionId.length > 0 && v.lastModified instanceof Date)).toBe(true);
      const got = await readAll(store, 'packs/v/two.pack', {
        versionId: vs[1].versionId,
        offset: 1,
        length: 3,
      });
      expect(got.toString()).toBe('eco');
    });

    it('prepare checks an existing store and reports what it found', async () => {
      const store = await make();
      const report = await store.prepare({ create: false });
      expect(report.created).toBe(false);
      expect(report.objectLock).toBe(store.features.objectLock ? 'enabled' : 'off');
      expect(report.notes.length).toBeGreaterThan(0);
    });

    it('retention: a retained object cannot be deleted; extendRetention moves it later, never earlier', async () => {
      const store = await make();
      const until = new Date(Date.now() + DAY);
      await store.put('blobs/locked', Buffer.from('keep me'), { retainUntil: until });
      await store.put('snapshots/acc/locked.ndjson.gz', streamOf(Buffer.from('manifest')), {
        retainUntil: until,
      });
      if (!store.features.objectLock) {
        // Without Object Lock retention is not recorded, and delete works.
        expect((await store.head('blobs/locked'))!.retainUntil).toBeUndefined();
        await store.extendRetention('blobs/locked', new Date(Date.now() + 2 * DAY));
        await store.delete('blobs/locked');
        expect(await store.head('blobs/locked')).toBeUndefined();
        return;
      }
      const seconds = (d: Date | undefined) => Math.floor(d!.getTime() / 1000);
      expect(seconds((await store.head('blobs/locked'))!.retainUntil)).toBe(seconds(until));
      await expectCode(store.delete('blobs/locked'), 'STORE_LOCKED', /locked until/);
      await expectCode(store.delete('snapshots/acc/locked.ndjson.gz'), 'STORE_LOCKED');
      expect((await readAll(store, 'blobs/locked')).toString()).toBe('keep me');

      const later = new Date(until.getTime() + 3 * DAY);
      await store.extendRetention('blobs/locked', later);
      expect(seconds((await store.head('blobs/locked'))!.retainUntil)).toBe(seconds(later));
      await store.extendRetention('blobs/locked', until);
      await store.extendRetention('blobs/locked', new Date(Date.now() - DAY));
      expect(seconds((await store.head('blobs/locked'))!.retainUntil)).toBe(seconds(later));

      // An object written without retention can be locked afterwards.
      await store.put('blobs/later-locked', Buffer.from('x'));
      await store.extendRetention('blobs/later-locked', until);
      expect(seconds((await store.head('blobs/later-locked'))!.retainUntil)).toBe(seconds(until));
      await expectCode(store.delete('blobs/later-locked'), 'STORE_LOCKED');
      // Listings do not say retention (S3's do not): code must not depend on it.
      expect((await collectList(store, 'blobs/')).every((o) => o.retainUntil === undefined)).toBe(true);
    });
  });
}
