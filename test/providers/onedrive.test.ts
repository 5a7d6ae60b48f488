import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { isSyncguardError, type SyncguardError } from '../../src/errors.js';
import { Pacer, sleep } from '../../src/providers/_pacer.js';
import {
  QuickXorHash,
  createOnedriveProvider,
  quickXorHash,
  tokenExpiry,
} from '../../src/providers/onedrive/index.js';
import { HttpError, classify } from '../../src/providers/onedrive/classify.js';
import { GraphError } from '@microsoft/microsoft-graph-client';
import { InteractionRequiredAuthError, ServerError } from '@azure/msal-node';
import type { Change, Provider, RemoteEntry } from '../../src/providers/types.js';
import { onedriveAccount, onedriveTestbed, type OnedriveTestbed } from '../emulators/graph-fixture.js';
import {
  realistic,
  referenceQuickXor,
  startGraphEmulator,
  type GraphEmulatorOptions,
} from '../emulators/graph.js';
import { applyChanges, collect, providerSuite, readStream, type ProviderFixture } from './provider-suite.js';
import { restore } from '../../src/snapshot/restore.js';
import { takeSnapshot } from '../../src/snapshot/take.js';
import { DAY, engine, manifestOf } from '../snapshot/_fixtures.js';

async function suiteFixture(opts: GraphEmulatorOptions): Promise<ProviderFixture> {
  const tb = await onedriveTestbed(await startGraphEmulator({ pageSize: 7, ...opts }));
  const drive = tb.emu.drive;
  return {
    provider: await tb.provider(),
    write: async (p, content, mtime) => {
      drive.write(p, content, { modified: mtime });
    },
    mkdir: async (p) => {
      drive.mkdir(p);
    },
    remove: async (p) => {
      drive.remove(p);
    },
    rename: async (a, b) => {
      drive.move(a, b);
    },
    reopen: () => tb.provider(),
    cleanup: () => tb.cleanup(),
  };
}

// The realistic switches: id casing drift and delta links in OData form on Personal; files listed
// without hashes, rewritten on download, notebooks as folders on Business.
providerSuite('onedrive (personal)', () => suiteFixture(realistic('personal')));
providerSuite('onedrive (business)', () =>
  suiteFixture({ ...realistic('business'), hashlessInListings: (p) => p.length % 2 === 0 }),
);

const files = (s: Map<string, RemoteEntry>) =>
  [...s.values()]
    .filter((e) => e.type === 'file')
    .map((e) => e.path)
    .sort();
const upserts = (changes: Change[]) =>
  changes.filter((c): c is Extract<Change, { kind: 'upsert' }> => c.kind === 'upsert').map((c) => c.entry);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function failure(p: Promise<unknown>): Promise<SyncguardError> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err, 'expected a failure').toBeDefined();
  return err as SyncguardError;
}

/** Every token the emulator issued: none may appear in an error, a log line or a file we print. */
function secretsOf(tb: OnedriveTestbed): string[] {
  return [...tb.emu.accessTokensIssued, ...tb.emu.refreshTokensIssued];
}

describe('provider: onedrive', () => {
  const beds: OnedriveTestbed[] = [];
  async function bed(
    opts: GraphEmulatorOptions = {},
    extra: Record<string, unknown> = {},
    auth: { write?: boolean } = {},
  ) {
    const tb = await onedriveTestbed(await startGraphEmulator(opts), extra, auth);
    beds.push(tb);
    return tb;
  }
  afterEach(async () => {
    for (const tb of beds.splice(0)) {
      expect(tb.emu.authLeaks, 'a token was sent to a pre-authenticated URL').toEqual([]);
      const logged = tb.logs.map((l) => l.message).join('\n');
      for (const s of secretsOf(tb)) expect(logged.includes(s), 'a token reached the log').toBe(false);
      await tb.cleanup();
    }
  });

  describe('QuickXorHash', () => {
    // Published vectors (rclone backend/onedrive/quickxorhash/quickxorhash_test.go, also in the brief).
    const vectors: Array<[string, string]> = [
      ['', 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='],
      ['Sg==', 'SgAAAAAAAAAAAAAAAQAAAAAAAAA='],
      ['tbQ=', 'taAFAAAAAAAAAAAAAgAAAAAAAAA='],
      ['0pZP', '0rDEEwAAAAAAAAAAAwAAAAAAAAA='],
      ['qaApEj66lw==', 'qQBFCiTgA11cAgAABwAAAAAAAAA='],
      ['vPgoDjOfO6fm71RxLw==', 'vMAHChwwg0/s4BTmdQcV4vACAAA='],
      ['2fuxhBJXtpWFe8dOfdGeHw==', 'O9tHLAghgSvYohKFyMMxnNCHaHg='],
      ['T6LYJIfDh81JrAK309H2JMJTXis=', 'zBTHrspn3mEcohlJdIUAbjGNaNg='],
      ['PwXNnutoLLmxD8TTog52k8cQkukmT87TTnDipKLHQw==', 'PTaGs7yV3FUyBy/SfU6xJRlCJlI='],
      [
        'Mb7EGva2rEE5fENDL85P+BsapHEEjv2/siVhKjvAQe02feExVOQSkfmuYzU/kTF1MaKjPmKF/w+cbvwfdWL8aQ==',
        'n1anP5NfvD4XDYWIeRPW3ZkPv1Y=',
      ],
      [
        'jyibxJSzO6ZiZ0O1qe3tG/bvIAYssvukh9suIT5wEy1JBINVgPiqdsTW0cOpP0aUfP7mgqLfADkzI/m/GgCuVhr8oFLrOCoTx1/psBOWwhltCbhUx51Icm9aH8tY4Z3ccU+6BKpYQkLCy0B/A9Zc',
        'hZfLIilSITC6N3e3tQ/iSgEzkto=',
      ],
      [
        'w0LGhqU1WXFbdavqDE4kAjEzWLGGzmTNikzqnsiXHx2KRReKVTxkv27u3UcEz9+lbMvYl4xFf2Z4aE1xRBBNd1Ke5C0zToSaYw5o4B/7X99nKK2/XaUX1byLow2aju2XJl2OpKpJg+tSJ2fmjIJTkfuYUz574dFX6/VXxSxwGH/xQEAKS5TCsBK3CwnuG1p5SAsQq3gGVozDWyjEBcWDMdy8/AIFrj/y03Lfc/RNRCQTAfZbnf2QwV7sluw4fH3XJr07UoD0YqN+7XZzidtrwqMY26fpLZnyZjnBEt1FAZWO7RnKG5asg8xRk9YaDdedXdQSJAOy6bWEWlABj+tVAigBxavaluUH8LOj+yfCFldJjNLdi90fVHkUD/m4Mr5OtmupNMXPwuG3EQlqWUVpQoYpUYKLsk7a5Mvg6UFkiH596y5IbJEVCI1Kb3D1',
        'e3+wo77iKcILiZegnzyUNcjCdoQ=',
      ],
    ];

    it('matches the published vectors', () => {
      for (const [input, want] of vectors)
        expect(quickXorHash(Buffer.from(input, 'base64')), input).toBe(want);
    });

    it('gives the same hash whatever the chunk sizes', () => {
      for (const [input, want] of vectors) {
        const data = Buffer.from(input, 'base64');
        for (const size of [1, 2, 3, 7, 13, 64, 159, 160, 161]) {
          const h = new QuickXorHash();
          for (let i = 0; i < data.length; i += size) h.update(data.subarray(i, i + size));
          expect(h.digest(), `${data.length} bytes in chunks of ${size}`).toBe(want);
        }
      }
    });

    it('agrees with a bit-by-bit reference on random data, split at random places', () => {
      let seed = 12345;
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (const length of [0, 1, 159, 160, 161, 319, 320, 1000, 65_537, 1_048_583]) {
        const data = randomBytes(length);
        const h = new QuickXorHash();
        for (let i = 0; i < length;) {
          const n = 1 + rand(5000);
          h.update(data.subarray(i, i + n));
          i += n;
        }
        expect(h.digest(), `${length} bytes`).toBe(referenceQuickXor(data));
      }
    });
  });

  describe('classify', () => {
    const ctx = { what: 'listing changes', account: 'work-onedrive' };
    const graphError = (status: number, code: string, headers: Record<string, string> = {}) => {
      const e = new GraphError(status, 'message from Graph');
      e.code = code;
      e.headers = new Headers(headers);
      return e;
    };

    it('sorts Graph, fetch and sign-in errors into codes, with Retry-After', () => {
      const cases: Array<[unknown, string, boolean]> = [
        [graphError(401, 'InvalidAuthenticationToken'), 'PROVIDER_AUTH', false],
        [graphError(403, 'accessDenied'), 'PROVIDER_ERROR', false],
        [graphError(404, 'itemNotFound'), 'NOT_FOUND', false],
        [graphError(409, 'nameAlreadyExists'), 'EXISTS', false],
        [graphError(410, 'resyncRequired'), 'CURSOR_RESET', false],
        [graphError(429, 'activityLimitReached', { 'retry-after': '7' }), 'PROVIDER_RATE_LIMITED', true],
        [graphError(503, 'serviceNotAvailable'), 'PROVIDER_RATE_LIMITED', true],
        [graphError(500, 'generalException'), 'PROVIDER_UNAVAILABLE', true],
        [graphError(504, 'gatewayTimeout'), 'PROVIDER_UNAVAILABLE', true],
        [new HttpError(502, '', 'Bad Gateway'), 'PROVIDER_UNAVAILABLE', true],
        [
          new TypeError('fetch failed', {
            cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
          }),
          'PROVIDER_UNAVAILABLE',
          true,
        ],
        [new GraphError(-1, 'fetch failed'), 'PROVIDER_ERROR', false],
        [
          Object.assign(new GraphError(-1, 'fetch failed'), { code: 'TypeError' }),
          'PROVIDER_UNAVAILABLE',
          true,
        ],
        [new DOMException('This operation was aborted', 'AbortError'), 'ABORTED', false],
        [
          new InteractionRequiredAuthError('invalid_grant', 'AADSTS700082: The refresh token has expired'),
          'PROVIDER_AUTH',
          false,
        ],
        [
          new ServerError('invalid_grant', 'correlation', 'AADSTS50173: The provided grant has expired'),
          'PROVIDER_AUTH',
          false,
        ],
        [
          new ServerError('temporarily_unavailable', 'correlation', 'AADSTS90033: A transient error'),
          'PROVIDER_UNAVAILABLE',
          true,
        ],
      ];
      for (const [err, code, retryable] of cases) {
        const got = classify(err, ctx);
        expect(
          [got.code, got.retryable],
          `${(err as Error).name} ${(err as { statusCode?: number }).statusCode ?? ''}`,
        ).toEqual([code, retryable]);
      }
      expect(
        classify(graphError(429, 'activityLimitReached', { 'retry-after': '7' }), ctx).retryAfterMs,
      ).toBe(7000);
      const at = new Date(Date.now() + 60_000).toUTCString();
      expect(
        classify(graphError(503, 'serviceNotAvailable', { 'retry-after': at }), ctx).retryAfterMs,
      ).toBeGreaterThan(50_000);
      expect(classify(graphError(401, 'InvalidAuthenticationToken'), ctx).message).toContain(
        'syncguard auth onedrive --account work-onedrive',
      );
      expect(
        classify(
          new InteractionRequiredAuthError('consent_required', 'AADSTS65001: no consent', 'consent_required'),
          { ...ctx, write: true },
        ).message,
      ).toContain('--write');
    });
  });

  describe('listing with delta', () => {
    it('a listing from the cursor brings only what changed since', async () => {
      const tb = await bed({ pageSize: 10 });
      for (let i = 0; i < 40; i++) tb.emu.drive.write(`docs/f${i}.txt`, `file ${i}`);
      tb.emu.drive.write('other/keep.txt', 'keep');
      const p = await tb.provider();
      const first = await collect(p);
      const s1 = applyChanges(new Map(), first, true);
      expect(files(s1)).toHaveLength(41);
      expect(first.cursor).toMatch(/^https:\/\//);

      tb.emu.drive.write('docs/f7.txt', 'file 7, edited');
      tb.emu.drive.write('docs/new.txt', 'new');
      tb.emu.resetCounters();
      const p2 = await tb.provider();
      const second = await collect(p2, first.cursor, undefined, s1);
      const changedFiles = upserts(second.changes)
        .filter((e) => e.type === 'file')
        .map((e) => e.path)
        .sort();
      expect(changedFiles).toEqual(['docs/f7.txt', 'docs/new.txt']);
      expect(second.changes.some((c) => c.kind === 'reset' || c.kind === 'delete')).toBe(false);
      expect(tb.emu.count('delta')).toBe(1);
      expect(tb.emu.count('content')).toBe(0);
      const s2 = applyChanges(s1, second, true);
      expect(s2.get('docs/f7.txt')!.size).toBe('file 7, edited'.length);
      expect(s2.get('docs/f7.txt')!.hash).toEqual({
        algo: 'quickxor',
        value: tb.emu.drive.item('docs/f7.txt')!.quickXorHash,
      });
      expect(second.cursor).not.toBe(first.cursor);

      const third = await collect(await tb.provider(), second.cursor, undefined, s2);
      expect(upserts(third.changes)).toEqual([]);
    });

    it('a renamed folder of many files moves its subtree without reading a byte', async () => {
      const tb = await bed({ pageSize: 50, driveType: 'business' });
      for (let i = 0; i < 120; i++)
        tb.emu.drive.write(`Photos/2024/${String(i).padStart(3, '0')}.jpg`, randomBytes(100));
      for (let i = 0; i < 30; i++) tb.emu.drive.write(`Photos/2025/trip/${i}.jpg`, randomBytes(50));
      tb.emu.drive.mkdir('Photos/empty');
      tb.emu.drive.write('Archive/readme.txt', 'archive');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);

      tb.emu.drive.rename('Photos', 'Pictures');
      tb.emu.drive.move('Pictures/2025/trip', 'Archive/trip-2025');
      tb.emu.resetCounters();
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      const s2 = applyChanges(s1, second, true, true);

      expect(second.changes.filter((c) => c.kind === 'delete')).toEqual([
        { kind: 'delete', path: 'Photos' },
        { kind: 'delete', path: 'Photos/2025/trip' },
      ]);
      expect(files(s2)).toEqual(tb.emu.drive.paths().filter((p) => tb.emu.drive.item(p)!.kind === 'file'));
      expect([...s2.keys()].sort()).toEqual(tb.emu.drive.paths());
      const moved = s2.get('Pictures/2024/017.jpg')!;
      const before = s1.get('Photos/2024/017.jpg')!;
      expect(moved).toEqual({ ...before, path: 'Pictures/2024/017.jpg' });
      expect(s2.get('Archive/trip-2025/3.jpg')!.id).toBe(s1.get('Photos/2025/trip/3.jpg')!.id);
      expect(s2.has('Pictures/empty')).toBe(true);
      expect(tb.emu.count('content') + tb.emu.count('download')).toBe(0);
      expect(tb.emu.bytesDownloaded).toBe(0);
      // Delta named two items (and nothing below them): one page, no folder listings.
      expect(tb.emu.count('delta')).toBe(1);
      expect(tb.emu.count('children')).toBe(0);
    });

    it('a deleted folder removes everything below it', async () => {
      for (const driveType of ['personal', 'business'] as const) {
        const tb = await bed({ driveType });
        tb.emu.drive.write('keep/a.txt', 'a');
        tb.emu.drive.write('gone/x.txt', 'x');
        tb.emu.drive.write('gone/deep/y.txt', 'y');
        tb.emu.drive.write('file-gone.txt', 'f');
        const first = await collect(await tb.provider());
        const s1 = applyChanges(new Map(), first, true);
        tb.emu.drive.remove('gone');
        tb.emu.drive.remove('file-gone.txt');
        const second = await collect(await tb.provider(), first.cursor, undefined, s1);
        expect(
          second.changes
            .filter((c) => c.kind === 'delete')
            .map((c) => (c as { path: string }).path)
            .sort(),
          driveType,
        ).toEqual(['file-gone.txt', 'gone']);
        const s2 = applyChanges(s1, second, true, true);
        expect([...s2.keys()].sort()).toEqual(['keep', 'keep/a.txt']);
      }
    });

    it('410 resyncRequired gives a reset and a full listing', async () => {
      const tb = await bed({ pageSize: 4 });
      tb.emu.drive.write('a.txt', 'a');
      tb.emu.drive.write('dir/b.txt', 'b');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      tb.emu.drive.remove('a.txt');
      tb.emu.drive.write('dir/c.txt', 'c');
      tb.emu.resyncNextDelta();
      tb.emu.resetCounters();
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      expect(second.changes[0]).toEqual({ kind: 'reset' });
      expect(second.changes.filter((c) => c.kind === 'reset')).toHaveLength(1);
      const s2 = applyChanges(s1, second, true);
      expect([...s2.keys()].sort()).toEqual(['dir', 'dir/b.txt', 'dir/c.txt']);
      // The 410, then the fresh enumeration from its Location, in pages.
      expect(tb.emu.count('delta')).toBeGreaterThanOrEqual(2);
      expect(second.cursor).toMatch(/token=/);
      const third = await collect(await tb.provider(), second.cursor, undefined, s2);
      expect(third.changes.filter((c) => c.kind !== 'upsert')).toEqual([]);
    });

    it('a cursor the drive no longer knows (410 without our help) also gives a reset', async () => {
      const tb = await bed();
      tb.emu.drive.write('x.txt', 'x');
      const first = await collect(await tb.provider());
      tb.emu.drive.invalidateCursors();
      const second = await collect(
        await tb.provider(),
        first.cursor,
        undefined,
        applyChanges(new Map(), first, true),
      );
      expect(second.changes[0]).toEqual({ kind: 'reset' });
      expect(files(applyChanges(new Map(), second, true))).toEqual(['x.txt']);
    });

    it('a cursor without the previous state, or of another drive, lists everything after a reset', async () => {
      const tb = await bed();
      tb.emu.drive.write('x.txt', 'x');
      const first = await collect(await tb.provider());
      const noPrev = await collect(await tb.provider(), first.cursor);
      expect(noPrev.changes[0]).toEqual({ kind: 'reset' });
      const other = first.cursor!.replace(/\/drives\/[^/]+\//, '/drives/someone-else/');
      const foreign = await collect(
        await tb.provider(),
        other,
        undefined,
        applyChanges(new Map(), first, true),
      );
      expect(foreign.changes[0]).toEqual({ kind: 'reset' });
      expect(files(applyChanges(new Map(), foreign, true))).toEqual(['x.txt']);
      expect(tb.logs.filter((l) => l.level === 'warn')).toHaveLength(2);
    });

    it('an item repeated across pages counts once, in its last state', async () => {
      const tb = await bed({ pageSize: 3 });
      tb.emu.drive.write('a/one.txt', '1');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      for (let i = 0; i < 6; i++) {
        tb.emu.drive.write('a/one.txt', 'x'.repeat(i + 2));
        tb.emu.drive.write(`a/filler${i}.txt`, 'f');
      }
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      const ones = upserts(second.changes).filter((e) => e.path === 'a/one.txt');
      expect(ones).toHaveLength(1);
      expect(ones[0].size).toBe(7);
      expect(tb.emu.count('delta')).toBeGreaterThan(3);
    });

    it('keeps only the configured folders (and the folders above them), following moves in and out', async () => {
      const tb = await bed({ driveType: 'business' }, { folders: ['/Documents/Work'] });
      tb.emu.drive.write('Documents/Work/plan.txt', 'plan');
      tb.emu.drive.write('Documents/Work/sub/notes.txt', 'notes');
      tb.emu.drive.write('Documents/private.txt', 'private');
      tb.emu.drive.write('Outside/big/a.txt', 'a');
      tb.emu.drive.write('Outside/big/deep/b.txt', 'b');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      expect([...s1.keys()].sort()).toEqual([
        'Documents',
        'Documents/Work',
        'Documents/Work/plan.txt',
        'Documents/Work/sub',
        'Documents/Work/sub/notes.txt',
      ]);

      tb.emu.drive.move('Outside/big', 'Documents/Work/big');
      tb.emu.drive.move('Documents/Work/sub', 'Outside/sub');
      tb.emu.drive.write('Outside/ignored.txt', 'ignored');
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      const s2 = applyChanges(s1, second, true, true);
      expect(files(s2)).toEqual([
        'Documents/Work/big/a.txt',
        'Documents/Work/big/deep/b.txt',
        'Documents/Work/plan.txt',
      ]);
      expect(tb.emu.count('children')).toBeGreaterThan(0);
    });

    it('places items whose folders the previous snapshot left out, by asking for those folders', async () => {
      // Without the parent chain in delta (Prefer: deltaExcludeParent), and a previous snapshot that
      // left a folder out (an include rule took only some files), a new file's folder is unknown.
      const tb = await bed({ parentChain: false });
      tb.emu.drive.write('docs/deep/a.txt', 'a');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      s1.delete('docs');
      s1.delete('docs/deep');
      tb.emu.drive.write('docs/deep/b.txt', 'b');
      tb.emu.resetCounters();
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      expect(upserts(second.changes).map((e) => e.path)).toEqual(['docs', 'docs/deep', 'docs/deep/b.txt']);
      expect(tb.emu.count('item')).toBe(1 + 2);
    });

    it('says so when a configured folder does not exist', async () => {
      const tb = await bed({}, { folders: ['Nope', 'Here'] });
      tb.emu.drive.write('Here/a.txt', 'a');
      const { changes } = await collect(await tb.provider());
      expect(changes).toContainEqual({
        kind: 'error',
        path: 'Nope',
        message: expect.stringContaining('does not exist'),
      });
      expect(files(applyChanges(new Map(), { changes, cursor: undefined }, true))).toEqual(['Here/a.txt']);
    });

    it('skips OneNote notebooks that are no folders (Personal) and what they hold, and says why', async () => {
      const tb = await bed({ driveType: 'personal' });
      tb.emu.drive.write('Notes/plain.txt', 'plain');
      tb.emu.drive.addPackage('Notes/Family Notebook', { 'Recipes.one': 'r', 'Trips.one': 't' });
      const p = await tb.provider();
      const { changes } = await collect(p);
      expect(changes).toContainEqual({
        kind: 'skip',
        path: 'Notes/Family Notebook',
        reason: 'OneNote notebook (package): export it from OneNote',
      });
      expect(
        upserts(changes)
          .map((e) => e.path)
          .sort(),
      ).toEqual(['Notes', 'Notes/plain.txt']);
    });

    it('skips folders shared from another drive, and says how to take them', async () => {
      const tb = await bed();
      tb.emu.drive.write('mine.txt', 'mine');
      tb.emu.drive.addShortcut('Shared/Team plans', { driveId: 'b!other-drive', id: '01OTHER' });
      const { changes } = await collect(await tb.provider());
      expect(changes).toContainEqual({
        kind: 'skip',
        path: 'Shared/Team plans',
        reason: expect.stringContaining('drive: { driveId }'),
      });
      expect(
        upserts(changes)
          .map((e) => e.path)
          .sort(),
      ).toEqual(['Shared', 'mine.txt']);
    });

    it('refuses hostile names as errors and goes on', async () => {
      const tb = await bed();
      tb.emu.drive.write('ok.txt', 'ok');
      tb.emu.drive.write('evil/..', 'dotdot');
      tb.emu.drive.write('nul\0name.txt', 'nul');
      const { changes } = await collect(await tb.provider());
      const errors = changes
        .filter((c) => c.kind === 'error')
        .map((c) => (c as { path: string }).path)
        .sort();
      expect(errors).toEqual(['evil/..', 'nul\0name.txt']);
      expect(files(applyChanges(new Map(), { changes, cursor: undefined }, true))).toEqual(['ok.txt']);
    });
  });

  describe('reading', () => {
    it('retries throttling (429, 503 with Retry-After) and server errors', async () => {
      const tb = await bed({ pageSize: 5 });
      for (let i = 0; i < 12; i++) tb.emu.drive.write(`f${i}.txt`, `content ${i}`);
      tb.emu.failNext(2, { status: 429, retryAfter: 0, route: 'delta' });
      tb.emu.failNext(1, { status: 503, retryAfter: 0, route: 'content' });
      tb.emu.failNext(1, { status: 500, route: 'download' });
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      expect(files(s)).toHaveLength(12);
      expect((await readStream(p, s.get('f3.txt')!)).bytes.toString()).toBe('content 3');
      expect(tb.emu.count('delta')).toBe(3 + 2);
      expect(tb.emu.count('content')).toBe(2);
      expect(tb.emu.count('download')).toBe(2);
    });

    it('waits as long as Retry-After says, and slows down', async () => {
      const tb = await bed();
      tb.emu.drive.write('a.txt', 'a');
      const waits: number[] = [];
      const pacer = new Pacer({
        baseDelayMs: 1,
        maxDelayMs: 5,
        sleep: (ms, signal) => {
          waits.push(ms);
          return sleep(ms, signal);
        },
      });
      const p = await createOnedriveProvider(tb.account, { configDir: tb.dir, log: tb.log }, { pacer });
      tb.emu.failNext(1, { status: 429, retryAfter: 1, route: 'delta' });
      await collect(p);
      expect(waits[0]).toBeGreaterThanOrEqual(1000);
      expect(pacer.retries).toBe(1);
    });

    it('gives up with PROVIDER_RATE_LIMITED when throttling does not end', async () => {
      const tb = await bed();
      tb.emu.drive.write('a.txt', 'a');
      tb.emu.failNext(100, { status: 429, retryAfter: 1, route: 'delta' });
      // Throttling is bounded by the time waited in a run, not by attempts; this clock moves only
      // when the pacer sleeps, so the 5 s budget costs no real time.
      let t = 0;
      const pacer = new Pacer({
        throttleBudgetMs: 5000,
        now: () => t,
        sleep: async (ms) => {
          t += ms;
        },
      });
      const p = await createOnedriveProvider(tb.account, { configDir: tb.dir, log: tb.log }, { pacer });
      const err = await failure(collect(p));
      expect(isSyncguardError(err, 'PROVIDER_RATE_LIMITED'), String(err)).toBe(true);
      expect(err.message).toMatch(/gave up: this run has waited .* \(the limit is 5 s\)/);
      expect(pacer.throttledMs).toBeLessThanOrEqual(5000);
    });

    it('resumes a cut download where it stopped and gives the exact bytes', async () => {
      const tb = await bed();
      const big = randomBytes(3 * 1024 * 1024 + 17);
      tb.emu.drive.write('big.bin', big);
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      tb.emu.cutNextDownloads(2, 700_000);
      tb.emu.resetCounters();
      const { bytes } = await readStream(p, s.get('big.bin')!);
      expect(sha256(bytes)).toBe(sha256(big));
      expect(tb.emu.count('download')).toBe(3);
      // Resumed with Range: nothing was sent twice.
      expect(tb.emu.bytesDownloaded).toBe(big.length);
    });

    it('fails with INTEGRITY when the bytes do not match the reported hash, and a second download differs', async () => {
      const tb = await bed();
      tb.emu.drive.write('photo.jpg', randomBytes(5000));
      tb.emu.drive.write('report.docx', randomBytes(3000));
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      for (const path of ['photo.jpg', 'report.docx']) {
        tb.emu.corruptNextDownloads(1);
        const err = await failure(readStream(p, s.get(path)!));
        expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
        expect(err.message).toContain(path);
      }
    });

    it('keeps, with one warning, the bytes of any file that two downloads agree on, against its listing', async () => {
      for (const driveType of ['personal', 'business'] as const) {
        const tb = await bed({ driveType });
        tb.emu.drive.write('Reports/q3.xlsx', randomBytes(4000));
        tb.emu.drive.write('Reports/q3.csv', randomBytes(4000));
        const p = await tb.provider();
        const s = applyChanges(new Map(), await collect(p), true);
        for (const path of ['Reports/q3.xlsx', 'Reports/q3.csv']) {
          tb.emu.drive.corrupt(path);
          const served = tb.emu.drive.item(path)!.content!;
          for (let i = 0; i < 2; i++)
            expect(sha256((await readStream(p, s.get(path)!)).bytes)).toBe(sha256(served));
          expect(
            tb.logs.filter((l) => l.level === 'warn' && l.message.includes(path)),
            driveType,
          ).toHaveLength(1);
        }
      }
    });

    it('streams with backpressure and stops when aborted', async () => {
      const tb = await bed();
      tb.emu.drive.write('big.bin', randomBytes(4 * 1024 * 1024));
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      const ac = new AbortController();
      const stream = await p.open(s.get('big.bin')!, ac.signal);
      let got = 0;
      const err = await (async () => {
        for await (const c of stream) {
          got += (c as Buffer).length;
          if (got > 100_000) ac.abort(new Error('enough'));
        }
      })().then(
        () => undefined,
        (e) => e,
      );
      expect(isSyncguardError(err, 'ABORTED'), String(err)).toBe(true);
      expect(got).toBeLessThan(4 * 1024 * 1024);
    });
  });

  describe('sign-in', () => {
    it('signs in with the device code flow and saves the token cache, readable only by its owner', async () => {
      const emu = await startGraphEmulator();
      const { mkdtemp } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const dir = await mkdtemp(join(tmpdir(), 'sg-od-auth-'));
      try {
        const account = onedriveAccount(emu, dir, { credentials: 'creds/od.json' });
        const printed: string[] = [];
        const { runOnedriveAuth } = await import('../../src/providers/onedrive/index.js');
        const result = await runOnedriveAuth({
          account,
          configDir: dir,
          print: (line) => {
            printed.push(line);
            const code = /enter the code (\S+)/.exec(line)?.[1];
            // The user types the code in only after the CLI has polled (and been told to wait) twice.
            if (code)
              void (async () => {
                while (emu.count('token') < 2) await new Promise((r) => setTimeout(r, 5));
                emu.approve(code);
              })();
          },
        });
        expect(printed[0]).toMatch(/open https:\/\/microsoft\.com\/devicelogin and enter the code [0-9A-F]+/);
        expect(emu.count('devicecode')).toBe(1);
        expect(emu.count('token')).toBeGreaterThanOrEqual(3);
        expect(result).toEqual({ credentialsPath: join(dir, 'creds/od.json'), username: 'ada@outlook.com' });
        expect((await stat(result.credentialsPath)).mode & 0o777).toBe(0o600);
        const cache = await readFile(result.credentialsPath, 'utf8');
        // Booleans only: a failing assertion must not print a token.
        expect(cache.includes(emu.refreshTokensIssued.at(-1)!), 'the cache holds the refresh token').toBe(
          true,
        );
        for (const line of printed)
          for (const s of [...emu.accessTokensIssued, ...emu.refreshTokensIssued])
            expect(line.includes(s), 'a token was printed').toBe(false);
        const expiry = (await tokenExpiry(account, dir))!.getTime();
        expect(expiry).toBeGreaterThan(Date.now() + 89 * 86400_000);
        expect(expiry).toBeLessThan(Date.now() + 91 * 86400_000);
      } finally {
        await emu.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('a declined sign-in ends with PROVIDER_AUTH', async () => {
      const emu = await startGraphEmulator();
      const { mkdtemp } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const dir = await mkdtemp(join(tmpdir(), 'sg-od-auth-'));
      try {
        const { runOnedriveAuth } = await import('../../src/providers/onedrive/index.js');
        const err = await failure(
          runOnedriveAuth({
            account: onedriveAccount(emu, dir),
            configDir: dir,
            print: (line) => {
              const code = /enter the code (\S+)/.exec(line)?.[1];
              if (code) emu.decline(code);
            },
          }),
        );
        expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
        expect(err.message).toContain('syncguard auth onedrive --account work-onedrive');
        expect(await tokenExpiry(onedriveAccount(emu, dir), dir)).toBeUndefined();
      } finally {
        await emu.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('saves the rotated refresh token back after a refresh (0600), so the next run can sign in', async () => {
      const tb = await bed();
      tb.emu.drive.write('a.txt', 'a');
      const path = join(tb.dir, tb.account.credentials);
      const firstRt = tb.emu.refreshTokensIssued.at(-1)!;
      const p = await tb.provider();
      await collect(p);
      tb.emu.expireAccessTokens();
      await collect(p);
      expect(tb.emu.refreshTokensIssued).toHaveLength(2);
      const newRt = tb.emu.refreshTokensIssued.at(-1)!;
      const cache = await readFile(path, 'utf8');
      expect(cache.includes(newRt), 'the cache holds the new refresh token').toBe(true);
      expect(cache.includes(firstRt), 'the cache still holds the spent refresh token').toBe(false);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      // The old refresh token is spent: only the saved new one lets the next run in.
      tb.emu.expireAccessTokens();
      expect(files(applyChanges(new Map(), await collect(await tb.provider()), true))).toEqual(['a.txt']);
    });

    it('a revoked sign-in ends the run with PROVIDER_AUTH, the `auth onedrive` hint and no token', async () => {
      const tb = await bed();
      tb.emu.drive.write('a.txt', 'a');
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      tb.emu.revokeSignIn();
      for (const attempt of [collect(p), readStream(p, s.get('a.txt')!), collect(await tb.provider())]) {
        const err = await failure(attempt);
        expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
        expect(err.message).toContain('syncguard auth onedrive --account work-onedrive');
        const shown = `${err.message}\n${inspect(err, { depth: 6 })}`;
        for (const secret of secretsOf(tb))
          expect(shown.includes(secret), 'a token appears in the error').toBe(false);
      }
    });

    it('without a saved sign-in, says to run `syncguard auth onedrive`', async () => {
      const tb = await bed();
      await rm(join(tb.dir, tb.account.credentials));
      const err = await failure(collect(await tb.provider()));
      expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
      expect(err.message).toContain('syncguard auth onedrive --account work-onedrive');
    });

    it('warns when the sign-in expires soon', async () => {
      const tb = await bed();
      const path = join(tb.dir, tb.account.credentials);
      const cache = JSON.parse(await readFile(path, 'utf8')) as {
        AccessToken: Record<string, { cached_at: string }>;
      };
      const longAgo = Math.floor((Date.now() - 80 * 86400_000) / 1000);
      for (const at of Object.values(cache.AccessToken)) at.cached_at = String(longAgo);
      await writeFile(path, JSON.stringify(cache));
      const expiry = (await tokenExpiry(tb.account, tb.dir))!;
      expect(Math.round((expiry.getTime() - Date.now()) / 86400_000)).toBe(10);
      await tb.provider();
      expect(tb.logs).toContainEqual({
        level: 'warn',
        message: expect.stringContaining(`expires on ${expiry.toISOString().slice(0, 10)}`),
      });
    });
  });

  describe('drives', () => {
    it('finds a SharePoint document library by site and name', async () => {
      const emu = await startGraphEmulator({ driveType: 'business' });
      const site = emu.addSite('contoso.sharepoint.com:/sites/finance', ['Documents', 'Reports']);
      site.libraries.get('Reports')!.write('2026/q1.csv', 'q1');
      site.libraries.get('Documents')!.write('other.txt', 'other');
      emu.drive.write('mine.txt', 'mine');
      const tb = await onedriveTestbed(emu, {
        drive: { site: 'contoso.sharepoint.com:/sites/finance', library: 'reports' },
      });
      beds.push(tb);
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      expect(files(s)).toEqual(['2026/q1.csv']);
      expect((await readStream(p, s.get('2026/q1.csv')!)).bytes.toString()).toBe('q1');

      const byUrl = await createOnedriveProvider(
        onedriveAccount(emu, tb.dir, {
          drive: { site: 'https://contoso.sharepoint.com/sites/finance', library: 'Shared Documents' },
        }),
        { configDir: tb.dir, log: tb.log },
      );
      expect(files(applyChanges(new Map(), await collect(byUrl), true))).toEqual(['other.txt']);

      const byId = await createOnedriveProvider(
        onedriveAccount(emu, tb.dir, { drive: { driveId: site.libraries.get('Reports')!.id } }),
        { configDir: tb.dir, log: tb.log },
      );
      expect(files(applyChanges(new Map(), await collect(byId), true))).toEqual(['2026/q1.csv']);

      const wrong = await createOnedriveProvider(
        onedriveAccount(emu, tb.dir, {
          drive: { site: 'contoso.sharepoint.com:/sites/finance', library: 'Budgets' },
        }),
        { configDir: tb.dir, log: tb.log },
      );
      const err = await failure(collect(wrong));
      expect(isSyncguardError(err, 'CONFIG'), String(err)).toBe(true);
      expect(err.message).toContain('"Documents", "Reports"');

      const noSite = await createOnedriveProvider(
        onedriveAccount(emu, tb.dir, {
          drive: { site: 'contoso.sharepoint.com:/sites/nope', library: 'Documents' },
        }),
        { configDir: tb.dir, log: tb.log },
      );
      expect(isSyncguardError(await failure(collect(noSite)), 'CONFIG')).toBe(true);
    });
  });

  describe('the service as it really behaves (issue 9)', () => {
    const account = { name: 'work-onedrive', provider: 'onedrive' };

    it('places items whose ids come in another casing than the root id (point 4)', async () => {
      const tb = await bed({ ...realistic('personal'), pageSize: 5 });
      tb.emu.drive.write('top.txt', 'top');
      tb.emu.drive.write('Docs/deep/a.txt', 'a');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      expect([...s1.keys()].sort()).toEqual(['Docs', 'Docs/deep', 'Docs/deep/a.txt', 'top.txt']);
      tb.emu.drive.rename('Docs', 'Papers');
      tb.emu.drive.write('Papers/deep/b.txt', 'b');
      const second = await collect(await tb.provider(), first.cursor, undefined, s1);
      expect(second.changes.some((c) => c.kind === 'reset')).toBe(false);
      const s2 = applyChanges(s1, second, true, true);
      expect([...s2.keys()].sort()).toEqual([
        'Papers',
        'Papers/deep',
        'Papers/deep/a.txt',
        'Papers/deep/b.txt',
        'top.txt',
      ]);
    });

    it('an item with the root facet is the drive root, whatever its id says (point 4)', async () => {
      const tb = await bed({ idCaseDrift: true });
      tb.emu.drive.write('x.txt', 'x');
      const { changes } = await collect(await tb.provider());
      expect(upserts(changes).map((e) => e.path)).toEqual(['x.txt']);
      expect(changes.filter((c) => c.kind === 'error')).toEqual([]);
    });

    it('a delta link refused with 400 or 404 is tried once more, then gives a reset and a full listing (point 3)', async () => {
      for (const status of [400, 404] as const) {
        const tb = await bed();
        tb.emu.drive.write('a.txt', 'a');
        const first = await collect(await tb.provider());
        const s1 = applyChanges(new Map(), first, true);
        tb.emu.drive.write('b.txt', 'b');
        tb.emu.rejectDeltaLinks(1, status);
        const once = await collect(await tb.provider(), first.cursor, undefined, s1);
        expect(
          once.changes.some((c) => c.kind === 'reset'),
          `${status} once`,
        ).toBe(false);
        expect(upserts(once.changes).map((e) => e.path)).toEqual(['b.txt']);
        tb.emu.rejectDeltaLinks(2, status);
        const twice = await collect(await tb.provider(), first.cursor, undefined, s1);
        expect(twice.changes[0], `${status} twice`).toEqual({ kind: 'reset' });
        expect(files(applyChanges(s1, twice, true))).toEqual(['a.txt', 'b.txt']);
        expect(tb.logs.some((l) => l.level === 'warn' && l.message.includes(String(status)))).toBe(true);
      }
    });

    it('keeps delta links in any form Graph gives them, and lists from them incrementally (point 5)', async () => {
      for (const deltaLinkForm of ['drives', 'items'] as const) {
        const tb = await bed({ deltaLinkForm, pageSize: 3 });
        for (let i = 0; i < 5; i++) tb.emu.drive.write(`f${i}.txt`, `${i}`);
        const first = await collect(await tb.provider());
        expect(first.cursor).toContain('microsoft.graph.delta');
        const s1 = applyChanges(new Map(), first, true);
        tb.emu.drive.write('new.txt', 'new');
        tb.emu.resetCounters();
        const second = await collect(await tb.provider(), first.cursor, undefined, s1);
        expect(
          second.changes.some((c) => c.kind === 'reset'),
          deltaLinkForm,
        ).toBe(false);
        expect(upserts(second.changes).map((e) => e.path)).toEqual(['new.txt']);
        expect(tb.emu.count('delta')).toBe(1);
        expect(tb.logs.filter((l) => l.level === 'warn')).toEqual([]);
      }
    });

    it('ends a round whose nextLink comes back with an empty page, and says so (point 7)', async () => {
      const tb = await bed();
      tb.emu.drive.write('a.txt', 'a');
      const first = await collect(await tb.provider());
      const s1 = applyChanges(new Map(), first, true);
      tb.emu.drive.write('b.txt', 'b');
      tb.emu.repeatDelta(Infinity);
      const stuck = await collect(await tb.provider(), first.cursor, undefined, s1);
      expect(stuck.cursor).toBeDefined();
      expect(tb.logs.some((l) => l.level === 'warn' && l.message.includes('again'))).toBe(true);
      tb.emu.repeatDelta(0);
      const after = await collect(await tb.provider(), stuck.cursor, undefined, s1);
      expect(files(applyChanges(s1, after, true))).toEqual(['a.txt', 'b.txt']);
    }, 20_000);

    it('a file listed without hashes is read, and known the next night by its content tag (point 12)', async () => {
      const tb = await bed({ driveType: 'business', hashlessInListings: true });
      const when = new Date('2025-05-05T05:05:05Z');
      tb.emu.drive.write('old/report.txt', 'first words', { modified: when });
      tb.emu.drive.write('old/keep.txt', 'kept', { modified: when });
      const e = engine();
      const one = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(one.header.failures).toEqual([]);
      expect(one.filesRead).toBe(2);
      // Same size, same modified time, other content (an app that keeps the time): only the tag tells.
      tb.emu.drive.write('old/report.txt', 'other words', { modified: when });
      tb.emu.drive.move('old/keep.txt', 'new/keep.txt');
      e.clock.advance(DAY);
      tb.emu.resetCounters();
      const two = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(two.filesRead).toBe(1);
      expect(tb.emu.count('download')).toBe(1);
      const back = await restore({
        repo: e.repo,
        account: account.name,
        to: { kind: 'dir', dir: join(tb.dir, 'r') },
      });
      expect(back.failed).toEqual([]);
      expect(await readFile(join(tb.dir, 'r/old/report.txt'), 'utf8')).toBe('other words');
    });

    it('keeps a file whose bytes differ from its listing when two downloads agree, warns once, and never fails it (point 2)', async () => {
      const tb = await bed({ driveType: 'business', rewriteOnDownload: /\.(jpe?g|doc)$/i });
      tb.emu.drive.write('Photos/IMG_1.jpg', randomBytes(3000));
      tb.emu.drive.write('Old/letter.doc', randomBytes(2000));
      tb.emu.drive.write('plain.txt', 'plain');
      const e = engine();
      const one = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(one.header.failures).toEqual([]);
      expect(one.header.counts.files).toBe(3);
      const warned = () => tb.logs.filter((l) => l.level === 'warn' && /differ/.test(l.message));
      expect(warned()).toHaveLength(2);
      e.clock.advance(DAY);
      tb.emu.resetCounters();
      const two = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(two.header.failures).toEqual([]);
      expect(two.filesRead).toBe(0);
      expect(warned()).toHaveLength(2);
      const dir = join(tb.dir, 'r');
      await restore({ repo: e.repo, account: account.name, to: { kind: 'dir', dir } });
      const served = await (
        await tb.provider()
      ).open(applyChanges(new Map(), await collect(await tb.provider()), true).get('Photos/IMG_1.jpg')!);
      const chunks: Buffer[] = [];
      for await (const c of served) chunks.push(c as Buffer);
      expect(sha256(await readFile(join(dir, 'Photos/IMG_1.jpg')))).toBe(sha256(Buffer.concat(chunks)));
    });

    it('still refuses a download corrupted on the way (two downloads disagree) (point 2)', async () => {
      const tb = await bed();
      tb.emu.drive.write('photo.jpg', randomBytes(5000));
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      tb.emu.corruptNextDownloads(1);
      const err = await failure(readStream(p, s.get('photo.jpg')!));
      expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
      expect((await readStream(p, s.get('photo.jpg')!)).bytes.length).toBe(5000);
    });

    it('records a file the virus scanner flagged as skipped with the reason, once, not as a failure (point 9)', async () => {
      const tb = await bed({ driveType: 'business' });
      tb.emu.drive.write('tools/eicar.com', 'X5O!P%@AP');
      tb.emu.drive.write('tools/ok.txt', 'ok');
      tb.emu.drive.flagVirus('tools/eicar.com');
      const e = engine();
      tb.emu.resetCounters();
      const one = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(one.header.failures).toEqual([]);
      expect(one.header.skipped).toEqual([
        {
          path: 'tools/eicar.com',
          reason: expect.stringContaining('X-Virus-Infected: Win32/EICAR_Test_File'),
        },
      ]);
      expect(tb.emu.count('download')).toBe(2);
    });

    it('a lost answer to the last fragment of an upload session: the file is found there by name and hash (point 10)', async () => {
      const tb = await bed({ driveType: 'business' }, {}, { write: true });
      const p = await tb.provider();
      const big = randomBytes(5 * 1024 * 1024 + 7);
      tb.emu.loseNextCommitAnswer();
      await p.upload!('Video/clip.mp4', Readable.from([big]), big.length, { overwrite: false });
      expect(sha256(tb.emu.drive.item('Video/clip.mp4')!.content!)).toBe(sha256(big));
      expect(tb.emu.count('createUploadSession')).toBe(1);
    });

    it('restores a file with its modified time and no second version, small or large (point 11)', async () => {
      const tb = await bed({ driveType: 'business' }, {}, { write: true });
      const p = await tb.provider();
      const modified = new Date('2023-04-05T06:07:08.000Z');
      for (const [path, body] of [
        ['small.txt', Buffer.from('small')],
        ['large.bin', randomBytes(4 * 1024 * 1024 + 1)],
      ] as const) {
        await p.upload!(path, Readable.from([body]), body.length, { overwrite: false, modified });
        const item = tb.emu.drive.item(path)!;
        expect(item.fileSystemInfo.lastModifiedDateTime, path).toBe(modified.toISOString());
        expect(item.versions, path).toBe(1);
      }
      expect(tb.emu.count('patch')).toBe(0);
    });

    it('finds the default library of a site by the site, whatever its localised name (point 13)', async () => {
      const emu = await startGraphEmulator({ driveType: 'business' });
      const site = emu.addSite('contoso.sharepoint.com:/sites/berlin', ['Dokumente', 'Berichte']);
      site.libraries.get('Dokumente')!.write('plan.txt', 'plan');
      const tb = await onedriveTestbed(emu, { drive: { site: 'contoso.sharepoint.com:/sites/berlin' } });
      beds.push(tb);
      expect(files(applyChanges(new Map(), await collect(await tb.provider()), true))).toEqual(['plan.txt']);
    });

    it("waits for SharePoint's RateLimit-Reset when RateLimit-Remaining runs low, before any 429 (point 13)", async () => {
      const tb = await bed({ driveType: 'business', pageSize: 2 });
      for (let i = 0; i < 5; i++) tb.emu.drive.write(`f${i}.txt`, `${i}`);
      const waits: number[] = [];
      const pacer = new Pacer({
        baseDelayMs: 1,
        maxDelayMs: 5,
        sleep: (ms) => {
          waits.push(ms);
          return Promise.resolve();
        },
      });
      const p = await createOnedriveProvider(tb.account, { configDir: tb.dir, log: tb.log }, { pacer });
      await collect(p);
      expect(waits).toEqual([]);
      tb.emu.rateLimitNext(1, { limit: 1200, remaining: 60, reset: 31 });
      await collect(p);
      expect(waits.length).toBeGreaterThan(0);
      expect(Math.max(...waits)).toBeGreaterThan(30_000);
      expect(pacer.retries).toBe(0);
    });

    it('Retry-After of 315 s from Graph reaches the pacer for 429 and 503 (point 8)', async () => {
      for (const status of [429, 503]) {
        const tb = await bed();
        tb.emu.drive.write('a.txt', 'a');
        const waits: number[] = [];
        const pacer = new Pacer({
          baseDelayMs: 1,
          maxDelayMs: 5,
          sleep: (ms) => {
            waits.push(ms);
            return Promise.resolve();
          },
        });
        const p = await createOnedriveProvider(tb.account, { configDir: tb.dir, log: tb.log }, { pacer });
        tb.emu.failNext(3, { status, retryAfter: 315, route: 'delta' });
        expect(files(applyChanges(new Map(), await collect(p), true))).toEqual(['a.txt']);
        expect(waits.filter((w) => w >= 315_000).length, String(status)).toBeGreaterThanOrEqual(3);
      }
    });

    it('backs up the sections of a OneNote notebook that is a folder, and skips only the notebook itself (point 6)', async () => {
      const tb = await bed({ driveType: 'business', oneNoteAsFolder: true });
      tb.emu.drive.addPackage('Notes/Family Notebook', {
        'Recipes.one': 'recipes',
        'Open Notebook.onetoc2': 'toc',
      });
      const p = await tb.provider();
      const s = applyChanges(new Map(), await collect(p), true);
      expect(files(s)).toEqual([
        'Notes/Family Notebook/Open Notebook.onetoc2',
        'Notes/Family Notebook/Recipes.one',
      ]);
      expect(s.get('Notes/Family Notebook')!.type).toBe('dir');
      expect((await readStream(p, s.get('Notes/Family Notebook/Recipes.one')!)).bytes.toString()).toBe(
        'recipes',
      );
    });
  });

  describe('with the snapshot engine', () => {
    it('reads each content once across renames and resyncs, and restores back into the drive', async () => {
      const tb = await bed({ driveType: 'business', pageSize: 25 }, {}, { write: true });
      const photos = Array.from({ length: 60 }, (_, i) => randomBytes(2000 + i));
      photos.forEach((b, i) => tb.emu.drive.write(`Photos/${i}.jpg`, b));
      tb.emu.drive.write('Docs/plan.txt', 'plan', { modified: new Date('2025-01-02T03:04:05Z') });
      const e = engine();
      const account = { name: tb.account.name, provider: 'onedrive' };
      const first = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(first.filesRead).toBe(61);

      tb.emu.drive.rename('Photos', 'Pictures');
      e.clock.advance(DAY);
      tb.emu.resetCounters();
      const second = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(second.filesRead).toBe(0);
      expect(tb.emu.count('download')).toBe(0);
      expect(second.header.cursor).not.toBe(first.header.cursor);

      tb.emu.drive.write('Docs/new.txt', 'new');
      tb.emu.resyncNextDelta();
      e.clock.advance(DAY);
      tb.emu.resetCounters();
      const third = await takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      expect(third.filesRead).toBe(1);
      expect(tb.emu.bytesDownloaded).toBe(3);

      const back = await restore({
        repo: e.repo,
        account: account.name,
        path: 'Pictures',
        to: { kind: 'provider', provider: await tb.provider(), folder: 'Restored' },
      });
      expect(back.failed).toEqual([]);
      expect(back.files).toBe(60);
      photos.forEach((b, i) =>
        expect(sha256(tb.emu.drive.item(`Restored/Pictures/${i}.jpg`)!.content!), `${i}.jpg`).toBe(sha256(b)),
      );
      const again = await failure(
        restore({
          repo: e.repo,
          account: account.name,
          path: 'Docs',
          to: { kind: 'provider', provider: await tb.provider(), folder: '' },
        }),
      );
      expect(isSyncguardError(again, 'EXISTS'), String(again)).toBe(true);
    });

    it('keeps the previous version of a file whose download fails, and reads it by its id once it can, though delta never names it again (issue 8, point 1)', async () => {
      const tb = await bed({ driveType: 'personal' });
      tb.emu.drive.write('Docs/plan.txt', 'plan v1');
      tb.emu.drive.write('Docs/other.txt', 'other');
      const e = engine();
      const account = { name: tb.account.name, provider: 'onedrive' };
      // A new provider each night, as a new process has: nothing of the last listing is remembered.
      const night = async () => {
        e.clock.advance(DAY);
        return takeSnapshot({ repo: e.repo, provider: await tb.provider(), account });
      };
      const plan = async (key: string) =>
        (await manifestOf(e.repo, key)).entries.find((x) => x.path === 'Docs/plan.txt');
      await night();

      tb.emu.drive.write('Docs/plan.txt', 'plan v2, edited');
      tb.emu.failNext(100_000, { status: 500, route: 'download' });
      const second = await night();
      expect(second.header.failures.map((f) => f.path)).toEqual(['Docs/plan.txt']);
      expect(await plan(second.key)).toMatchObject({
        sha256: sha256(Buffer.from('plan v1')),
        stale: { runs: 1 },
      });
      const third = await night();
      expect(await plan(third.key)).toMatchObject({
        sha256: sha256(Buffer.from('plan v1')),
        stale: { runs: 2 },
      });

      tb.emu.clearFaults();
      tb.emu.resetCounters();
      const fourth = await night();
      expect(fourth.header.failures).toEqual([]);
      expect(tb.emu.count('download')).toBe(1);
      const fresh = (await plan(fourth.key))!;
      expect(fresh.sha256).toBe(sha256(Buffer.from('plan v2, edited')));
      expect(fresh.stale).toBeUndefined();
    });
  });

  describe('restoring back', () => {
    const modified = new Date('2024-03-01T10:20:30.000Z');

    it('uploads a small file with its modified time, and one without in a single request', async () => {
      const tb = await bed({}, {}, { write: true });
      const p = await tb.provider();
      await p.upload!(
        'Restored/docs/note.txt',
        Readable.from([Buffer.from('hello '), Buffer.from('world')]),
        11,
        { overwrite: false, modified },
      );
      const item = tb.emu.drive.item('Restored/docs/note.txt')!;
      expect(item.content!.toString()).toBe('hello world');
      expect(item.fileSystemInfo.lastModifiedDateTime).toBe(modified.toISOString());
      // The time goes with the upload (an upload session's item), not in a PATCH after it.
      expect(tb.emu.count('createUploadSession')).toBe(1);
      expect(tb.emu.count('patch')).toBe(0);
      await p.upload!('Restored/docs/untimed.txt', Readable.from([Buffer.from('x')]), 1, {
        overwrite: false,
      });
      expect(tb.emu.count('upload')).toBe(1);
      expect(await p.exists!('Restored/docs/note.txt')).toBe(true);
      expect(await p.exists!('Restored/docs/none.txt')).toBe(false);
    });

    it('uploads a large file in 320 KiB-multiple fragments with its modified time, retrying a failed one', async () => {
      const tb = await bed({ driveType: 'business' }, {}, { write: true });
      const p = await tb.provider();
      const big = randomBytes(21 * 1024 * 1024 + 333);
      tb.emu.failNext(1, { status: 503, retryAfter: 0, route: 'uploadFragment' });
      const chunks = [];
      for (let i = 0; i < big.length; i += 65_521) chunks.push(big.subarray(i, i + 65_521));
      await p.upload!('Video/film.mp4', Readable.from(chunks), big.length, { overwrite: false, modified });
      const item = tb.emu.drive.item('Video/film.mp4')!;
      expect(sha256(item.content!)).toBe(sha256(big));
      expect(item.fileSystemInfo.lastModifiedDateTime).toBe(modified.toISOString());
      expect(tb.emu.count('createUploadSession')).toBe(1);
      expect(tb.emu.count('uploadFragment')).toBe(3 + 1);
    });

    it('refuses to overwrite without overwrite (EXISTS), and replaces with it', async () => {
      const tb = await bed({}, {}, { write: true });
      tb.emu.drive.write('Docs/a.txt', 'original');
      tb.emu.drive.write('Docs/big.bin', 'original');
      const p = await tb.provider();
      const small = Buffer.from('restored');
      const big = randomBytes(5 * 1024 * 1024);
      for (const [path, body] of [
        ['Docs/a.txt', small],
        ['Docs/big.bin', big],
      ] as const) {
        const err = await failure(p.upload!(path, Readable.from([body]), body.length, { overwrite: false }));
        expect(isSyncguardError(err, 'EXISTS'), String(err)).toBe(true);
        expect(tb.emu.drive.item(path)!.content!.toString()).toBe('original');
        await p.upload!(path, Readable.from([body]), body.length, { overwrite: true });
        expect(sha256(tb.emu.drive.item(path)!.content!)).toBe(sha256(body));
      }
    });

    it('turns a conflict at the end of an upload session into EXISTS', async () => {
      const tb = await bed({}, {}, { write: true });
      const p = await tb.provider();
      const big = randomBytes(11 * 1024 * 1024);
      let created = false;
      // Someone else creates the file while our fragments are on their way.
      const body = Readable.from(
        (async function* () {
          yield big.subarray(0, 10 * 1024 * 1024);
          if (!created) {
            tb.emu.drive.write('race.bin', 'theirs');
            created = true;
          }
          yield big.subarray(10 * 1024 * 1024);
        })(),
      );
      const err = await failure(p.upload!('race.bin', body, big.length, { overwrite: false }));
      expect(isSyncguardError(err, 'EXISTS'), String(err)).toBe(true);
      expect(tb.emu.drive.item('race.bin')!.content!.toString()).toBe('theirs');
    });

    it('creates folders, and refuses a body shorter than its size', async () => {
      const tb = await bed({}, {}, { write: true });
      const p = await tb.provider();
      await p.mkdir!('A/B/C');
      await p.mkdir!('A/B/C');
      expect(tb.emu.drive.item('A/B/C')!.kind).toBe('folder');
      const err = await failure(
        p.upload!('A/short.txt', Readable.from([Buffer.from('abc')]), 10, { overwrite: false }),
      );
      expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
      expect(tb.emu.drive.item('A/short.txt')).toBeUndefined();
    });

    it('asks to sign in with --write when the sign-in only allows reading', async () => {
      const tb = await bed();
      const p: Provider = await tb.provider();
      const err = await failure(
        p.upload!('x.txt', Readable.from([Buffer.from('x')]), 1, { overwrite: false }),
      );
      expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
      expect(err.message).toContain('syncguard auth onedrive --account work-onedrive --write');
      expect(tb.emu.drive.item('x.txt')).toBeUndefined();
    });
  });
});
