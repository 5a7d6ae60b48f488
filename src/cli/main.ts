#!/usr/bin/env node
/**
 * The command line: parses arguments, calls one library function per command, prints, and sets the
 * exit code. This file holds the only process.exit.
 */
import { setMaxListeners } from 'node:events';
import { Command, CommanderError, Option } from 'commander';
import { SyncguardError, describeError, isSyncguardError } from '../errors.js';
import { VERSION } from '../version.js';
import { Cli } from './context.js';
import { registerBrowse } from './commands/browse.js';
import { registerInit } from './commands/init.js';
import { registerRestore } from './commands/restore.js';
import { registerSnapshot } from './commands/snapshot.js';
import { registerVerify } from './commands/verify.js';
import { registerConfig } from './commands/config.js';
import { registerAuth } from './commands/auth.js';
import { registerPrune } from './commands/prune.js';
import { registerDaemon } from './commands/daemon.js';
import { registerStatus } from './commands/status.js';
import { registerAck } from './commands/ack.js';
import { registerService } from './commands/service.js';
import type { Io } from './output.js';
import { EXIT, EXIT_HELP } from './exit.js';

export function buildProgram(cli: Cli): Command {
  const program = new Command('syncguard')
    .description(
      'Nightly, immutable snapshots of synced folders (Dropbox, OneDrive, any local folder) in S3 with Object Lock',
    )
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'the config file (default: $SYNCGUARD_CONFIG, else ./syncguard.yaml)')
    .option('--json', 'print one JSON document on stdout (progress and logs go to stderr)')
    .option('-q, --quiet', 'no progress, no informational messages')
    .option('-v, --verbose', 'more detail on stderr')
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => cli.io.stdout.write(s),
      writeErr: (s) => cli.io.stderr.write(s),
    })
    .hook('preAction', (_this, action) => {
      Object.assign(cli.globals, program.opts());
      cli.setJson(Boolean(program.opts<{ json?: boolean }>().json || action.opts<{ json?: boolean }>().json));
    });
  registerInit(program, cli);
  registerAuth(program, cli);
  registerSnapshot(program, cli);
  registerBrowse(program, cli);
  registerRestore(program, cli);
  registerVerify(program, cli);
  registerConfig(program, cli);
  registerPrune(program, cli);
  registerDaemon(program, cli);
  registerStatus(program, cli);
  registerAck(program, cli);
  registerService(program, cli);
  const all = (cmds: readonly Command[]): Command[] => cmds.flatMap((c) => [c, ...all(c.commands)]);
  for (const c of all(program.commands)) {
    c.exitOverride()
      .addHelpText('after', EXIT_HELP)
      .configureOutput({ writeOut: (s) => cli.io.stdout.write(s), writeErr: (s) => cli.io.stderr.write(s) });
    if (!c.options.some((o) => o.long === '--json'))
      c.addOption(new Option('--json', 'print one JSON document on stdout').hideHelp());
  }
  return program;
}

/** Runs the CLI; resolves to the exit code. */
export async function run(argv: string[], io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const cli = new Cli(io, env, {});
  // Every file read and every request listens to this one signal for a Ctrl-C.
  setMaxListeners(0, cli.abort.signal);
  const program = buildProgram(cli);
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    cli.out.clearLive();
    if (cli.stopNote) cli.out.note(cli.stopNote);
    if (cli.abort.signal.aborted) process.exit(EXIT.interrupted);
    stoppedBy = signal;
    cli.abort.abort(new Error(`stopped by ${signal === 'SIGINT' ? 'Ctrl-C (SIGINT)' : signal}`));
  };
  // A command stopped by a signal exits 128 + the signal's number, whatever it did with the stop.
  const stopped = (code: number) =>
    stoppedBy === 'SIGINT'
      ? EXIT.interrupted
      : stoppedBy === 'SIGTERM' && !cli.sigtermIsNormal
        ? EXIT.terminated
        : code;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return stopped(cli.exitCode);
  } catch (e) {
    cli.out.clearLive();
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.ok;
      return EXIT.usage;
    }
    const err = isSyncguardError(e) ? e : new SyncguardError('INTERNAL', describeError(e), { cause: e });
    if (cli.out.json) cli.out.document({ error: { code: err.code, message: err.message } });
    cli.io.stderr.write(`syncguard: ${err.message}\n`);
    if (err.code === 'INTERNAL' && cli.globals.verbose && e instanceof Error && e.stack)
      cli.io.stderr.write(e.stack + '\n');
    return stopped(err.code === 'CONFIG' || err.code === 'USAGE' ? EXIT.usage : EXIT.failed);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const isMain =
  process.argv[1] &&
  import.meta.url === new URL(`file://${(await import('node:fs')).realpathSync(process.argv[1])}`).href;
if (isMain) {
  const code = await run(
    process.argv.slice(2),
    { stdout: process.stdout, stderr: process.stderr },
    process.env,
  );
  process.exitCode = code;
  // Let pending writes flush; exit explicitly so a stray handle cannot keep a finished run alive.
  setImmediate(() => process.exit(code));
}
