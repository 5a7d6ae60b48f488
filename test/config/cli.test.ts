import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, expectCli, expectNoSecret, tempDir, writeConfig } from '../helpers/cli.js';

/** The config file as the command line meets it: `syncguard config …`, and every command refusing a wrong one. */
describe('config: command line', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('config-cli');
    await fsp.mkdir(join(dir, 'src'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const good = [
    'store: { type: fs, path: ./store }',
    'stateDir: ./state',
    'accounts:',
    '  - { name: laptop, provider: local, path: ./src }',
    '',
  ].join('\n');

  it('prints the JSON Schema of the config file with `config schema`', async () => {
    const r = await expectCli(['config', 'schema'], { cwd: dir }, 0);
    const schema = JSON.parse(r.stdout);
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(['store', 'accounts', 'schedule', 'keep']),
    );
    expect(r.stderr).toBe('');
    // It needs no config file at all.
    expect(existsSync(join(dir, 'syncguard.yaml'))).toBe(false);
  });

  it('checks a config with `config check`: ok, or the mistakes with file and line and exit code 2', async () => {
    await writeConfig(dir, good, 'good.yaml');
    const ok = await expectCli(['-c', 'good.yaml', 'config', 'check'], { cwd: dir }, 0);
    expect(ok.stdout).toContain('good.yaml: ok, 1 account(s): laptop (local)');
    await writeConfig(dir, good.replace('provider: local', 'provider: dropbx'), 'bad.yaml');
    const bad = await expectCli(['-c', 'bad.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toBe(
      `syncguard: ${join(dir, 'bad.yaml')}:4 accounts[0].provider: expected "local" | "dropbox" | "onedrive", got "dropbx"\n`,
    );
  });

  it('finds ./syncguard.yaml, else $SYNCGUARD_CONFIG, and says so when there is none', async () => {
    const none = await expectCli(['snapshots'], { cwd: dir }, 2);
    expect(none.stderr).toContain(`no config file at ${join(dir, 'syncguard.yaml')}`);
    const viaEnv = await expectCli(
      ['config', 'check'],
      { cwd: dir, env: { SYNCGUARD_CONFIG: join(dir, 'good.yaml') } },
      0,
    );
    expect(viaEnv.stdout).toContain('good.yaml: ok');
  });

  it('writes nothing anywhere when the config is wrong: every command stops with exit code 2', async () => {
    const wrong = good.replace('path: ./src }', 'path: ./src, colour: blue }');
    await writeConfig(dir, wrong, 'wrong.yaml');
    for (const args of [
      ['init'],
      ['snapshot'],
      ['snapshot', 'laptop'],
      ['snapshots'],
      ['restore', 'laptop', '--at', '2026-11-20', '--to', 'out'],
      ['verify'],
      ['ls', 'laptop'],
      ['diff', 'laptop', '2026-11-01', '2026-11-20'],
    ]) {
      const r = await expectCli(['-c', 'wrong.yaml', ...args], { cwd: dir }, 2);
      expect(r.stderr, args.join(' ')).toContain(`wrong.yaml:4 accounts[0]: unknown key "colour" (a typo?)`);
    }
    expect((await fsp.readdir(dir)).sort()).toEqual(['bad.yaml', 'good.yaml', 'src', 'wrong.yaml']);
  });

  it('never prints a secret from the environment, and says CONFIG in --json', async () => {
    const secret = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY-0123456789-abcdefghijklmnop';
    await writeConfig(
      dir,
      [
        'store:',
        '  type: s3',
        '  bucket: ${AWS_SECRET_ACCESS_KEY}',
        '  objectLock: off',
        '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
        '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
        'stateDir: ./state',
        'accounts:',
        '  - { name: laptop, provider: local, path: ./src }',
        '',
      ].join('\n'),
      'leaky.yaml',
    );
    const env = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: secret };
    const text = await expectCli(['-c', 'leaky.yaml', 'init'], { cwd: dir, env }, 2);
    expect(text.stderr).toContain('leaky.yaml:3 store.bucket: ');
    expect(text.stderr).toContain('(hidden: from ${AWS_SECRET_ACCESS_KEY})');
    expectNoSecret(text, secret);
    const json = await cliJson<{ error: { code: string; message: string } }>(
      ['-c', 'leaky.yaml', 'snapshots'],
      { cwd: dir, env },
      2,
    );
    expect(json.error.code).toBe('CONFIG');
    expect(json.error.message).toContain('store.bucket');
    expect(JSON.stringify(json)).not.toContain(secret);
    expect(existsSync(join(dir, 'state'))).toBe(false);
  });
});
