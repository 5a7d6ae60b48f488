import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lettersFolder, prose, receiver, runCli, writeFiles } from '../schedule/_helpers.js';

/**
 * The tripwire from the command line: a night of ransomware, the alert, prune refusing to let the
 * good snapshots go, status saying so, and `syncguard ack` letting prune resume.
 */
describe('e2e: prune, the tripwire and ack', () => {
  let dir: string;
  let rx: Awaited<ReturnType<typeof receiver>>;
  const cli = (args: string[]) => runCli(args, dir);

  beforeAll(async () => {
    rx = await receiver();
    dir = await lettersFolder('e2e-prune', [
      `alerts: { on: [failure, tripwire], webhook: "${rx.url}/hook" }`,
    ]);
  });
  afterAll(async () => {
    await rx.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('fires on an encrypted night, keeps every snapshot until acknowledged, then prunes', async () => {
    expect((await cli(['snapshot'])).code).toBe(0);
    await writeFiles(join(dir, 'tree'), { 'docs/draft.txt': prose(100) });
    expect((await cli(['snapshot'])).code).toBe(0);
    await fsp.rm(join(dir, 'tree', 'docs', 'draft.txt'));

    // The night of the attack: most letters encrypted and renamed, a note beside them.
    for (let i = 0; i < 50; i++) {
      const p = join(dir, 'tree', 'docs', `d${i % 3}`, `letter-${i}.txt`);
      await fsp.writeFile(p, randomBytes(6000));
      await fsp.rename(p, `${p}.crypt`);
    }
    await writeFiles(join(dir, 'tree'), { 'docs/d0/HOW_TO_DECRYPT.txt': 'pay us' });
    const attacked = await cli(['snapshot']);
    expect(attacked.code, attacked.stderr).toBe(4);
    expect(attacked.stdout).toMatch(
      /TRIPWIRE: 82% of the files reappeared under another extension \(50 of 61: \.crypt: 50/,
    );
    const alert = JSON.parse(rx.got.find((r) => r.url === '/hook')!.body);
    expect(alert).toMatchObject({
      event: 'tripwire',
      account: 'docs',
      result: 'tripwire',
      tripwire: { fired: true },
    });
    expect(alert.summary).toMatch(
      /RANSOMWARE TRIPWIRE: .*Pruning of this account stops until `syncguard ack docs`/,
    );

    const blocked = await cli(['prune']);
    expect(blocked.code, blocked.stderr).toBe(4);
    expect(blocked.stderr).toMatch(
      /docs was not pruned: the ransomware tripwire fired on \d{8}T\d{6}\.\d{3}Z .*run `syncguard ack docs`/,
    );
    expect(blocked.stdout).not.toMatch(/^removed +docs/m);
    expect(blocked.stdout.match(/^keep +docs/gm)).toHaveLength(3);

    const st = await cli(['status', '--json']);
    expect(st.code).toBe(4);
    const docs = JSON.parse(st.stdout).accounts[0];
    expect(docs).toMatchObject({
      account: 'docs',
      snapshots: 3,
      kept: 3,
      tripwire: { tripped: true },
      lastRun: { result: 'tripwire', trigger: 'manual' },
    });
    expect(docs.lastGood.id).not.toBe(docs.tripwire.fired[0].id);

    const acked = await cli(['ack', 'docs', '--note', 'checked: a test']);
    expect(acked.code).toBe(0);
    expect(acked.stdout).toMatch(
      /docs: acknowledged the tripwire of snapshot .*\ndocs: pruning resumes \(acknowledgement acks\/docs\/\d{8}T\d{6}\.\d{3}Z\.json\)/,
    );

    const dry = await cli(['prune', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout.match(/^remove /gm)).toHaveLength(2);
    expect(dry.stdout).toMatch(/^dry run: would remove 2 snapshots/m);

    const pruned = await cli(['prune', '--json']);
    expect(pruned.code).toBe(0);
    const result = JSON.parse(pruned.stdout);
    expect(result.snapshots.map((s: { action: string }) => s.action)).toEqual(['remove', 'remove', 'keep']);
    // The draft's pack and its index: no snapshot left names them. The letters' pack stays: the
    // kept snapshot still names the ten letters that were not encrypted.
    expect(result.objects.deleted.map((d: { key: string }) => d.key.replace(/[0-9a-f]{32}/, 'ID'))).toEqual([
      expect.stringMatching(/\.idx$/),
      expect.stringMatching(/\.pack$/),
    ]);
    const quiet = await cli(['status']);
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toMatch(/tripwire\s+quiet \(last acknowledged /);
    expect(quiet.stdout).toMatch(/kept\s+1 of 1 snapshots/);
    // What is left restores: every content the kept snapshot names is still there.
    const v = await cli(['verify']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 180_000);

  it('will not prune while a snapshot of an account runs on this machine', async () => {
    await fsp.mkdir(join(dir, 'state', 'locks'), { recursive: true });
    await fsp.writeFile(join(dir, 'state', 'locks', 'docs.lock'), `${process.pid}\n`);
    try {
      const r = await cli(['prune']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `cannot prune now: a snapshot of "docs" is already running on this machine (pid ${process.pid}, since `,
      );
    } finally {
      await fsp.rm(join(dir, 'state', 'locks', 'docs.lock'), { force: true });
    }
  });
});
