/**
 * `syncguard service install|uninstall`: systemd units that start syncguard by absolute paths (this
 * node binary and this install's main.js), never `/usr/bin/env syncguard`: the user manager's PATH
 * does not hold an npm-global or nvm bin folder, and such a unit fails with 127. Units are made as
 * text (`systemdUnits`), written and enabled by `installService`, removed by `uninstallService`.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { SyncguardError } from '../errors.js';

export type ServiceScope = 'user' | 'system';
/** `daemon`: one long-running `syncguard daemon`; `timer`: nightly `snapshot` and weekly `prune` timers. */
export type ServiceKind = 'daemon' | 'timer';

export interface ServiceSpec {
  scope: ServiceScope;
  kind: ServiceKind;
  /** Absolute paths: the node binary, syncguard's dist/cli/main.js, the config file. */
  node: string;
  main: string;
  config: string;
  /** For a system unit: the user it runs as (the synced folders are that user's). */
  user?: string;
  /** The timers' calendar (systemd.time), for kind `timer`. */
  snapshotCalendar?: string;
  pruneCalendar?: string;
}

export interface Unit {
  name: string;
  text: string;
}

export const UNIT_NAMES: Record<ServiceKind, string[]> = {
  daemon: ['syncguard.service'],
  timer: [
    'syncguard-snapshot.service',
    'syncguard-snapshot.timer',
    'syncguard-prune.service',
    'syncguard-prune.timer',
  ],
};

/** The units `enable --now` starts: the service for the daemon, the timers otherwise. */
export const ENABLED: Record<ServiceKind, string[]> = {
  daemon: ['syncguard.service'],
  timer: ['syncguard-snapshot.timer', 'syncguard-prune.timer'],
};

/** Where units go: ~/.config/systemd/user or /etc/systemd/system. */
export function unitDir(scope: ServiceScope, home: string): string {
  return scope === 'user' ? join(home, '.config', 'systemd', 'user') : '/etc/systemd/system';
}

/** An argument of ExecStart=: quoted when it holds a space or a quote, `%` doubled (a specifier). */
function arg(s: string): string {
  const t = s.replace(/%/g, '%%');
  return /[\s"'\\]/.test(t) ? `"${t.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : t;
}

export function systemdUnits(spec: ServiceSpec): Unit[] {
  for (const [what, p] of [
    ['node', spec.node],
    ['main.js', spec.main],
    ['config', spec.config],
  ] as const)
    if (!p.startsWith('/'))
      throw new SyncguardError('USAGE', `the ${what} path of a unit must be absolute, got "${p}"`);
  const exec = (...args: string[]) =>
    [spec.node, spec.main, ...args, '--config', spec.config].map(arg).join(' ');
  const header = (what: string) => [
    `# Written by \`syncguard service install --${spec.scope}\`; \`syncguard service uninstall --${spec.scope}\` removes it.`,
    '[Unit]',
    `Description=syncguard: ${what}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    ...(spec.scope === 'system' && spec.user ? [`User=${spec.user}`] : []),
    // Secrets named as ${VAR} in the config may live beside it, mode 0600.
    `EnvironmentFile=-${arg(join(dirname(spec.config), 'env'))}`,
  ];
  const wantedBy = spec.scope === 'user' ? 'default.target' : 'multi-user.target';
  const text = (lines: string[]) => lines.join('\n') + '\n';
  if (spec.kind === 'daemon')
    return [
      {
        name: 'syncguard.service',
        text: text([
          ...header('nightly immutable snapshots of synced folders (the daemon)'),
          'Type=simple',
          `ExecStart=${exec('daemon', '--grace', '60')}`,
          // SIGTERM lets a running snapshot finish for up to --grace, then stops it cleanly.
          'KillSignal=SIGTERM',
          'TimeoutStopSec=90',
          'Restart=on-failure',
          'RestartSec=60',
          // 2 is a wrong config: restarting will not fix it.
          'RestartPreventExitStatus=2',
          'Nice=10',
          'IOSchedulingClass=idle',
          '',
          '[Install]',
          `WantedBy=${wantedBy}`,
        ]),
      },
    ];
  const timer = (what: string, calendar: string) =>
    text([
      '[Unit]',
      `Description=syncguard: ${what}`,
      '',
      '[Timer]',
      `OnCalendar=${calendar}`,
      // A run missed while the machine was off runs when it is back.
      'Persistent=true',
      'RandomizedDelaySec=15min',
      '',
      '[Install]',
      'WantedBy=timers.target',
    ]);
  return [
    {
      name: 'syncguard-snapshot.service',
      text: text([
        ...header('take a snapshot of every account'),
        'Type=oneshot',
        `ExecStart=${exec('snapshot', '-q')}`,
        // 3: some files could not be read (they are in the run report); 4 (tripwire) marks it failed.
        'SuccessExitStatus=3',
        'TimeoutStopSec=60',
        'Nice=10',
        'IOSchedulingClass=idle',
      ]),
    },
    {
      name: 'syncguard-snapshot.timer',
      text: timer('a snapshot of every account', spec.snapshotCalendar ?? '*-*-* 02:00:00'),
    },
    {
      name: 'syncguard-prune.service',
      text: text([
        ...header('remove the snapshots the retention policy drops'),
        'Type=oneshot',
        `ExecStart=${exec('prune', '-q')}`,
        'Nice=10',
        'IOSchedulingClass=idle',
      ]),
    },
    {
      name: 'syncguard-prune.timer',
      text: timer('apply the retention policy', spec.pruneCalendar ?? 'Sun *-*-* 04:30:00'),
    },
  ];
}

export interface InstallOptions {
  /** Where units go (default: unitDir(scope, home)). */
  dir: string;
  /** Run systemctl daemon-reload and enable --now (default); false: write only. */
  enable: boolean;
  /** Runs systemctl (tests pass their own). */
  systemctl?: (args: string[]) => Promise<void>;
}

export interface InstallResult {
  dir: string;
  written: string[];
  /** The systemctl commands run (or, without enable, to run). */
  commands: string[][];
}

const systemctlArgs = (scope: ServiceScope, ...args: string[]) =>
  scope === 'user' ? ['--user', ...args] : args;

async function realSystemctl(args: string[]): Promise<void> {
  try {
    await promisify(execFile)('systemctl', args);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    throw new SyncguardError(
      'INTERNAL',
      err.code === 'ENOENT'
        ? 'systemctl is not on this machine: install the units with --no-enable and start syncguard another way (docs/nightly.md)'
        : `systemctl ${args.join(' ')} failed: ${(err.stderr ?? err.message).trim()}`,
      { cause: e },
    );
  }
}

export async function installService(spec: ServiceSpec, opts: InstallOptions): Promise<InstallResult> {
  const units = systemdUnits(spec);
  await fsp.mkdir(opts.dir, { recursive: true });
  const written: string[] = [];
  for (const u of units) {
    const path = join(opts.dir, u.name);
    await fsp.writeFile(`${path}.tmp`, u.text, { mode: 0o644 });
    await fsp.rename(`${path}.tmp`, path);
    written.push(path);
  }
  const commands = [
    systemctlArgs(spec.scope, 'daemon-reload'),
    systemctlArgs(spec.scope, 'enable', '--now', ...ENABLED[spec.kind]),
  ];
  if (opts.enable) for (const c of commands) await (opts.systemctl ?? realSystemctl)(c);
  return { dir: opts.dir, written, commands };
}

export async function uninstallService(
  scope: ServiceScope,
  opts: InstallOptions & { dryRun?: boolean },
): Promise<InstallResult & { removed: string[] }> {
  const present: string[] = [];
  for (const name of [...UNIT_NAMES.daemon, ...UNIT_NAMES.timer])
    if (
      await fsp
        .access(join(opts.dir, name))
        .then(() => true)
        .catch(() => false)
    )
      present.push(name);
  const enabled = present.filter((n) => n.endsWith('.timer') || n === 'syncguard.service');
  const commands = [
    ...(enabled.length ? [systemctlArgs(scope, 'disable', '--now', ...enabled)] : []),
    systemctlArgs(scope, 'daemon-reload'),
  ];
  if (opts.dryRun)
    return { dir: opts.dir, written: [], removed: present.map((n) => join(opts.dir, n)), commands };
  if (opts.enable && enabled.length) await (opts.systemctl ?? realSystemctl)(commands[0]);
  const removed: string[] = [];
  for (const name of present) {
    await fsp.rm(join(opts.dir, name), { force: true });
    removed.push(join(opts.dir, name));
  }
  if (opts.enable && present.length) await (opts.systemctl ?? realSystemctl)(commands[commands.length - 1]);
  return { dir: opts.dir, written: [], removed, commands };
}
