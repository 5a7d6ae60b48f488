import type { Command } from 'commander';
import { daemon } from '../../api.js';
import { SyncguardError } from '../../errors.js';
import type { Cli } from '../context.js';

export function registerDaemon(program: Command, cli: Cli): void {
  program
    .command('daemon')
    .description(
      'run the schedules of the config until stopped (SIGTERM or SIGINT); catches up a run missed while the machine was off',
    )
    .option(
      '--grace <seconds>',
      'on SIGTERM/SIGINT, let a running snapshot finish for up to this long before it is stopped cleanly',
      '0',
    )
    .addHelpText(
      'after',
      '\nA stopped snapshot writes nothing (a snapshot exists only once its manifest does); the next run reuses what it stored.',
    )
    .action(async (o: { grace: string }) => {
      const grace = Number(o.grace);
      if (!Number.isFinite(grace) || grace < 0)
        throw new SyncguardError('USAGE', `--grace "${o.grace}" is not a number of seconds`);
      cli.sigtermIsNormal = true;
      cli.stopNote =
        'stopping: a running snapshot is abandoned (no half snapshot is ever listed); press Ctrl-C again to quit at once';
      const ctx = cli.context();
      await daemon(ctx, {
        signal: cli.abort.signal,
        graceMs: grace * 1000,
        onReady: () =>
          cli.log('info', `syncguard daemon running (pid ${process.pid}); stop it with SIGTERM or Ctrl-C`),
      });
    });
}
