import type { Command } from 'commander';
import { showPath } from '../../paths.js';
import type { Cli } from '../context.js';
import { EXIT } from '../exit.js';
import { bar, bytes, count } from '../output.js';

export function registerRestore(program: Command, cli: Cli): void {
  program
    .command('restore')
    .description(
      'restore a folder (or everything) as it was at a date, to a folder on disk or back into the account',
    )
    .argument('<account>')
    .requiredOption(
      '--at <date>',
      'a snapshot id (20261127T131820.416Z), a date (2026-11-20: the last snapshot of that day), a date-time (2026-11-20T18:30, 2026-11-20T18:30:00Z) or latest',
    )
    .requiredOption(
      '--to <dir|provider>',
      'a folder on disk, or "provider" (or dropbox / onedrive) to upload back into the account',
    )
    .option('--path <folder>', 'only this folder or file of the snapshot')
    .option(
      '--into <folder>',
      'back into the account: the folder to put the files under (default "Restored <date>"; "" for where they were)',
    )
    .option('--overwrite', 'replace files that exist (default: refuse, and write nothing)')
    .option('--dry-run', 'say what would be restored, write nothing')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        account: string,
        o: { at: string; to: string; path?: string; into?: string; overwrite?: boolean; dryRun?: boolean },
      ) => {
        const { restoreAccount } = await import('../../api.js');
        cli.stopNote =
          'stopping the restore: every file restored so far is complete, and running the same restore again finishes it; press Ctrl-C again to quit at once';
        const r = await restoreAccount(await cli.context(), account, {
          ...o,
          signal: cli.abort.signal,
          onProgress: (p) =>
            cli.out.progress(
              `restoring ${bar(p.bytesDone + p.filesDone, p.bytes + p.files)} ${count(p.filesDone)}/${count(p.files)} files, ${bytes(p.bytesDone)}/${bytes(p.bytes)}`,
            ),
        });
        cli.out.clearLive();
        if (r.failed.length > 0) cli.exitCode = EXIT.partial;
        if (cli.out.json) {
          return cli.out.document({
            snapshot: r.snapshot.id,
            time: r.snapshot.time.toISOString(),
            target: r.target,
            files: r.files,
            dirs: r.dirs,
            bytes: r.bytes,
            overwritten: r.overwritten,
            skipped: r.skipped,
            failed: r.failed,
            dryRun: r.dryRun,
          });
        }
        const where = r.target === '' ? 'the account, where the files were' : showPath(r.target);
        cli.out.line(
          `${r.dryRun ? 'would restore' : 'restored'} ${count(r.files)} files and ${count(r.dirs)} folders (${bytes(r.bytes)}) from snapshot ${r.snapshot.id} to ${where}${r.overwritten ? `, replacing ${count(r.overwritten)} existing files` : ''}${r.skipped ? `; ${count(r.skipped)} of the files were already there with the right content, and were left as they were` : ''}`,
        );
        for (const f of r.failed.slice(0, 20)) cli.out.line(`  failed: ${showPath(f.path)}: ${f.error}`);
        if (r.failed.length > 20) cli.out.line(`  … and ${r.failed.length - 20} more failed`);
      },
    );
}
