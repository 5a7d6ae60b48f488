import { existsSync, realpathSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { SyncguardError } from '../../errors.js';
import type { ServiceKind, ServiceScope } from '../../service/systemd.js';
import type { Cli } from '../context.js';

interface ScopeOpts {
  user?: boolean;
  system?: boolean;
  unitDir?: string;
  enable: boolean;
  dryRun?: boolean;
}

function scopeOf(o: ScopeOpts): ServiceScope {
  if (o.user && o.system) throw new SyncguardError('USAGE', 'give --user or --system, not both');
  if (!o.user && !o.system)
    throw new SyncguardError(
      'USAGE',
      'give --user (a unit of your own user manager: the synced folders are in your home) or --system (/etc/systemd/system, needs root)',
    );
  return o.user ? 'user' : 'system';
}

const AFTER = `
The units start syncguard by absolute paths: this node binary (${process.execPath}) and this
install's main.js, never "/usr/bin/env syncguard" (the user manager's PATH holds no npm-global or nvm
bin folder). Run install again after moving or upgrading node or syncguard. macOS (launchd) and
Windows (Task Scheduler): see contrib/launchd and contrib/windows, and docs/nightly.md.`;

export function registerService(program: Command, cli: Cli): void {
  const service = program
    .command('service')
    .description('install or remove the systemd units that run syncguard (the daemon, or nightly timers)');
  const scoped = (c: Command) =>
    c
      .option('--user', 'a user unit, in ~/.config/systemd/user (systemctl --user)')
      .option('--system', 'a system unit, in /etc/systemd/system (needs root; runs as --run-as)')
      .option('--unit-dir <dir>', 'write the units there instead')
      .option(
        '--no-enable',
        'write or remove the files only; print the systemctl commands instead of running them',
      )
      .option('--dry-run', 'print the units and the commands; write nothing, run nothing');
  scoped(
    service
      .command('install')
      .description(
        'write the units with absolute paths and enable them: `syncguard daemon` (default), or with --timer nightly `snapshot` and weekly `prune`',
      ),
  )
    .option('--timer', 'timers instead of the daemon: syncguard-snapshot.timer and syncguard-prune.timer')
    .option('--on-calendar <spec>', 'when the snapshot timer fires (systemd.time)', '*-*-* 02:00:00')
    .option('--prune-calendar <spec>', 'when the prune timer fires (systemd.time)', 'Sun *-*-* 04:30:00')
    .option('--run-as <user>', 'with --system: the user the units run as', userInfo().username)
    .addHelpText('after', AFTER)
    .action(
      async (
        o: ScopeOpts & { timer?: boolean; onCalendar: string; pruneCalendar: string; runAs: string },
      ) => {
        const scope = scopeOf(o);
        const { configPath } = await import('../../config/load.js');
        const { installService, systemdUnits, unitDir } = await import('../../service/systemd.js');
        const config = configPath(cli.globals.config, cli.env);
        if (!existsSync(config))
          throw new SyncguardError(
            'CONFIG',
            `no config file at ${config}: write it first (or point --config at it); the units name its absolute path`,
          );
        const kind: ServiceKind = o.timer ? 'timer' : 'daemon';
        const spec = {
          scope,
          kind,
          node: process.execPath,
          main: realpathSync(fileURLToPath(new URL('../main.js', import.meta.url))),
          config: realpathSync(config),
          user: scope === 'system' ? o.runAs : undefined,
          snapshotCalendar: o.onCalendar,
          pruneCalendar: o.pruneCalendar,
        };
        const dir = o.unitDir ?? unitDir(scope, homedir());
        if (o.dryRun) {
          const units = systemdUnits(spec);
          if (cli.out.json) {
            cli.out.document({ dir, units, written: false });
            return;
          }
          for (const u of units) cli.out.line(`# ${dir}/${u.name}\n${u.text}`);
          cli.out.line(`# then: systemctl ${scope === 'user' ? '--user ' : ''}daemon-reload`);
          cli.out.line(
            `#       systemctl ${scope === 'user' ? '--user ' : ''}enable --now ${kind === 'daemon' ? 'syncguard.service' : 'syncguard-snapshot.timer syncguard-prune.timer'}`,
          );
          return;
        }
        const r = await installService(spec, { dir, enable: o.enable });
        if (cli.out.json) return cli.out.document({ ...r, enabled: o.enable });
        for (const w of r.written) cli.out.line(`wrote ${w}`);
        for (const c of r.commands)
          cli.out.line(o.enable ? `ran systemctl ${c.join(' ')}` : `to do: systemctl ${c.join(' ')}`);
        if (scope === 'user')
          cli.out.line('to keep it running while you are logged out: loginctl enable-linger "$USER"');
      },
    );
  scoped(
    service.command('uninstall').description('disable and remove the units `service install` wrote'),
  ).action(async (o: ScopeOpts) => {
    const scope = scopeOf(o);
    const { uninstallService, unitDir } = await import('../../service/systemd.js');
    const dir = o.unitDir ?? unitDir(scope, homedir());
    const r = await uninstallService(scope, { dir, enable: o.enable && !o.dryRun, dryRun: o.dryRun });
    if (cli.out.json) return cli.out.document({ ...r, dryRun: !!o.dryRun });
    if (r.removed.length === 0) return cli.out.line(`no syncguard units in ${dir}: nothing to remove`);
    const ran = o.enable && !o.dryRun;
    for (const f of r.removed) cli.out.line(`${o.dryRun ? 'would remove' : 'removed'} ${f}`);
    for (const c of r.commands) cli.out.line(`${ran ? 'ran' : 'to do:'} systemctl ${c.join(' ')}`);
  });
}
