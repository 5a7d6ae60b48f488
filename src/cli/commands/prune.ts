import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { EXIT } from '../exit.js';
import { bytes, count, day } from '../output.js';

export function registerPrune(program: Command, cli: Cli): void {
  program
    .command('prune')
    .description(
      'apply the retention policy: remove the snapshots it drops and the objects no kept snapshot names, once their locks have run out',
    )
    .option('--dry-run', 'say what would be removed and kept, and why; remove nothing')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nAn account whose ransomware tripwire fired is not pruned until `syncguard ack <account>`; prune then exits 4.',
    )
    .action(async (o: { dryRun?: boolean }) => {
      const { pruneStore } = await import('../../api.js');
      const r = await pruneStore(await cli.context(), { dryRun: o.dryRun, signal: cli.abort.signal });
      cli.exitCode = r.blocked.length > 0 ? EXIT.tripwire : EXIT.ok;
      if (cli.out.json) return cli.out.document(r);
      const verb = r.dryRun ? 'would remove' : 'removed';
      for (const s of r.snapshots) {
        const what =
          s.action === 'keep' ? 'keep' : s.action === 'remove' ? (r.dryRun ? 'remove' : 'removed') : 'locked';
        cli.out.line(
          `${what.padEnd(9)}${s.account}  ${s.id}  ${s.reasons.join(', ')}${s.action === 'keep' && s.lockedUntil ? ` (locked until ${day(s.lockedUntil)})` : ''}`,
        );
      }
      const o2 = r.objects;
      const removed = r.snapshots.filter((s) => s.action === 'remove').length;
      cli.out.line();
      cli.out.line(
        `${r.dryRun ? 'dry run: ' : ''}${verb} ${count(removed)} snapshot${removed === 1 ? '' : 's'} and ${count(o2.deleted.length)} object${o2.deleted.length === 1 ? '' : 's'} (${bytes(o2.bytesDeleted)}); ${count(r.snapshots.length - removed)} snapshots and ${count(o2.referenced)} objects stay`,
      );
      if (o2.waiting > 0)
        cli.out.line(
          `${count(o2.waiting)} unreferenced objects are younger than the grace period (prune.graceHours): a prune from ${o2.waitingUntil} on removes them`,
        );
      if (o2.locked > 0)
        cli.out.line(
          `${count(o2.locked)} unreferenced objects are still locked: a prune after ${o2.lockedUntil ?? 'their locks end'} removes them`,
        );
      for (const l of r.locks)
        cli.out.line(
          `${l.account}: extended the locks of ${l.snapshots.length} kept snapshots (${count(l.objects)} objects) to ${day(l.until)}`,
        );
      for (const b of r.blocked) {
        cli.io.stderr.write(
          `syncguard: ${b.account} was not pruned: the ransomware tripwire fired on ${b.fired.map((f) => f.id).join(', ')} (${b.fired[0].reasons.join('; ')}). Look at the account; when it is fine, run \`syncguard ack ${b.account}\`\n`,
        );
      }
    });
}
