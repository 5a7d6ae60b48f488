/**
 * Who holds a lock or a lease, and whether that holder is gone. A holder is named by its host, the
 * boot of that host, its pid and the time its process started: a pid alone is reused (after a reboot,
 * or by any later process), so a pid that is alive proves nothing by itself.
 *
 * Linux gives a boot id (/proc/sys/kernel/random/boot_id) and each process's start time (field 22 of
 * /proc/<pid>/stat, in clock ticks since boot). Elsewhere the boot is told by its boot time (now minus
 * the uptime, to a minute), and a live pid of this boot is taken to be its holder: a pid reused within
 * one boot then keeps a stale lock until a person removes it (the skip alert says how).
 */
import { readFileSync } from 'node:fs';
import { hostname, uptime } from 'node:os';

export interface Holder {
  /** The machine: SYNCGUARD_HOST, else its hostname. */
  host: string;
  /** This boot of the machine (Linux). */
  bootId?: string;
  /** When the machine booted (ms since epoch), where there is no boot id. */
  bootTime?: number;
  pid: number;
  /** When the process started, as the system counts it (Linux: clock ticks since boot). */
  startTime?: string;
}

/** How a holder stands: `gone` only when it is of this host, and its boot is over or its process is. */
export type HolderState = 'self' | 'alive' | 'gone' | 'elsewhere';

const BOOT_SLACK_MS = 60_000;

let me: Holder | undefined;

/** This process. */
export function thisProcess(): Holder {
  if (!me) {
    const bootId = readProc('/proc/sys/kernel/random/boot_id');
    me = {
      host: hostName(),
      ...(bootId ? { bootId } : { bootTime: bootTime() }),
      pid: process.pid,
      ...optional('startTime', startTimeOf(process.pid)),
    };
  }
  return me;
}

/** The name of this machine in locks and leases. */
export function hostName(): string {
  return process.env.SYNCGUARD_HOST?.trim() || hostname();
}

export function holderState(h: Holder): HolderState {
  const self = thisProcess();
  if (h.host !== self.host) return 'elsewhere';
  if (!sameBoot(h, self)) return 'gone';
  if (!alive(h.pid)) return 'gone';
  const start = startTimeOf(h.pid);
  if (h.startTime !== undefined && start !== undefined && h.startTime !== start) return 'gone';
  return h.pid === self.pid ? 'self' : 'alive';
}

/** When this boot began (ms since epoch), for locks older than any boot id. */
export function bootTime(): number {
  return Date.now() - uptime() * 1000;
}

function sameBoot(a: Holder, b: Holder): boolean {
  if (a.bootId !== undefined && b.bootId !== undefined) return a.bootId === b.bootId;
  if (a.bootTime !== undefined && b.bootTime !== undefined)
    return Math.abs(a.bootTime - b.bootTime) < BOOT_SLACK_MS;
  return true;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function startTimeOf(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces and ')': count from the last one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return /^\d+$/.test(fields[19] ?? '') ? fields[19] : undefined;
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}
