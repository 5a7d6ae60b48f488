/** Schedules: cron expressions (with an optional seconds field) in a timezone, run through croner. */
import { Cron, type CronOptions } from 'croner';
import { cronProblem, timezoneProblem, type AccountConfig, type Config } from '../config/schema.js';
import { SyncguardError } from '../errors.js';

export interface Schedule {
  cron: string;
  timezone?: string;
  /** Where it was configured, for messages. */
  where: string;
}

/** An account's schedule: its own, else the top-level one. Throws CONFIG when it is not valid. */
export function scheduleOf(config: Config, account: AccountConfig): Schedule {
  const own = account.schedule;
  const s: Schedule = own
    ? {
        cron: own.cron,
        timezone: own.timezone ?? config.schedule.timezone,
        where: `accounts (${account.name}).schedule`,
      }
    : { cron: config.schedule.cron, timezone: config.schedule.timezone, where: 'schedule' };
  checkSchedule(s);
  return s;
}

export function checkSchedule(s: Schedule): void {
  const cronWhy = cronProblem(s.cron);
  if (cronWhy) throw new SyncguardError('CONFIG', `${s.where}.cron: "${s.cron}" ${cronWhy}`);
  const tzWhy = s.timezone ? timezoneProblem(s.timezone) : undefined;
  if (tzWhy) throw new SyncguardError('CONFIG', `${s.where}.timezone: "${s.timezone}" ${tzWhy}`);
  cronOf(s).stop();
}

/**
 * The schedule as croner reads it: the daemon fires with it and the catch-up asks it, so both agree on
 * the nights the clocks change. A time that does not exist (02:30 on a spring-forward night) fires once,
 * an hour later by the wall clock; a time that exists twice (01:30 on a fall-back night) fires once, the
 * first time.
 */
export function cronOf(s: Schedule, opts: Omit<CronOptions, 'timezone'> = {}, fn?: () => void): Cron {
  try {
    return fn
      ? new Cron(s.cron, { ...opts, timezone: s.timezone }, fn)
      : new Cron(s.cron, { ...opts, paused: true, timezone: s.timezone });
  } catch (e) {
    throw new SyncguardError(
      'CONFIG',
      `${s.where}.cron: "${s.cron}" cannot be scheduled: ${(e as Error).message}`,
    );
  }
}

/** The next time the schedule fires after `from` (default now). */
export function nextRun(s: Schedule, from: Date = new Date()): Date | undefined {
  return cronOf(s).nextRun(from) ?? undefined;
}

/** The last time the schedule fired at or before `now` and after `after`, or undefined. */
export function lastScheduled(s: Schedule, now: Date, after: Date): Date | undefined {
  // previousRuns counts from strictly before its reference: a second later includes `now` itself.
  const [last] = cronOf(s).previousRuns(1, new Date(Math.floor(now.getTime() / 1000) * 1000 + 1000));
  return last && last > after && last <= now ? last : undefined;
}
