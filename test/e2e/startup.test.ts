import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCli, localConfigYaml, tempDir, writeConfig } from '../helpers/cli.js';

/** Packages a short command must not load: each costs tens to hundreds of milliseconds of start-up
 *  (issue 10: the CLI spent 0.7–1.1 s importing the AWS SDK before any work). */
const SDKS = ['@aws-sdk/', '@smithy/', 'dropbox', '@azure/msal-node', '@microsoft/microsoft-graph-client'];
const HEAVY = [...SDKS, 'node-cron', 'prom-client', 'pino'];

describe('e2e: what the CLI loads to start', () => {
  let dir: string;
  let hook: string;
  let seen: string;
  beforeAll(async () => {
    dir = await tempDir('e2e-startup');
    seen = join(dir, 'loaded.txt');
    // A module hook in the child that writes down every module it resolves, to `seen`.
    const resolveHook = join(dir, 'resolve-hook.mjs');
    await fsp.writeFile(
      resolveHook,
      `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  appendFileSync(${JSON.stringify(seen)}, r.url + '\\n');
  return r;
}\n`,
    );
    hook = join(dir, 'register.mjs');
    await fsp.writeFile(
      hook,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(resolveHook).href)});\n`,
    );
    await fsp.mkdir(join(dir, 'src'));
    await fsp.writeFile(join(dir, 'src', 'a.txt'), 'a');
    await writeConfig(dir, localConfigYaml('store: { type: fs, path: ./store }', './src'));
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  /** The packages (under node_modules) the command resolved. */
  async function packagesLoaded(args: string[]): Promise<string[]> {
    await fsp.rm(seen, { force: true });
    await expectCli(args, { cwd: dir, env: { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` } }, 0);
    const urls = readFileSync(seen, 'utf8').split('\n');
    expect(urls.some((u) => u.endsWith('/dist/cli/main.js'))).toBe(true);
    const pkgs = urls.flatMap((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []);
    return [...new Set(pkgs)].sort();
  }
  const heavy = (pkgs: string[], list: string[]) => pkgs.filter((p) => list.some((h) => p.startsWith(h)));

  it('--version and --help load only the argument parser', async () => {
    for (const args of [['--version'], ['--help'], ['restore', '--help']])
      expect(await packagesLoaded(args), args.join(' ')).toEqual(['commander']);
  });

  it('snapshots on an fs store loads no AWS SDK, no provider SDK, no node-cron and nothing of the daemon', async () => {
    await expectCli(['snapshot', '--quiet'], { cwd: dir }, 0);
    const pkgs = await packagesLoaded(['snapshots', '--json']);
    expect(pkgs).toContain('zod');
    expect(heavy(pkgs, HEAVY)).toEqual([]);
  });

  it('snapshot of a local account on an fs store loads no AWS SDK and no provider SDK', async () => {
    expect(heavy(await packagesLoaded(['snapshot', '--quiet']), SDKS)).toEqual([]);
  });
});
