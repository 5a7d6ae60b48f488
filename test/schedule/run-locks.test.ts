import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { SyncguardError } from '../../src/errors.js';
import { runAccount, type RunEnv } from '../../src/schedule/run.js';
import { DAY, memoryRepo, prose, snap, tempDir, withOverrides, writeFiles } from './_helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

/**
 * After a snapshot is stored, a run extends the locks of the snapshots the keep policy keeps. A run
 * stopped there, or a store that refuses the extension, must not lose the snapshot just stored, and
 * must say what was not done.
 */
async function setup() {
  const dir = await tempDir('run-locks');
  dirs.push(dir);
  const root = join(dir, 'tree');
  await writeFiles(
    root,
    Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`f${i}.txt`, prose(i, 900)])),
  );
  let refuse = false;
  const { clock, repo } = memoryRepo({
    lockDays: 30,
    wrap: (s) =>
      withOverrides(s, {
        extendRetention: (key, until) =>
          refuse
            ? Promise.reject(new SyncguardError('STORE_UNAVAILABLE', 'the store refused to extend a lock'))
            : s.extendRetention(key, until),
      }),
  });
  const config = configSchema.parse({
    store: { type: 'fs', path: join(dir, 'store') },
    stateDir: join(dir, 'state'),
    accounts: [{ name: 'docs', provider: 'local', path: root }],
  });
  const env: RunEnv = { config, configDir: dir, repo, log: () => {} };
  // A first snapshot, locked for 30 days; the run 20 days later has to extend its lock.
  const first = await snap(repo, root);
  clock.advance(20 * DAY);
  await writeFiles(root, { 'new.txt': prose(9, 700) });
  return { env, repo, root, first, account: config.accounts[0], refuseFromNow: () => (refuse = true) };
}

describe('schedule: the locks a run extends after its snapshot', () => {
  it('a run stopped while extending the locks keeps its snapshot and says the next run extends them', async () => {
    const { env, repo, root, first, account } = await setup();
    const stop = new AbortController();
    const outcome = await runAccount(
      env,
      account,
      async () => {
        const r = await snap(repo, root);
        stop.abort();
        return r;
      },
      { signal: stop.signal },
    );
    expect(outcome.ok).toBe(true);
    expect(outcome.report.result).toBe('ok');
    expect(outcome.report.snapshot?.files).toBe(5);
    expect(outcome.report.warnings).toContain(
      'stopped before the locks of the snapshots kept were extended; the next run extends them',
    );
    expect(outcome.report.locks).toBeUndefined();
    const locked = await repo.store.head(first.key);
    expect(locked?.retainUntil?.getTime()).toBeLessThan(repo.now().getTime() + 30 * DAY);
  });

  it('a store that refuses to extend a lock fails the run with its code, naming the snapshot that was stored', async () => {
    const { env, repo, root, account, refuseFromNow } = await setup();
    const outcome = await runAccount(env, account, async () => {
      const r = await snap(repo, root);
      refuseFromNow();
      return r;
    });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    const id = outcome.result!.id;
    expect(outcome.error.code).toBe('STORE_UNAVAILABLE');
    expect(outcome.error.message).toBe(
      `the snapshot ${id} was stored, but the locks of the snapshots kept could not be extended: STORE_UNAVAILABLE: the store refused to extend a lock; the next run tries again`,
    );
    expect(outcome.report).toMatchObject({
      result: 'failed',
      snapshot: { id, files: 5 },
      error: { code: 'STORE_UNAVAILABLE' },
    });
  });

  it('without a stop or a refusal, the kept snapshot is locked for the whole lock time again', async () => {
    const { env, repo, root, first, account } = await setup();
    const outcome = await runAccount(env, account, () => snap(repo, root));
    expect(outcome.ok).toBe(true);
    expect(outcome.report.locks?.snapshots).toContain(first.id);
    const locked = await repo.store.head(first.key);
    expect(locked?.retainUntil?.getTime()).toBeGreaterThanOrEqual(repo.now().getTime() + 30 * DAY);
  });
});
