import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema, configPath, loadConfig, parseConfig } from '../../src/config/load.js';
import { SyncguardError, isSyncguardError } from '../../src/errors.js';

const FILE = '/etc/syncguard/syncguard.yaml';

/** The CONFIG error a config text gets. */
function configError(text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(text, FILE, env);
  } catch (e) {
    if (!isSyncguardError(e, 'CONFIG')) throw e;
    return e.message;
  }
  throw new Error('the config was accepted');
}

const lines = (...l: string[]) => l.join('\n') + '\n';

const GOOD = lines(
  'store:',
  '  type: fs',
  '  path: /mnt/backup',
  'accounts:',
  '  - name: laptop',
  '    provider: local',
  '    path: ~/Documents',
);

describe('config: load', () => {
  it('reads a minimal config and fills in the defaults', () => {
    const c = parseConfig(GOOD, FILE, {});
    expect(c.store).toEqual({ type: 'fs', path: '/mnt/backup', prefix: '' });
    expect(c.accounts).toEqual([
      {
        name: 'laptop',
        provider: 'local',
        path: '~/Documents',
        include: [],
        exclude: [],
        followSymlinks: false,
      },
    ]);
    expect(c).toMatchObject({
      concurrency: 4,
      packThreshold: 1024 * 1024,
      packSize: 16 * 1024 * 1024,
      schedule: { cron: '0 2 * * *' },
    });
    expect(c.keep).toMatchObject({ daily: 14, weekly: 8, monthly: 24, yearly: 5 });
  });

  it('reads sizes written with units', () => {
    const c = parseConfig(GOOD + 'packThreshold: 512KiB\npackSize: "64 MiB"\n', FILE, {});
    expect(c.packThreshold).toBe(512 * 1024);
    expect(c.packSize).toBe(64 * 1024 * 1024);
    expect(configError(GOOD + 'packSize: 64 parsecs\n')).toBe(
      `${FILE}:8 packSize: expected a size such as 1048576, "1MiB" or "64 MiB", got "64 parsecs"`,
    );
  });

  it('names file, line, key, what was expected and what was found for a misspelt provider', () => {
    expect(configError(GOOD.replace('provider: local', 'provider: dropbx'))).toBe(
      `${FILE}:6 accounts[0].provider: expected "local" | "dropbox" | "onedrive", got "dropbx"`,
    );
    expect(configError(GOOD.replace('type: fs', 'type: s4'))).toBe(
      `${FILE}:2 store.type: expected "s3" | "fs", got "s4"`,
    );
  });

  it('names an unknown key at its own line (regression: the line was the one its section starts on)', () => {
    const text = lines(
      'store:',
      '  type: fs',
      '  path: /mnt/backup',
      'accounts:',
      '  - name: laptop',
      '    provider: local',
      '    path: ~/Documents',
      '    exlude: ["*.tmp"]',
    );
    expect(configError(text)).toBe(`${FILE}:8 accounts[0]: unknown key "exlude" (a typo?)`);
    expect(configError(GOOD + 'colour: blue\n')).toBe(
      `${FILE}:8 (top level): unknown key "colour" (a typo?)`,
    );
  });

  it('names a missing required key', () => {
    expect(configError(GOOD.replace('    path: ~/Documents\n', ''))).toBe(
      `${FILE}:5 accounts[0].path: is required (expected string)`,
    );
    const empty = configError('');
    expect(empty).toContain(`${FILE} store: is required`);
    expect(empty).toContain(`${FILE} accounts: is required`);
  });

  it('substitutes ${ENV}, names the variable and the line when it is not set, and keeps $$ as a dollar', () => {
    const text = lines(
      'store:',
      '  type: s3',
      '  bucket: family-vault',
      '  objectLock: { mode: COMPLIANCE, days: 30 }',
      '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
      '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
      'accounts:',
      '  - name: laptop',
      '    provider: local',
      '    path: /data/$$HOME/${SUB}',
    );
    const c = parseConfig(text, FILE, {
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG',
      SUB: 'docs',
    });
    expect(c.store).toMatchObject({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG' });
    expect(c.accounts[0]).toMatchObject({ path: '/data/$HOME/docs' });
    expect(configError(text, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', SUB: 'x' })).toBe(
      `${FILE}:6 store.secretAccessKey: the environment variable AWS_SECRET_ACCESS_KEY is not set (the config says \${AWS_SECRET_ACCESS_KEY})`,
    );
  });

  it('never shows a secret\'s value: a wrong-typed secretAccessKey is "(hidden)"', () => {
    const text = lines(
      'store:',
      '  type: s3',
      '  bucket: family-vault',
      '  objectLock: off',
      '  accessKeyId: AKIDEXAMPLE',
      '  secretAccessKey: 918273645546372819',
      'accounts:',
      '  - { name: laptop, provider: local, path: /x }',
    );
    const message = configError(text);
    expect(message).toBe(`${FILE}:6 store.secretAccessKey: expected string, got (hidden)`);
    expect(message).not.toContain('918273645546372819');
    const token = configError(
      lines(
        'store: { type: fs, path: /b }',
        'accounts:',
        '  - { name: d, provider: dropbox, appKey: k, refreshToken: [sl.AbCdEf123456] }',
      ),
    );
    expect(token).toContain('accounts[0].refreshToken: expected string, got (hidden)');
    expect(token).not.toContain('AbCdEf123456');
  });

  it('never shows a value that came from the environment, whatever key it is under (regression: a secret put in another key was echoed)', () => {
    const text = lines(
      'store:',
      '  type: s3',
      '  bucket: ${BUCKET}',
      '  objectLock: off',
      'accounts:',
      '  - { name: laptop, provider: local, path: /x }',
    );
    const secret = 'x'.repeat(70) + 'SECRETVALUE';
    const message = configError(text, { BUCKET: secret });
    expect(message).toMatch(new RegExp(`^${FILE}:3 store.bucket: .*\\(hidden: from \\$\\{BUCKET\\}\\)$`));
    expect(message).not.toContain('SECRETVALUE');
  });

  it('reports YAML syntax errors, duplicate keys and duplicate account names with their line', () => {
    expect(configError(lines('store:', '  type: fs', '  path: [unclosed', 'accounts: []'))).toMatch(
      new RegExp(`^${FILE}:\\d+: the file is not valid YAML: `),
    );
    expect(configError(lines('store:', '  type: fs', '  type: s3', '  path: /b', 'accounts: []'))).toMatch(
      new RegExp(`^${FILE}:3: the file is not valid YAML: .*[Mm]ap keys must be unique`),
    );
    expect(configError(GOOD + '  - name: laptop\n    provider: local\n    path: /other\n')).toBe(
      `${FILE}:8 accounts[1].name: the account name "laptop" is used twice, got "laptop"`,
    );
    expect(configError(GOOD.replace('name: laptop', 'name: My Laptop'))).toMatch(
      /:5 accounts\[0\]\.name: expected lower-case letters, digits and "-".*got "My Laptop"$/,
    );
  });

  it('reads reread in days or off, top-level and per local account, and says what it accepts', () => {
    expect(parseConfig(GOOD, FILE, {}).reread).toBe(30);
    const c = parseConfig(GOOD + '    reread: 7d\nreread: off\n', FILE, {});
    expect(c.reread).toBe(0);
    expect(c.accounts[0]).toMatchObject({ reread: 7 });
    expect(configError(GOOD + 'reread: 3w\n')).toMatch(
      new RegExp(`^${FILE}:8 reread: expected a number of days such as "30d" \\(1d to 9999d\\), or off`),
    );
  });

  it('says what objectLock accepts', () => {
    const text = lines(
      'store:',
      '  type: s3',
      '  bucket: family-vault',
      '  objectLock: { mode: STRICT, days: 30 }',
      'accounts:',
      '  - { name: laptop, provider: local, path: /x }',
    );
    expect(configError(text)).toMatch(
      new RegExp(
        `^${FILE}:4 store.objectLock: expected \\{ mode: COMPLIANCE or GOVERNANCE, days: 1 to 36500 \\}, or off`,
      ),
    );
    expect(configError(text.replace('objectLock: { mode: STRICT, days: 30 }\n', ''))).toContain(
      'store.objectLock: ',
    );
  });

  it('lists several mistakes at once, each on its own line', () => {
    const text = lines(
      'store: { type: fs }',
      'accounts:',
      '  - { name: a, provider: local }',
      '  - { name: b, provider: dropbox }',
    );
    const message = configError(text);
    expect(message.split('\n')).toEqual([
      `${FILE}:1 store.path: is required (expected string)`,
      `${FILE}:3 accounts[0].path: is required (expected string)`,
      `${FILE}:4 accounts[1].appKey: is required (expected string)`,
    ]);
  });

  it('says where it looked when there is no config file, and how to make one', async () => {
    const missing = join(tmpdir(), 'sg-no-such-dir', 'syncguard.yaml');
    const err = (() => {
      try {
        loadConfig(missing, {});
      } catch (e) {
        return e as SyncguardError;
      }
    })();
    expect(err?.code).toBe('CONFIG');
    expect(err?.message).toBe(
      `no config file at ${missing}: copy config.example.yaml to syncguard.yaml and edit it, or point --config (or $SYNCGUARD_CONFIG) at yours`,
    );
    const dir = await fsp.mkdtemp(join(tmpdir(), 'sg-config-'));
    await fsp.writeFile(join(dir, 'syncguard.yaml'), GOOD);
    const loaded = loadConfig(join(dir, 'syncguard.yaml'), {});
    expect(loaded).toMatchObject({ file: join(dir, 'syncguard.yaml'), dir });
    await fsp.rm(dir, { recursive: true });
  });

  it('finds the config: --config, else $SYNCGUARD_CONFIG, else ./syncguard.yaml', () => {
    expect(configPath('my.yaml', { SYNCGUARD_CONFIG: '/etc/sg.yaml' })).toBe(resolve('my.yaml'));
    expect(configPath(undefined, { SYNCGUARD_CONFIG: '/etc/sg.yaml' })).toBe('/etc/sg.yaml');
    expect(configPath(undefined, {})).toBe(resolve('syncguard.yaml'));
  });

  it('describes the config file as a JSON Schema, for editors', () => {
    const schema = configJsonSchema() as {
      $schema: string;
      type: string;
      required: string[];
      properties: Record<
        string,
        { items?: { oneOf?: Array<{ properties: { provider: { const: string } } }> } }
      >;
      additionalProperties: boolean;
    };
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.type).toBe('object');
    expect(schema.required).toEqual(expect.arrayContaining(['store', 'accounts']));
    expect(schema.additionalProperties).toBe(false);
    const providers = schema.properties.accounts.items!.oneOf!.map((o) => o.properties.provider.const);
    expect(providers.sort()).toEqual(['dropbox', 'local', 'onedrive']);
    // Plain JSON: it survives a round trip unchanged.
    expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
  });
});
