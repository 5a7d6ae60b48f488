import type { Command } from 'commander';
import { showPath } from '../../paths.js';
import type { Cli } from '../context.js';
import { EXIT } from '../exit.js';
import { bar, bytes, count, day, duration } from '../output.js';

export function registerSnapshot(program: Command, cli: Cli): void {
  program
    .command('snapshot')
    .description('take a snapshot now, of the named accounts or of every account')
    .argument('[account...]', 'accounts to snapshot (default: all)')
    .option('--json', 'print the results as JSON')
    .option(
      '--full',
      'list everything instead of the changes since the last snapshot (content already stored is not read again)',
    )
    .action(async (accounts: string[], o: { full?: boolean }) => {
      const { snapshot, staleSummary, staleText } = await import('../../api.js');
      cli.stopNote =
        'stopping: the current snapshot is abandoned (no half snapshot is ever listed); press Ctrl-C again to quit at once';
      const ctx = await cli.context();
      const started = Date.now();
      const runs = await snapshot(ctx, accounts, {
        signal: cli.abort.signal,
        full: o.full,
        onProgress: (account, p) => {
          const wait = p.waiting
            ? ` · waiting ${duration(Math.max(0, Math.round(p.waiting.until.getTime() - Date.now())))}: ${p.waiting.reason}`
            : '';
          if (p.phase === 'listing')
            cli.out.progress(`${account}: listing… ${count(p.listed)} entries${wait}`);
          else if (p.phase === 'reading')
            cli.out.progress(
              `${account} ${bar(p.bytesRead + p.filesDone, p.bytesToRead + p.filesToRead)} ${count(p.filesDone)}/${count(p.filesToRead)} files, ${bytes(p.bytesRead)}/${bytes(p.bytesToRead)}, ${bytes(p.bytesAdded)} added${wait}`,
            );
          else cli.out.progress(`${account}: writing the manifest…${wait}`);
        },
      });
      cli.out.clearLive();
      let code: number = EXIT.ok;
      for (const r of runs) {
        if (!r.ok) {
          code = EXIT.failed;
          continue;
        }
        if (r.result.header.counts.failed > 0 && code === EXIT.ok) code = EXIT.partial;
      }
      if (runs.some((r) => r.ok && r.result.header.tripwire?.fired) && code !== EXIT.failed)
        code = EXIT.tripwire;
      cli.exitCode = code;
      if (cli.out.json) {
        return cli.out.document(
          runs.map((r) =>
            r.ok
              ? {
                  account: r.account,
                  ok: true,
                  id: r.result.id,
                  time: r.result.time.toISOString(),
                  files: r.result.header.counts.files,
                  dirs: r.result.header.counts.dirs,
                  bytes: r.result.header.bytes,
                  bytesAdded: r.result.bytesAdded,
                  filesRead: r.result.filesRead,
                  filesReread: r.result.filesReread,
                  failed: r.result.header.failures,
                  stale: staleSummary(r.result.header),
                  skipped: r.result.header.counts.skipped,
                  lockedUntil: r.result.header.lockedUntil ?? null,
                  tripwire: r.result.header.tripwire ?? null,
                }
              : { account: r.account, ok: false, error: { code: r.error.code, message: r.error.message } },
          ),
        );
      }
      for (const r of runs) {
        if (!r.ok) {
          cli.io.stderr.write(`syncguard: ${r.account}: ${r.error.message}\n`);
          continue;
        }
        const h = r.result.header;
        cli.out.line(
          `${r.account}: snapshot ${r.result.id}: ${count(h.counts.files)} files, ${count(h.counts.dirs)} folders, ${bytes(h.bytes)}; read ${count(r.result.filesRead)} files (${bytes(r.result.bytesRead)})${r.result.filesReread > 0 ? `, ${count(r.result.filesReread)} of them unchanged, read again (reread)` : ''}, added ${bytes(r.result.bytesAdded)}${h.lockedUntil ? `, locked until ${day(h.lockedUntil)}` : ''}`,
        );
        if (h.counts.skipped > 0)
          cli.out.line(
            `  ${count(h.counts.skipped)} skipped (see \`syncguard snapshots ${r.account} --json\`)`,
          );
        const retry = new Map((h.retry ?? []).map((f) => [f.path, f]));
        for (const f of h.failures.slice(0, 20)) {
          const r = retry.get(f.path);
          const what = r
            ? ` (${r.kept ? 'the previous version is kept' : 'new, not in the snapshot yet'}; read again next run; ${r.staleRuns} run${r.staleRuns === 1 ? '' : 's'} in a row)`
            : '';
          cli.out.line(`  failed: ${showPath(f.path)}: ${f.error}${what}`);
        }
        if (h.failures.length > 20) cli.out.line(`  … and ${h.failures.length - 20} more failed`);
        const stale = staleSummary(h);
        if (stale.files > 0) cli.out.line(`  ${staleText(stale)}`);
        if (h.tripwire?.fired) cli.out.line(`  TRIPWIRE: ${h.tripwire.reasons.join('; ')}`);
      }
      if (runs.length > 1)
        cli.out.line(
          `${runs.filter((r) => r.ok).length} of ${runs.length} accounts done in ${duration(Date.now() - started)}`,
        );
    });
}
