import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { daemon, snapshot, verifyStore, type Context } from '../../src/api.js';
import { configSchema } from '../../src/config/schema.js';
import { FsStore } from '../../src/store/fs.js';
import { prose, tempDir, withOverrides, writeFiles } from './_helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('schedule: the daemon never prunes beside its own snapshot', () => {
  it('on an fs store, a prune due while its snapshot runs deletes nothing that snapshot reuses: verify is clean', async () => {
    const dir = await tempDir('daemon-prune');
    dirs.push(dir);
    const tree = join(dir, 'tree');
    const big = randomBytes(1536 * 1024);
    const config = configSchema.parse({
      store: { type: 'fs', path: join(dir, 'store') },
      stateDir: join(dir, 'state'),
      schedule: { cron: '* * * * * *', timezone: 'UTC' },
      keep: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 },
      prune: { graceHours: 0, cron: '* * * * * *' },
      tripwire: { enabled: false },
      accounts: [{ name: 'docs', provider: 'local', path: tree }],
    });
    const logs: string[] = [];
    const saw = (re: RegExp) => logs.some((l) => re.test(l));
    // The snapshot reaches its pack (it has chosen to reuse the big blob) before the prune lists the
    // snapshots, and writes its manifest only once the prune is done, or is seen to wait.
    let armed = false;
    let atPack = false;
    const store = withOverrides(new FsStore(join(dir, 'store')), {
      list: (prefix, signal) => {
        const inner = new FsStore(join(dir, 'store'));
        if (!armed || prefix !== 'snapshots/') return inner.list(prefix, signal);
        return (async function* () {
          await until(() => atPack || saw(/docs: waits for the prune/), 'the snapshot to reach its pack');
          yield* inner.list(prefix, signal);
        })();
      },
      put: async (key, body, opts) => {
        if (armed && key.endsWith('.pack') && !atPack) {
          atPack = true;
          await until(() => saw(/prune: removed|prune waits|prune failed/), 'the prune');
        }
        return new FsStore(join(dir, 'store')).put(key, body, opts);
      },
    });
    const ctx: Context = {
      config,
      file: join(dir, 'syncguard.yaml'),
      dir,
      store,
      log: (_level, m) => logs.push(m),
    };

    // Night 1 holds big.bin (a blob of its own); night 2 does not; then big.bin comes back.
    await writeFiles(tree, { 'big.bin': big, 'a.txt': prose(1) });
    expect((await snapshot(ctx, ['docs']))[0]).toMatchObject({ ok: true });
    await fsp.rm(join(tree, 'big.bin'));
    await writeFiles(tree, { 'b.txt': prose(2) });
    expect((await snapshot(ctx, ['docs']))[0]).toMatchObject({ ok: true });
    await writeFiles(tree, { 'big.bin': big, 'c.txt': prose(3) });

    armed = true;
    const stop = new AbortController();
    const running = daemon(ctx, { signal: stop.signal });
    try {
      await until(
        () => saw(/prune: removed/) && saw(/docs: snapshot \S+: 4 files/),
        'a prune and a snapshot',
      );
    } finally {
      stop.abort();
      await running;
    }
    const v = await verifyStore(ctx);
    expect(v.problems).toEqual([]);
  }, 120_000);
});
