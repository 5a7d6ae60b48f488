/**
 * `syncguard daemon` as systemd runs it, with a hostile object planted in its store (issue 8, point
 * 2): the account it targets is alerted and carries on from what is readable, the other account runs,
 * and the process stays up. Before, readline threw an uncaught RangeError and the daemon died.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { manifestKey, snapshotId } from '../../src/snapshot/layout.js';
import { leftovers, prose, receiver, runCli, startCli, tempDir, writeFiles } from '../schedule/_helpers.js';
import { longLineManifest } from './_hostile.js';
import { FS_STORE_YAML, configYaml, writeConfig } from '../helpers/cli.js';

const { dirs, children } = leftovers();

describe('adversarial: the daemon and a planted object', () => {
  it('survives a planted 600 MB-line manifest: that account is alerted and still snapshotted, the other runs', async () => {
    const dir = await tempDir('hostile-daemon');
    dirs.push(dir);
    const hook = await receiver();
    try {
      for (const a of ['docs', 'photos'])
        await writeFiles(
          join(dir, a),
          Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`n${i}.txt`, prose(i, 500)])),
        );
      await writeConfig(
        dir,
        configYaml({
          store: FS_STORE_YAML,
          settings: [
            'schedule: { cron: "*/2 * * * * *", timezone: UTC }',
            `alerts: { webhook: "${hook.url}/alert" }`,
          ],
          accounts: ['docs', 'photos'].map((name) => ({ name, provider: 'local', path: `./${name}` })),
        }),
      );
      const id = snapshotId(new Date(Date.now() - 3_600_000));
      const planted = manifestKey('photos', id);
      await fsp.mkdir(join(dir, 'store', 'snapshots', 'photos'), { recursive: true });
      await fsp.writeFile(join(dir, 'store', planted), longLineManifest('photos', id));

      const d = startCli(['daemon'], dir);
      children.push(d);
      await d.waitFor(/photos: snapshot \S+: 5 files[^\n]*damaged or planted[^\n]*\(ok,/);
      await d.waitFor(/docs: snapshot \S+: 5 files[^\n]*\(ok,/);
      expect(d.child.exitCode).toBeNull();
      expect(d.stderr()).not.toMatch(/RangeError/);

      const alert = hook.got.map((r) => JSON.parse(r.body)).find((p) => p.account === 'photos');
      expect(alert).toMatchObject({ event: 'partial', result: 'ok' });
      expect(alert.warnings.join('\n')).toContain(planted);
      expect(alert.warnings.join('\n')).toMatch(/longer than 1 MiB/);

      // The CLI lists and reads past it too.
      const ls = await runCli(['ls', 'photos'], dir);
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toContain('n0.txt');

      d.child.kill('SIGTERM');
      expect((await d.exited).code, d.stderr()).toBe(0);
    } finally {
      await hook.close();
    }
  }, 120_000);
});
