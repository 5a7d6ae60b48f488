import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCli, expectNoSecret, tempDir, writeConfig } from '../helpers/cli.js';

/** Bad input is caught where it is typed (issue 8, points 11 and 13): in the config, with its line,
 *  and on the command line, with exit code 2 and the forms that are accepted. */
describe('config and arguments: bad input stops at the door', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('config-input');
    await fsp.mkdir(join(dir, 'src'));
    await fsp.writeFile(join(dir, 'src', 'a.txt'), 'a');
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const config = (extra: string[] = [], account = '  - { name: laptop, provider: local, path: ./src }') =>
    ['store: { type: fs, path: ./store }', 'stateDir: ./state', ...extra, 'accounts:', account, ''].join(
      '\n',
    );

  it('refuses a cron hour 25 and an unknown timezone in `config check`, with file and line', async () => {
    await writeConfig(dir, config(['schedule:', '  cron: "0 25 * * *"', '  timezone: UTC']), 'cron.yaml');
    const cron = await expectCli(['-c', 'cron.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(cron.stderr).toMatch(
      new RegExp(`${join(dir, 'cron.yaml')}:4 schedule\\.cron: "0 25 \\* \\* \\*" is not a valid cron`),
    );

    await writeConfig(dir, config(['schedule: { cron: "0 2 * * *", timezone: Europe/Berln }']), 'tz.yaml');
    const tz = await expectCli(['-c', 'tz.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(tz.stderr).toContain(
      `${join(dir, 'tz.yaml')}:3 schedule.timezone: "Europe/Berln" is not a timezone this system knows`,
    );
    // --at must not quietly run in UTC instead: every command refuses the config.
    const at = await expectCli(['-c', 'tz.yaml', 'ls', 'laptop', '--at', '2026-11-20'], { cwd: dir }, 2);
    expect(at.stderr).toContain('schedule.timezone');

    await writeConfig(
      dir,
      config(
        [],
        [
          '  - name: laptop',
          '    provider: local',
          '    path: ./src',
          '    schedule: { cron: "61 2 * * *", timezone: Mars/Olympus }',
        ].join('\n'),
      ),
      'own.yaml',
    );
    const own = await expectCli(['-c', 'own.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(own.stderr).toContain(`${join(dir, 'own.yaml')}:7 accounts[0].schedule.cron: "61 2 * * *"`);
    expect(own.stderr).toContain(`${join(dir, 'own.yaml')}:7 accounts[0].schedule.timezone: "Mars/Olympus"`);

    await writeConfig(dir, config(['prune: { cron: "* * * * * * *" }']), 'prune.yaml');
    const prune = await expectCli(['-c', 'prune.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(prune.stderr).toContain(`${join(dir, 'prune.yaml')}:3 prune.cron: "* * * * * * *"`);
  });

  it('turns a YAML alias bomb into a config error naming the file (exit 2, not 1)', async () => {
    const bomb = [
      'a: &a ["x","x","x","x","x","x","x","x","x","x"]',
      ...Array.from(
        { length: 8 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
            .fill(`*${String.fromCharCode(97 + i)}`)
            .join(',')}]`,
      ),
      config(),
    ].join('\n');
    await writeConfig(dir, bomb, 'bomb.yaml');
    const r = await expectCli(['-c', 'bomb.yaml', 'config', 'check'], { cwd: dir }, 2);
    expect(r.stderr).toContain(`${join(dir, 'bomb.yaml')}: `);
    expect(r.stderr).toMatch(/aliases/);
  });

  it('refuses ${…} in the string form of alerts.command, at its line', async () => {
    await writeConfig(dir, config(['alerts:', '  command: "notify --token ${ALERT_TOKEN}"']), 'sh.yaml');
    const r = await expectCli(
      ['-c', 'sh.yaml', 'config', 'check'],
      { cwd: dir, env: { ALERT_TOKEN: ';touch pwned' } },
      2,
    );
    expect(r.stderr).toContain(`${join(dir, 'sh.yaml')}:4 alerts.command: `);
    expect(r.stderr).toContain('the list form');
    expectNoSecret(r, ';touch pwned');
    expect(existsSync(join(dir, 'pwned'))).toBe(false);
  });

  it('gives ${…} of the list form of alerts.command to the command in its environment, never in its arguments', async () => {
    const secret = 'tok;touch pwned-$(id)';
    const script =
      'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>require("fs").writeFileSync(process.argv[1],JSON.stringify({argv:process.argv.slice(2),env:process.env.ALERT_TOKEN})))';
    await writeConfig(
      dir,
      config([
        'alerts:',
        '  on: [success]',
        `  command: [${JSON.stringify(process.execPath)}, "-e", ${JSON.stringify(script)}, ./got.json, "--token=\${ALERT_TOKEN}"]`,
      ]),
      'argv.yaml',
    );
    const r = await expectCli(['-c', 'argv.yaml', 'snapshot'], { cwd: dir, env: { ALERT_TOKEN: secret } }, 0);
    expectNoSecret(r, secret);
    const got = JSON.parse(await fsp.readFile(join(dir, 'got.json'), 'utf8')) as {
      argv: string[];
      env: string;
    };
    expect(got.env).toBe(secret);
    expect(got.argv).toEqual(['--token=${ALERT_TOKEN}']);
    expect(JSON.stringify(got.argv)).not.toContain('tok;');
    // A variable that is not set is still a config error.
    await expectCli(['-c', 'argv.yaml', 'config', 'check'], { cwd: dir }, 2);
  });

  it('accepts only the documented --at forms, else exit 2 with the forms listed', async () => {
    await writeConfig(dir, config(['schedule: { timezone: UTC }']), 'at.yaml');
    await expectCli(['-c', 'at.yaml', 'snapshot'], { cwd: dir }, 0);
    // Every form, one by one: test/snapshot/parse-at.test.ts.
    const junk = '2026-12-03 15:37 (comment) junk';
    for (const args of [
      ['ls', 'laptop', '--at', junk],
      ['restore', 'laptop', '--at', junk, '--to', 'out'],
      ['diff', 'laptop', 'latest', junk],
    ]) {
      const r = await expectCli(['-c', 'at.yaml', ...args], { cwd: dir }, 2);
      expect(r.stderr, args.join(' ')).toMatch(
        /is not a snapshot id .*, a date .*, a date-time .* or "latest"/,
      );
    }
    expect(existsSync(join(dir, 'out'))).toBe(false);
    const ids = await expectCli(['-c', 'at.yaml', 'snapshots', '--json'], { cwd: dir }, 0);
    const [{ id }] = JSON.parse(ids.stdout) as Array<{ id: string }>;
    await expectCli(['-c', 'at.yaml', 'diff', 'laptop', id, 'latest'], { cwd: dir }, 0);
    const r = await expectCli(
      ['-c', 'at.yaml', 'ls', 'laptop', '--at', '2099-01-01T00:00:00Z'],
      { cwd: dir },
      0,
    );
    expect(r.stdout).toContain('a.txt');
  });

  it('calls `restore --path ../x` a usage error (exit 2)', async () => {
    await writeConfig(dir, config(), 'path.yaml');
    await expectCli(['-c', 'path.yaml', 'snapshot'], { cwd: dir }, 0);
    const r = await expectCli(
      ['-c', 'path.yaml', 'restore', 'laptop', '--at', 'latest', '--path', '../x', '--to', 'out2'],
      { cwd: dir },
      2,
    );
    expect(r.stderr).toContain('--path');
    expect(existsSync(join(dir, 'out2'))).toBe(false);
  });
});
