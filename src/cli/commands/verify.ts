import type { Command } from 'commander';
import { SyncguardError } from '../../errors.js';
import { showPath } from '../../paths.js';
import type { Cli } from '../context.js';
import { EXIT } from '../exit.js';
import { bytes, count } from '../output.js';

export function registerVerify(program: Command, cli: Cli): void {
  program
    .command('verify')
    .description('re-read stored content and check every hash (of every kept snapshot, or of one account)')
    .argument('[account]')
    .option('--sample <percent>', 'check only this share of the objects, chosen at random, such as 10%')
    .option('--json', 'print { snapshots, objects, objectsChecked, bytesChecked, problems[] } as JSON')
    .action(async (account: string | undefined, o: { sample?: string }) => {
      const { verifyStore } = await import('../../api.js');
      let samplePercent: number | undefined;
      if (o.sample !== undefined) {
        samplePercent = Number(o.sample.replace(/%$/, ''));
        if (!(samplePercent > 0 && samplePercent <= 100))
          throw new SyncguardError('USAGE', `--sample "${o.sample}": expected a share from 0.1% to 100%`);
      }
      const r = await verifyStore(await cli.context(), {
        account,
        samplePercent,
        signal: cli.abort.signal,
        onProgress: (p) =>
          cli.out.progress(
            `verifying ${count(p.objectsChecked)}/${count(p.objects)} objects, ${bytes(p.bytesChecked)}`,
          ),
      });
      cli.out.clearLive();
      if (r.problems.length > 0) cli.exitCode = EXIT.failed;
      if (cli.out.json) return cli.out.document(r);
      cli.out.line(
        `checked ${count(r.objectsChecked)} of ${count(r.objects)} objects (${count(r.contentsChecked)} contents, ${bytes(r.bytesChecked)}) named by ${count(r.snapshots)} snapshots`,
      );
      for (const p of r.problems.slice(0, 50))
        cli.out.line(
          `  PROBLEM ${p.object}: ${p.problem}${p.path ? ` (needed by ${showPath(p.path)} in ${p.snapshots && p.snapshots.length > 1 ? `${p.snapshots.length} snapshots: ${p.snapshots.join(', ')}` : p.snapshot})` : ''}`,
        );
      if (r.problems.length > 50) cli.out.line(`  … and ${r.problems.length - 50} more problems`);
      cli.out.line(
        r.problems.length === 0 ? 'no problems found' : `${count(r.problems.length)} problems found`,
      );
    });
}
