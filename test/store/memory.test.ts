import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SyncguardError } from '../../src/errors.js';
import { faulty } from '../../src/store/faulty.js';
import { MemoryStore } from '../../src/store/memory.js';
import { readAll } from '../../src/store/types.js';
import { collectList, expectCode, storeSuite } from './store-suite.js';

storeSuite('memory with Object Lock', async () => new MemoryStore({ objectLock: true }));
storeSuite('memory without Object Lock', async () => new MemoryStore({ objectLock: false }));

describe('store: memory', () => {
  it('allows deleting a locked object once its clock passes the retention', async () => {
    let now = new Date('2026-11-20T02:00:00Z');
    const store = new MemoryStore({ objectLock: true, now: () => now });
    await store.put('blobs/a', Buffer.from('a'), { retainUntil: new Date('2026-11-21T02:00:00Z') });
    await expectCode(store.delete('blobs/a'), 'STORE_LOCKED', /2026-11-21T02:00:00.000Z/);
    now = new Date('2026-11-21T02:00:01Z');
    await store.delete('blobs/a');
    expect(await store.head('blobs/a')).toBeUndefined();
  });

  it('keeps its own copy of a Buffer, so the caller reusing it changes nothing stored', async () => {
    const store = new MemoryStore({ objectLock: false });
    const buf = Buffer.from('original');
    await store.put('k', buf);
    buf.fill(0);
    expect((await readAll(store, 'k')).toString()).toBe('original');
  });
});

describe('store: faulty', () => {
  it('fails the nth put only, and counts calls', async () => {
    const store = faulty(new MemoryStore({ objectLock: false }), { op: 'put', nth: 2 });
    await store.put('a', Buffer.from('1'));
    const err = await expectCode(
      store.put('b', Buffer.from('2')),
      'STORE_UNAVAILABLE',
      /injected failure: put b/,
    );
    expect((err as SyncguardError).retryable).toBe(true);
    await store.put('c', Buffer.from('3'));
    expect(store.calls.put).toBe(3);
    expect(store.injected).toBe(1);
    expect((await collectList(store, '')).map((o) => o.key)).toEqual(['a', 'c']);
  });

  it('fails puts whose key matches, as often as told, with the error given', async () => {
    const store = faulty(new MemoryStore({ objectLock: false }), {
      op: 'put',
      key: /^snapshots\//,
      times: 2,
      error: (op, key) => new SyncguardError('STORE_AUTH', `no ${op} of ${key}`),
    });
    await store.put('blobs/x', Buffer.from('x'));
    await expectCode(store.put('snapshots/a/1', Buffer.from('m')), 'STORE_AUTH', /no put of snapshots\/a\/1/);
    await expectCode(store.put('snapshots/a/1', Buffer.from('m')), 'STORE_AUTH');
    await store.put('snapshots/a/1', Buffer.from('m'));
    expect(store.injected).toBe(2);
  });

  it('releases a stream body it refuses, so a download feeding it is not left hanging', async () => {
    const store = faulty(new MemoryStore({ objectLock: false }), { op: 'put' });
    const body = new Readable({ read() {} });
    await expectCode(store.put('a', body), 'STORE_UNAVAILABLE');
    expect(body.destroyed).toBe(true);
  });

  it('can fail a put after the object was written (a lost reply)', async () => {
    const inner = new MemoryStore({ objectLock: false });
    const store = faulty(inner, { op: 'put', nth: 1, afterWrite: true });
    await expectCode(store.put('a', Buffer.from('data')), 'STORE_UNAVAILABLE');
    expect(await inner.head('a')).toMatchObject({ size: 4 });
  });

  it('can break a get stream part way, or corrupt its first byte', async () => {
    const inner = new MemoryStore({ objectLock: false });
    await inner.put('a', Buffer.from('0123456789'));
    const broken = faulty(inner, { op: 'get', failAfterBytes: 4 });
    const got: Buffer[] = [];
    await expect(
      (async () => {
        for await (const c of await broken.get('a')) got.push(c as Buffer);
      })(),
    ).rejects.toThrow(/injected failure: get a/);
    expect(Buffer.concat(got).toString()).toBe('0123');
    const corrupt = faulty(inner, { op: 'get', corrupt: true, times: 1 });
    const bytes = await readAll(corrupt, 'a');
    expect(bytes.subarray(1).toString()).toBe('123456789');
    expect(bytes[0]).toBe('0'.charCodeAt(0) ^ 0xff);
    expect((await readAll(corrupt, 'a')).toString()).toBe('0123456789');
  });

  it('fails list, head, delete and extendRetention when told', async () => {
    const inner = new MemoryStore({ objectLock: true });
    await inner.put('a', Buffer.from('a'));
    const store = faulty(inner, [
      { op: 'list' },
      { op: 'head', key: 'a' },
      { op: 'delete' },
      { op: 'extendRetention' },
    ]);
    await expectCode(collectList(store, ''), 'STORE_UNAVAILABLE');
    await expectCode(store.head('a'), 'STORE_UNAVAILABLE');
    expect(await store.head('b')).toBeUndefined();
    await expectCode(store.delete('a'), 'STORE_UNAVAILABLE');
    await expectCode(store.extendRetention('a', new Date(Date.now() + 1000)), 'STORE_UNAVAILABLE');
    expect(store.features.objectLock).toBe(true);
  });

  it('plant() keeps the version written before, as a versioned bucket does: listed oldest first, readable, locked', async () => {
    const now = Date.now();
    const store = new MemoryStore({ objectLock: true, now: () => new Date(now) });
    await store.put('blobs/x', Buffer.from('real'), { retainUntil: new Date(now + 1000) });
    store.plant('blobs/x', Buffer.from('planted!'));
    expect((await readAll(store, 'blobs/x')).toString()).toBe('planted!');
    const vs = await store.versions('blobs/');
    expect(vs.map((v) => v.size)).toEqual([4, 8]);
    expect((await readAll(store, 'blobs/x', { versionId: vs[0].versionId })).toString()).toBe('real');
    // The planted version holds no lock; the one under it does, so the key cannot be deleted.
    await expectCode(store.delete('blobs/x'), 'STORE_LOCKED');
  });
});
