import type { Command } from 'commander';
import type { Cli } from '../context.js';

export function registerAck(program: Command, cli: Cli): void {
  program
    .command('ack')
    .description("acknowledge an account's ransomware tripwire alarm, so that pruning of it may resume")
    .argument('<account>')
    .option('--note <text>', 'why (kept with the acknowledgement in the store)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nLook first: `syncguard diff <account> <before> <after>` shows what changed. The snapshots stay; only pruning resumes.',
    )
    .action(async (account: string, o: { note?: string }) => {
      const { ack } = await import('../../api.js');
      const r = await ack(await cli.context(), account, { note: o.note, signal: cli.abort.signal });
      if (cli.out.json) return cli.out.document(r);
      if (r.acknowledged.length === 0)
        return cli.out.line(
          `${account}: the tripwire has not fired since the last acknowledgement; nothing to acknowledge`,
        );
      for (const f of r.acknowledged)
        cli.out.line(`${account}: acknowledged the tripwire of snapshot ${f.id}: ${f.reasons.join('; ')}`);
      cli.out.line(`${account}: pruning resumes (acknowledgement ${r.key})`);
    });
}
