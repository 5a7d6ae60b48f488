import type { Command } from 'commander';
import type { Cli } from '../context.js';

export function registerInit(program: Command, cli: Cli): void {
  program
    .command('init')
    .description(
      'create the store (an S3 bucket with Object Lock and versioning, or a folder), or check an existing one; writes nothing else',
    )
    .option('--json', 'print the result as JSON')
    .action(async () => {
      const { init } = await import('../../api.js');
      const r = await init(await cli.context());
      if (cli.out.json) return cli.out.document(r);
      cli.out.line(`${r.created ? 'created' : 'checked'} ${r.store}`);
      cli.out.line(`  object lock: ${r.objectLock}`);
      cli.out.line(`  versioning:  ${r.versioning}`);
      for (const n of r.notes) cli.out.line(`  ${n}`);
    });
}
