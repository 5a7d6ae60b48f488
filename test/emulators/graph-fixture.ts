import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onedriveAccountSchema, type OnedriveAccountConfig } from '../../src/config/schema.js';
import type { Log } from '../../src/log.js';
import { Pacer } from '../../src/providers/_pacer.js';
import { createOnedriveProvider, runOnedriveAuth } from '../../src/providers/onedrive/index.js';
import type { Provider } from '../../src/providers/types.js';
import type { GraphEmulator } from './graph.js';

/** A OneDrive account whose Graph and sign-in endpoints are the emulator. */
export function onedriveAccount(
  emu: GraphEmulator,
  configDir: string,
  extra: Record<string, unknown> = {},
): OnedriveAccountConfig {
  return onedriveAccountSchema.parse({
    name: 'work-onedrive',
    provider: 'onedrive',
    clientId: '11111111-2222-3333-4444-555555555555',
    tenant: 'common',
    credentials: 'work-onedrive.json',
    endpoint: emu.url,
    authority: emu.url,
    ...extra,
  });
}

/** Signs in through the device code flow, entering the printed code the way a user would. */
export async function signIn(
  emu: GraphEmulator,
  account: OnedriveAccountConfig,
  configDir: string,
  opts: { write?: boolean; fetch?: typeof fetch } = {},
): Promise<{ credentialsPath: string; username?: string; printed: string[] }> {
  const printed: string[] = [];
  const r = await runOnedriveAuth({
    account,
    configDir,
    write: opts.write,
    fetch: opts.fetch,
    print: (line) => {
      printed.push(line);
      const code = /enter the code (\S+)/.exec(line)?.[1];
      if (code) emu.approve(code);
    },
  });
  return { ...r, printed };
}

/** A pacer that waits milliseconds, not seconds, between attempts (Retry-After still counts). */
export function testPacer(): Pacer {
  return new Pacer({ concurrency: 4, baseDelayMs: 1, maxDelayMs: 20, maxAttempts: 6 });
}

export interface OnedriveTestbed {
  emu: GraphEmulator;
  dir: string;
  account: OnedriveAccountConfig;
  logs: Array<{ level: string; message: string }>;
  log: Log;
  provider(opts?: { fetch?: typeof fetch }): Promise<Provider>;
  cleanup(): Promise<void>;
}

/** An emulator, a config folder, a signed-in account, and providers for it. */
export async function onedriveTestbed(
  emu: GraphEmulator,
  extra: Record<string, unknown> = {},
  opts: { write?: boolean } = {},
): Promise<OnedriveTestbed> {
  const dir = await mkdtemp(join(tmpdir(), 'sg-onedrive-'));
  const account = onedriveAccount(emu, dir, extra);
  await signIn(emu, account, dir, opts);
  const logs: Array<{ level: string; message: string }> = [];
  const log: Log = (level, message) => {
    logs.push({ level, message });
  };
  return {
    emu,
    dir,
    account,
    logs,
    log,
    provider: (o = {}) =>
      createOnedriveProvider(account, { configDir: dir, log, fetch: o.fetch }, { pacer: testPacer() }),
    cleanup: async () => {
      await emu.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
