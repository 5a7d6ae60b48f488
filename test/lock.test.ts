import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import { hostname, uptime } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireRunLock } from '../src/lock.js';
import { tempDir } from './schedule/_helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function stateDir(): Promise<string> {
  const d = await tempDir('lock');
  dirs.push(d);
  await fsp.mkdir(join(d, 'locks'));
  return d;
}

const lockFile = (dir: string) => join(dir, 'locks', 'docs.lock');
const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
const startTime = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
};
const linux = process.platform === 'linux';

function lockOf(o: Record<string, unknown>): string {
  return JSON.stringify({
    format: 'syncguard-lock',
    version: 1,
    account: 'docs',
    purpose: 'snapshot',
    host: hostname(),
    started: new Date().toISOString(),
    token: 'planted',
    ...o,
  });
}

describe('the run lock', () => {
  it('records the host, boot id, pid and start time of its holder, and is removed on release', async () => {
    const dir = await stateDir();
    const lock = await acquireRunLock(dir, 'docs');
    const held = JSON.parse(await fsp.readFile(lockFile(dir), 'utf8')) as Record<string, unknown>;
    expect(held).toMatchObject({ host: hostname(), pid: process.pid });
    if (linux) expect(held).toMatchObject({ bootId: bootId(), startTime: startTime(process.pid) });
    await lock.release();
    expect(existsSync(lockFile(dir))).toBe(false);
  });

  it('refuses a second holder in the same process (the daemon: a prune beside its own snapshot)', async () => {
    const dir = await stateDir();
    const lock = await acquireRunLock(dir, 'docs');
    try {
      await expect(acquireRunLock(dir, 'docs', { purpose: 'prune' })).rejects.toMatchObject({
        code: 'BUSY',
        message: expect.stringMatching(/a snapshot of "docs" is already running in this process/),
      });
    } finally {
      await lock.release();
    }
    await (await acquireRunLock(dir, 'docs')).release();
  });

  it.runIf(linux)('takes over a lock left before a reboot, though its pid is alive again', async () => {
    const dir = await stateDir();
    // A lock written by this very version in an earlier boot: another boot id.
    await fsp.writeFile(
      lockFile(dir),
      lockOf({ bootId: '00000000-0000-4000-8000-000000000000', pid: process.ppid, startTime: '1' }),
    );
    await (await acquireRunLock(dir, 'docs')).release();
    // A lock of an older version (a bare pid), written before this boot: its pid now names another process.
    await fsp.writeFile(lockFile(dir), `${process.ppid}\n`);
    const beforeBoot = new Date(Date.now() - uptime() * 1000 - 3_600_000);
    await fsp.utimes(lockFile(dir), beforeBoot, beforeBoot);
    await (await acquireRunLock(dir, 'docs')).release();
  });

  it.runIf(linux)(
    'judges a live pid of this boot by its start time: the right one holds, another is a reused pid',
    async () => {
      const dir = await stateDir();
      const pid = process.ppid;
      await fsp.writeFile(lockFile(dir), lockOf({ bootId: bootId(), pid, startTime: startTime(pid) }));
      await expect(acquireRunLock(dir, 'docs')).rejects.toMatchObject({
        code: 'BUSY',
        message: expect.stringContaining(`(pid ${pid},`),
      });
      await fsp.writeFile(lockFile(dir), lockOf({ bootId: bootId(), pid, startTime: '12345' }));
      await (await acquireRunLock(dir, 'docs')).release();
    },
  );

  it('never takes over a lock of another host, and says how to clear it', async () => {
    const dir = await stateDir();
    await fsp.writeFile(lockFile(dir), lockOf({ host: 'nas-7', bootId: 'x', pid: 1 }));
    await expect(acquireRunLock(dir, 'docs')).rejects.toMatchObject({
      code: 'BUSY',
      message: expect.stringContaining(`on host nas-7 (pid 1, since`),
    });
    await expect(acquireRunLock(dir, 'docs')).rejects.toThrow(
      `if syncguard no longer runs there, delete ${lockFile(dir)}`,
    );
  });

  it('lets exactly one of many processes racing to take over one stale lock win', async () => {
    const lib = fileURLToPath(new URL('../dist/lock.js', import.meta.url));
    if (!existsSync(lib)) throw new Error(`${lib} does not exist: run \`npm run build\` first`);
    for (let round = 0; round < 2; round++) {
      const dir = await stateDir();
      // A stale lock: this host and boot, a pid that is gone.
      const dead = spawn(process.execPath, ['-e', '']);
      await new Promise((r) => dead.on('close', r));
      await fsp.writeFile(lockFile(dir), lockOf({ bootId: linux ? bootId() : undefined, pid: dead.pid }));
      const script = `
        const { acquireRunLock } = await import(${JSON.stringify(lib)});
        process.stdout.write('ready\\n');
        process.stdin.once('data', async () => {
          try {
            const lock = await acquireRunLock(${JSON.stringify(dir)}, 'docs');
            process.stdout.write('won\\n');
            process.stdin.on('end', async () => { await lock.release(); });
            process.stdin.resume();
          } catch (e) {
            process.stdout.write((e.code ?? e.message) + '\\n');
            process.exit(0);
          }
        });`;
      const n = 12;
      const children: Array<{ child: ChildProcess; out: string }> = [];
      for (let i = 0; i < n; i++) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        const c = { child, out: '' };
        child.stdout.setEncoding('utf8').on('data', (s: string) => (c.out += s));
        children.push(c);
      }
      const until = async (cond: () => boolean) => {
        while (!cond()) await new Promise((r) => setTimeout(r, 10));
      };
      await until(() => children.every((c) => c.out.includes('ready')));
      for (const c of children) c.child.stdin!.write('go\n');
      await until(() => children.every((c) => /ready\n(won|\w+)\n/.test(c.out)));
      const outcomes = children.map((c) => c.out.split('\n')[1]);
      for (const c of children) c.child.stdin!.end();
      await Promise.all(
        children.map((c) =>
          c.child.exitCode === null ? new Promise((r) => c.child.on('close', r)) : Promise.resolve(),
        ),
      );
      expect(
        outcomes.filter((o) => o === 'won'),
        outcomes.join(' '),
      ).toHaveLength(1);
      expect(
        outcomes.filter((o) => o !== 'won').every((o) => o === 'BUSY'),
        outcomes.join(' '),
      ).toBe(true);
    }
  }, 120_000);
});
