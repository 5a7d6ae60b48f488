/** Schedules: node-cron expressions (with an optional seconds field) in a timezone. */
import cron from 'node-cron';
import { cronProblem, timezoneProblem, type AccountConfig, type Config } from '../config/schema.js';
import { SyncguardError } from '../errors.js';
import { zonedParts } from '../snapshot/retention.js';

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
}

/** The next time the schedule fires after now. */
export function nextRun(s: Schedule): Date | undefined {
  const task = cron.createTask(s.cron, () => {}, { timezone: s.timezone });
  try {
    return task.getNextRuns(1)[0];
  } finally {
    void task.destroy();
  }
}

const MAX_LOOKBACK = 400 * 86_400_000;

/**
 * The last time the schedule fired at or before `now` and after `after` (at most 400 days back), or
 * undefined. Walks back an hour at a time where the hour (or month) cannot match, a minute at a time
 * where the minute cannot, and asks node-cron about each remaining candidate second.
 */
export function lastScheduled(s: Schedule, now: Date, after: Date): Date | undefined {
  const fields = cron.parse(s.cron);
  const seconds = [...fields.second].sort((a, b) => b - a);
  const minutes = new Set(fields.minute),
    hours = new Set(fields.hour),
    months = new Set(fields.month);
  const task = cron.createTask(s.cron, () => {}, { timezone: s.timezone });
  try {
    const floor = Math.max(after.getTime(), now.getTime() - MAX_LOOKBACK);
    let t = Math.floor(now.getTime() / 1000) * 1000;
    while (t > floor) {
      const p = zonedParts(new Date(t), s.timezone);
      const toMinuteStart = p.second * 1000;
      if (!hours.has(p.hour) || !months.has(p.month)) {
        t -= (p.minute * 60 + p.second) * 1000 + 1000;
        continue;
      }
      if (minutes.has(p.minute)) {
        for (const sec of seconds) {
          if (sec > p.second) continue;
          const c = t - (p.second - sec) * 1000;
          if (c <= floor) break;
          if (task.match(new Date(c))) return new Date(c);
        }
      }
      t -= toMinuteStart + 1000;
    }
    return undefined;
  } finally {
    void task.destroy();
  }
}
