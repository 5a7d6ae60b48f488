import type { Command } from 'commander';
import type { Cli } from '../context.js';

export function registerConfig(program: Command, cli: Cli): void {
  const config = program.command('config').description('about the config file');
  config
    .command('schema')
    .description('print the JSON Schema of the config file, for editors')
    .action(async () => cli.out.document((await import('../../config/load.js')).configJsonSchema()));
  config
    .command('check')
    .description('read the config and report the first mistakes, without touching the store')
    .action(async () => {
      const ctx = await cli.context();
      cli.out.line(
        `${ctx.file}: ok, ${ctx.config.accounts.length} account(s): ${ctx.config.accounts.map((a) => `${a.name} (${a.provider})`).join(', ')}`,
      );
    });
}
