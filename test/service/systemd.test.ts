import { execFile, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { installService, systemdUnits, uninstallService } from '../../src/service/systemd.js';
import { CLI } from '../helpers/cli.js';
import { runCli, tempDir } from '../schedule/_helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
if (!hasAnalyze)
  console.warn('\n!!! service: `systemd-analyze verify` SKIPPED: systemd-analyze is not installed !!!\n');

/** The words of an ExecStart= line, with systemd's double quotes and `%%` undone. */
function execWords(unit: string): string[] {
  const line = /^ExecStart=(.*)$/m.exec(unit)![1];
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) =>
    (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]).replace(/%%/g, '%'),
  );
}

async function configDir(label: string): Promise<string> {
  const dir = await tempDir(label);
  dirs.push(dir);
  await fsp.mkdir(join(dir, 'tree'));
  await fsp.writeFile(join(dir, 'tree', 'a.txt'), 'hello');
  await fsp.writeFile(
    join(dir, 'syncguard.yaml'),
    'store: { type: fs, path: ./store }\nstateDir: ./state\naccounts:\n  - name: docs\n    provider: local\n    path: ./tree\n',
  );
  return dir;
}

describe('service: systemd units', () => {
  const spec = {
    scope: 'user' as const,
    kind: 'timer' as const,
    node: '/opt/node 20/bin/node',
    main: '/home/a/.npm-global/lib/node_modules/syncguard/dist/cli/main.js',
    config: '/home/a/.config/syncguard/syncguard.yaml',
  };

  it('start syncguard by the absolute paths of node and main.js, never /usr/bin/env', () => {
    const units = systemdUnits(spec);
    expect(units.map((u) => u.name)).toEqual([
      'syncguard-snapshot.service',
      'syncguard-snapshot.timer',
      'syncguard-prune.service',
      'syncguard-prune.timer',
    ]);
    for (const u of units) expect(u.text).not.toContain('/usr/bin/env');
    expect(execWords(units[0].text)).toEqual([
      spec.node,
      spec.main,
      'snapshot',
      '-q',
      '--config',
      spec.config,
    ]);
    expect(units[1].text).toContain('OnCalendar=*-*-* 02:00:00\nPersistent=true');
    const system = systemdUnits({ ...spec, kind: 'daemon', scope: 'system', user: 'alice' })[0].text;
    expect(system).toMatch(/^User=alice$/m);
    expect(system).toMatch(/^WantedBy=multi-user\.target$/m);
    expect(() => systemdUnits({ ...spec, node: 'node' })).toThrow(/must be absolute, got "node"/);
  });

  it('install writes and enables them; uninstall disables and removes them', async () => {
    const dir = await tempDir('units');
    dirs.push(dir);
    const calls: string[][] = [];
    const systemctl = async (args: string[]) => void calls.push(args);
    const r = await installService(spec, { dir, enable: true, systemctl });
    expect(r.written).toHaveLength(4);
    expect(calls).toEqual([
      ['--user', 'daemon-reload'],
      ['--user', 'enable', '--now', 'syncguard-snapshot.timer', 'syncguard-prune.timer'],
    ]);
    calls.length = 0;
    const u = await uninstallService('user', { dir, enable: true, systemctl });
    expect(u.removed).toHaveLength(4);
    expect(calls[0]).toEqual([
      '--user',
      'disable',
      '--now',
      'syncguard-snapshot.timer',
      'syncguard-prune.timer',
    ]);
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});

describe('e2e: syncguard service', () => {
  it('installs units whose ExecStart runs under a PATH without node or syncguard, where /usr/bin/env syncguard exits 127', async () => {
    const dir = await configDir('service-cli');
    const units = join(dir, 'units');
    const r = await runCli(
      ['service', 'install', '--user', '--timer', '--unit-dir', units, '--no-enable'],
      dir,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote ${join(units, 'syncguard-snapshot.service')}`);
    expect(r.stdout).toContain(
      'to do: systemctl --user enable --now syncguard-snapshot.timer syncguard-prune.timer',
    );
    const unit = await fsp.readFile(join(units, 'syncguard-snapshot.service'), 'utf8');
    const words = execWords(unit);
    expect(words[0]).toBe(process.execPath);
    expect(await fsp.realpath(words[1])).toBe(await fsp.realpath(CLI));

    // The user manager's PATH holds neither an npm-global nor an nvm bin folder.
    const env = { PATH: '/nonexistent', HOME: dir, TZ: 'UTC' };
    const run = (file: string, args: string[]) =>
      promisify(execFile)(file, args, { cwd: '/', env }).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
    expect(
      await run('/usr/bin/env', ['syncguard', 'snapshot', '--config', join(dir, 'syncguard.yaml')]),
    ).toBe(127);
    expect(await run(words[0], ['--no-warnings', ...words.slice(1, 2), 'init', ...words.slice(-2)])).toBe(0);
    expect(await run(words[0], words.slice(1))).toBe(0);
    expect((await fsp.readdir(join(dir, 'store'))).length).toBeGreaterThan(0);

    const dry = await runCli(['service', 'uninstall', '--user', '--unit-dir', units, '--dry-run'], dir);
    expect(dry.stdout).toContain(`would remove ${join(units, 'syncguard-prune.timer')}`);
    expect(await fsp.readdir(units)).toHaveLength(4);
    const u = await runCli(['service', 'uninstall', '--user', '--unit-dir', units, '--no-enable'], dir);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toContain(`removed ${join(units, 'syncguard-prune.timer')}`);
    expect(await fsp.readdir(units)).toEqual([]);
  }, 60_000);

  it('--dry-run prints the units and writes nothing', async () => {
    const dir = await configDir('service-dry');
    const r = await runCli(['service', 'install', '--system', '--run-as', 'backup', '--dry-run'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('# /etc/systemd/system/syncguard.service\n');
    expect(r.stdout).toMatch(/^User=backup$/m);
    expect(r.stdout).toContain(`ExecStart=${process.execPath} `);
    const both = await runCli(['service', 'install', '--dry-run'], dir);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give --user .* or --system/);
  });

  it.skipIf(!hasAnalyze)('the units pass `systemd-analyze verify`', async () => {
    const dir = await configDir('service-verify');
    for (const timer of [false, true]) {
      const units = join(dir, timer ? 'timer' : 'daemon');
      const args = [
        'service',
        'install',
        '--user',
        '--unit-dir',
        units,
        '--no-enable',
        ...(timer ? ['--timer'] : []),
      ];
      expect((await runCli(args, dir)).code).toBe(0);
      const files = (await fsp.readdir(units)).map((f) => join(units, f));
      const v = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8' });
      expect(v.status, v.stderr).toBe(0);
      // verify exits 0 on an unknown key too; it says so on stderr.
      expect(v.stderr.trim()).toBe('');
    }
  });
});
