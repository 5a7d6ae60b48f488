import { Option, type Command } from 'commander';
import { SyncguardError } from '../../errors.js';
import type { Cli } from '../context.js';
import type { LogFormat } from '../logger.js';

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
    .addOption(
      new Option(
        '--log-format <format>',
        'log lines on stderr: "human" (time, level, message) or "json" (one object a line: time, level, pid, msg)',
      )
        .choices(['human', 'json'] satisfies LogFormat[])
        .default('human'),
    )
    .addHelpText(
      'after',
      '\nA stopped snapshot writes nothing (a snapshot exists only once its manifest does); the next run reuses what it stored.\n' +
        'Log lines never hold a secret: the values the config and the credentials files hold as secrets, and\n' +
        'anything shaped like a token, are written as [redacted].',
    )
    .action(async (o: { grace: string; logFormat: LogFormat }) => {
      // The library, the logger (pino) and the secrets (which read the providers' credentials) load
      // only when the daemon runs: `--help` needs none of them.
      const { daemon } = await import('../../api.js');
      const { createLogger } = await import('../logger.js');
      const { secretsOf } = await import('../../secrets.js');
      const grace = Number(o.grace);
      if (!Number.isFinite(grace) || grace < 0)
        throw new SyncguardError('USAGE', `--grace "${o.grace}" is not a number of seconds`);
      cli.sigtermIsNormal = true;
      cli.stopNote = '';
      const loaded = await cli.context();
      const logger = createLogger({
        format: o.logFormat,
        stream: cli.io.stderr,
        verbose: cli.globals.verbose,
        quiet: cli.globals.quiet,
        secrets: secretsOf(loaded.config, loaded.dir),
      });
      const ctx = { ...loaded, log: logger.log };
      cli.abort.signal.addEventListener('abort', () =>
        logger.log(
          'info',
          'stopping: a running snapshot is abandoned (no half snapshot is ever listed); press Ctrl-C again to quit at once',
        ),
      );
      await daemon(ctx, {
        signal: cli.abort.signal,
        graceMs: grace * 1000,
        onReady: () =>
          logger.log('info', `syncguard daemon running (pid ${process.pid}); stop it with SIGTERM or Ctrl-C`),
      });
    });
}
