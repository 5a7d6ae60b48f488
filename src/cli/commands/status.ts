import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { EXIT } from '../exit.js';
import { bytes, count, duration } from '../output.js';

export function registerStatus(program: Command, cli: Cli): void {
  program
    .command('status')
    .description(
      'per account: the last run, the last good snapshot, the next run, what is kept and locked, the tripwire, the sign-in',
    )
    .argument('[account]', 'only this account')
    .option('--json', 'print { time, store, accounts[] } as JSON')
    .addHelpText(
      'after',
      "\nExits 4 when an account's tripwire fired and nobody acknowledged it, 1 when an account's last run failed.",
    )
    .action(async (account?: string) => {
      const { staleText, status } = await import('../../api.js');
      const r = await status(await cli.context(), account, cli.abort.signal);
      const tripped = r.accounts.some((a) => a.tripwire.tripped);
      const failed = r.accounts.some((a) => a.lastRun?.result === 'failed' || a.error);
      cli.exitCode = tripped ? EXIT.tripwire : failed ? EXIT.failed : EXIT.ok;
      if (cli.out.json) return cli.out.document(r);
      cli.out.line(`store: ${r.store}`);
      for (const a of r.accounts) {
        const when = (iso: string | null | undefined) =>
          iso ? iso.replace('T', ' ').slice(0, 19) + 'Z' : '-';
        cli.out.line();
        cli.out.line(`${a.account} (${a.provider})`);
        cli.out.line(
          `  last run       ${a.lastRun ? `${when(a.lastRun.started)} ${a.lastRun.trigger}, ${a.lastRun.result} in ${duration(a.lastRun.durationMs)}${a.lastRun.error ? `: ${a.lastRun.error.message}` : ''}` : 'none recorded on this machine'}`,
        );
        cli.out.line(
          `  last good      ${a.lastGood ? `${a.lastGood.id}: ${count(a.lastGood.files)} files, ${bytes(a.lastGood.bytes)}` : 'none'}`,
        );
        cli.out.line(
          `  next run       ${a.schedule.error ? `none: ${a.schedule.error}` : `${when(a.schedule.next)} ("${a.schedule.cron}"${a.schedule.timezone ? `, ${a.schedule.timezone}` : ''})`}`,
        );
        cli.out.line(
          `  kept           ${count(a.kept)} of ${count(a.snapshots)} snapshots${a.files !== null ? `; the newest holds ${count(a.files)} files, ${bytes(a.bytes ?? 0)}` : ''}`,
        );
        if (a.stale) cli.out.line(`  stale          ${a.stale.files > 0 ? staleText(a.stale) : 'none'}`);
        cli.out.line(`  locked until   ${a.lockedUntil ? when(a.lockedUntil) : 'no lock'}`);
        cli.out.line(
          `  tripwire       ${a.tripwire.tripped ? `FIRED on ${a.tripwire.fired.map((f) => f.id).join(', ')}: ${a.tripwire.fired[0].reasons.join('; ')}; pruning stops until \`syncguard ack ${a.account}\`` : `quiet${a.tripwire.acknowledged ? ` (last acknowledged ${when(a.tripwire.acknowledged)})` : ''}`}`,
        );
        if (a.token)
          cli.out.line(
            `  sign-in        ${a.token.error ? `unknown: ${a.token.error}` : a.token.expiresAt ? `expires ${when(a.token.expiresAt)}` : 'no expiry known'}`,
          );
        if (a.error) cli.out.line(`  store          cannot be read: ${a.error}`);
      }
    });
}
