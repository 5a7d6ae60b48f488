/**
 * One run per account on this machine: a lock file in the state folder, created exclusively, holding
 * the owner's pid. A lock whose process is gone (a crash, a kill -9) is taken over.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { SyncguardError } from './errors.js';

export interface RunLock {
  release(): Promise<void>;
}

export async function acquireRunLock(stateDir: string, account: string): Promise<RunLock> {
  const dir = join(stateDir, 'locks');
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${account}.lock`);
  for (let attempt = 0; attempt < 3; attempt++) {
    // The lock appears whole or not at all: written beside it, then linked into place (link fails when
    // it exists), so a crash can never leave an empty lock file naming nobody.
    const tmp = `${file}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, `${process.pid}\n`, { mode: 0o600 });
    try {
      await fsp.link(tmp, file);
      return {
        release: async () => {
          await fsp.rm(file, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    const pid = Number((await fsp.readFile(file, 'utf8').catch(() => '')).trim());
    if (pid > 0 && pid !== process.pid && alive(pid)) {
      throw new SyncguardError(
        'BUSY',
        `a snapshot of "${account}" is already running on this machine (pid ${pid}); this one was not started`,
      );
    }
    // The owner is gone: take the lock over (one of two racing takers wins the next exclusive create).
    await fsp.rm(file, { force: true });
  }
  throw new SyncguardError('BUSY', `could not take the run lock ${file}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
