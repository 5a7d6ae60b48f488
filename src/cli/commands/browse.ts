import type { Command } from 'commander';
import type { ManifestEntry } from '../../snapshot/manifest.js';
import { showPath } from '../../paths.js';
import type { Cli } from '../context.js';
import { bytes, count, day } from '../output.js';

const entryJson = (e: ManifestEntry) => ({
  path: e.path,
  type: e.type,
  size: e.size,
  mtime: e.mtime,
  sha256: e.sha256 ?? null,
});

export function registerBrowse(program: Command, cli: Cli): void {
  program
    .command('snapshots')
    .description('the dated snapshots kept, oldest first, with counts, sizes and lock dates')
    .argument('[account]', 'only this account')
    .option('--json', 'an array, newest last, of { id, account, time, files, bytes, failed, lockedUntil }')
    .action(async (account?: string) => {
      const { snapshots } = await import('../../api.js');
      const list = await snapshots(await cli.context(), account, cli.abort.signal);
      if (cli.out.json) {
        return cli.out.document(
          list.map((s) => ({
            id: s.id,
            account: s.account,
            time: s.time.toISOString(),
            files: s.header.counts.files,
            bytes: s.header.bytes,
            failed: s.header.counts.failed,
            lockedUntil: s.lockedUntil ?? null,
            skipped: s.header.counts.skipped,
            tripwire: s.header.tripwire?.fired ?? false,
            datedAhead: s.datedAhead ?? null,
          })),
        );
      }
      if (list.length === 0)
        return cli.out.line(account ? `no snapshots of "${account}" yet` : 'no snapshots yet');
      cli.out.table(
        [
          ['ACCOUNT', 'ID', 'TIME (UTC)', 'FILES', 'SIZE', 'FAILED', 'LOCKED UNTIL'],
          ...list.map((s) => [
            s.account,
            s.id,
            s.time.toISOString().slice(0, 19).replace('T', ' '),
            count(s.header.counts.files),
            bytes(s.header.bytes),
            String(s.header.counts.failed),
            day(s.lockedUntil) +
              (s.header.tripwire?.fired ? '  TRIPWIRE' : '') +
              (s.datedAhead ? '  DATED IN THE FUTURE: not trusted (run `syncguard verify`)' : ''),
          ]),
        ],
        ['l', 'l', 'l', 'r', 'r', 'r', 'l'],
      );
    });

  program
    .command('ls')
    .description('what a folder held in the snapshot at a date')
    .argument('<account>')
    .argument('[path]', 'a folder in the account (default: the top)')
    .option(
      '--at <date>',
      'a snapshot id (20261127T131820.416Z), a date (2026-11-20: the end of that day), a date-time (2026-11-20T18:30, 2026-11-20T18:30:00Z) or latest (the default)',
    )
    .option('-r, --recursive', 'everything below the folder, not just what is in it')
    .option('--json', 'print { snapshot, path, entries[] } as JSON')
    .action(async (account: string, path: string | undefined, o: { at?: string; recursive?: boolean }) => {
      const { list } = await import('../../api.js');
      const r = await list(await cli.context(), account, {
        at: o.at,
        path,
        recursive: o.recursive,
        signal: cli.abort.signal,
      });
      if (cli.out.json)
        return cli.out.document({
          snapshot: r.snapshot.id,
          time: r.snapshot.time.toISOString(),
          path: r.path,
          entries: r.entries.map(entryJson),
        });
      cli.out.note(
        `snapshot ${r.snapshot.id} of ${account}, ${r.path === '' ? 'top folder' : showPath(r.path)}:`,
      );
      cli.out.table(
        r.entries.map((e) => [
          e.type === 'dir' ? 'dir' : 'file',
          e.type === 'dir' ? '' : bytes(e.size),
          e.mtime.slice(0, 19).replace('T', ' '),
          showPath(e.path) + (e.type === 'dir' ? '/' : ''),
        ]),
        ['l', 'r', 'l', 'l'],
      );
    });

  program
    .command('diff')
    .description('what was added, changed and deleted between two dates')
    .argument('<account>')
    .argument('<from>', 'a snapshot id, a date (2026-11-20), a date-time (2026-11-20T18:30) or latest')
    .argument('<to>', 'a snapshot id, a date, a date-time or latest')
    .option('--json', 'print { from, to, added[], changed[], deleted[] } as JSON')
    .action(async (account: string, from: string, to: string) => {
      const { compare } = await import('../../api.js');
      const d = await compare(await cli.context(), account, from, to, cli.abort.signal);
      if (cli.out.json) {
        return cli.out.document({
          from: d.from.id,
          to: d.to.id,
          added: d.added.map(entryJson),
          deleted: d.deleted.map(entryJson),
          changed: d.changed.map((c) => ({
            path: c.after.path,
            before: entryJson(c.before),
            after: entryJson(c.after),
          })),
        });
      }
      cli.out.note(`${account}: ${d.from.id} → ${d.to.id}`);
      for (const e of d.added) cli.out.line(`+ ${showPath(e.path)}${e.type === 'dir' ? '/' : ''}`);
      for (const c of d.changed)
        cli.out.line(`M ${showPath(c.after.path)}${c.after.type === 'dir' ? '/' : ''}`);
      for (const e of d.deleted) cli.out.line(`- ${showPath(e.path)}${e.type === 'dir' ? '/' : ''}`);
      cli.out.line(
        `${count(d.added.length)} added, ${count(d.changed.length)} changed, ${count(d.deleted.length)} deleted`,
      );
    });
}
