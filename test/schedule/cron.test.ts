import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { lastScheduled, nextRun, scheduleOf } from '../../src/schedule/cron.js';

const config = (extra: Record<string, unknown> = {}, account: Record<string, unknown> = {}) =>
  configSchema.parse({
    store: { type: 'fs', path: '/tmp/x' },
    schedule: { cron: '0 2 * * *', timezone: 'Europe/Berlin' },
    accounts: [{ name: 'docs', provider: 'local', path: '/tmp/docs', ...account }],
    ...extra,
  });

describe('schedule: cron', () => {
  it("takes an account's own schedule over the top-level one, with the top-level timezone", () => {
    const c = config({}, { schedule: { cron: '15 4 * * 1' } });
    expect(scheduleOf(c, c.accounts[0])).toMatchObject({ cron: '15 4 * * 1', timezone: 'Europe/Berlin' });
    const d = config();
    expect(scheduleOf(d, d.accounts[0])).toMatchObject({
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      where: 'schedule',
    });
  });

  it('refuses a schedule that is not one, and says where and what to write', () => {
    // The schema refuses both (test/config/input.test.ts); a program may build a config without it.
    expect(() => config({}, { schedule: { cron: '0 25 * * *' } })).toThrow(/is not a valid cron expression/);
    const c = config({}, { schedule: { cron: '0 2 * * *' } });
    c.accounts[0].schedule!.cron = '0 25 * * *';
    expect(() => scheduleOf(c, c.accounts[0])).toThrow(
      /accounts \(docs\)\.schedule\.cron: "0 25 \* \* \*" is not a valid cron expression .*such as "0 2 \* \* \*"/,
    );
    const t = config();
    t.schedule.timezone = 'Europe/Berlinn';
    expect(() => scheduleOf(t, t.accounts[0])).toThrow(
      /schedule\.timezone: "Europe\/Berlinn" is not a timezone .*"Europe\/Berlin"/,
    );
  });

  it("finds the last scheduled time after the last run, in the schedule's timezone", () => {
    const s = { cron: '0 2 * * *', timezone: 'Europe/Berlin', where: 'schedule' };
    const now = new Date('2026-11-27T12:00:00Z');
    // 02:00 in Berlin is 01:00 UTC in winter.
    expect(lastScheduled(s, now, new Date('2026-11-25T00:00:00Z'))?.toISOString()).toBe(
      '2026-11-27T01:00:00.000Z',
    );
    expect(lastScheduled(s, now, new Date('2026-11-27T01:00:05Z'))).toBeUndefined();
    expect(
      lastScheduled({ ...s, timezone: 'UTC' }, now, new Date('2026-11-01T00:00:00Z'))?.toISOString(),
    ).toBe('2026-11-27T02:00:00.000Z');
  });

  it('walks back over days, weeks and seconds', () => {
    const weekly = { cron: '30 3 * * 1', timezone: 'UTC', where: 'schedule' };
    // 2026-11-26 is a Thursday; the Monday before is the 23rd.
    expect(
      lastScheduled(
        weekly,
        new Date('2026-11-26T10:00:00Z'),
        new Date('2026-10-01T00:00:00Z'),
      )?.toISOString(),
    ).toBe('2026-11-23T03:30:00.000Z');
    const seconds = { cron: '*/5 * * * * *', where: 'schedule' };
    expect(lastScheduled(seconds, new Date('2026-11-26T10:00:07.300Z'), new Date(0))?.toISOString()).toBe(
      '2026-11-26T10:00:05.000Z',
    );
    const yearly = { cron: '0 0 1 1 *', timezone: 'UTC', where: 'schedule' };
    expect(
      lastScheduled(
        yearly,
        new Date('2026-11-26T10:00:00Z'),
        new Date('2020-01-01T00:00:00Z'),
      )?.toISOString(),
    ).toBe('2026-01-01T00:00:00.000Z');
  });

  it('says when the schedule fires next', () => {
    const next = nextRun({ cron: '0 2 * * *', timezone: 'UTC', where: 'schedule' })!;
    expect(next.getTime()).toBeGreaterThan(Date.now());
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(86_400_000);
    expect(next.toISOString()).toMatch(/T02:00:00\.000Z$/);
  });
});

/** The times the daemon fires between `from` and `to`: each next time after the one before. */
function firings(s: { cron: string; timezone: string; where: string }, from: string, to: string): string[] {
  const out: string[] = [];
  let t: Date | undefined = new Date(from);
  while ((t = nextRun(s, t)) && t < new Date(to)) out.push(t.toISOString());
  return out;
}

// The nights the clocks change in 2026: Europe/Berlin 29 March (02:00 CET → 03:00 CEST) and 25 October
// (03:00 CEST → 02:00 CET); America/New_York 8 March (02:00 EST → 03:00 EDT) and 1 November (02:00 EDT
// → 01:00 EST). A job at 02:30 on the spring night names a time that does not exist; one at 01:30 (New
// York) or 02:30 (Berlin) on the autumn night names a time that exists twice. Either runs once.
describe('schedule: cron on the nights the clocks change', () => {
  const cases = [
    {
      night: 'Europe/Berlin, spring forward, 02:30',
      s: { cron: '30 2 * * *', timezone: 'Europe/Berlin', where: 'schedule' },
      from: '2026-03-28T12:00:00Z',
      to: '2026-03-29T12:00:00Z',
      // 02:30 does not exist: it runs as the clock reaches the hour after, 03:30 CEST.
      at: '2026-03-29T01:30:00.000Z',
    },
    {
      night: 'Europe/Berlin, fall back, 02:30',
      s: { cron: '30 2 * * *', timezone: 'Europe/Berlin', where: 'schedule' },
      from: '2026-10-24T12:00:00Z',
      to: '2026-10-25T12:00:00Z',
      // The first 02:30 (CEST), not again an hour later.
      at: '2026-10-25T00:30:00.000Z',
    },
    {
      night: 'Europe/Berlin, fall back, 01:30',
      s: { cron: '30 1 * * *', timezone: 'Europe/Berlin', where: 'schedule' },
      from: '2026-10-24T12:00:00Z',
      to: '2026-10-25T12:00:00Z',
      at: '2026-10-24T23:30:00.000Z',
    },
    {
      night: 'America/New_York, spring forward, 02:30',
      s: { cron: '30 2 * * *', timezone: 'America/New_York', where: 'schedule' },
      from: '2026-03-07T18:00:00Z',
      to: '2026-03-08T18:00:00Z',
      at: '2026-03-08T07:30:00.000Z',
    },
    {
      night: 'America/New_York, fall back, 01:30',
      s: { cron: '30 1 * * *', timezone: 'America/New_York', where: 'schedule' },
      from: '2026-10-31T18:00:00Z',
      to: '2026-11-01T18:00:00Z',
      // The first 01:30 (EDT, 05:30 UTC), not the second (EST, 06:30 UTC).
      at: '2026-11-01T05:30:00.000Z',
    },
  ];
  for (const c of cases) {
    it(`runs once, not zero times and not twice: ${c.night}`, () => {
      expect(firings(c.s, c.from, c.to)).toEqual([c.at]);
    });

    it(`catches up that one run the morning after: ${c.night}`, () => {
      expect(lastScheduled(c.s, new Date(c.to), new Date(c.from))?.toISOString()).toBe(c.at);
      // Run at its time, nothing is missed afterwards (the hour that repeats does not call it again).
      expect(lastScheduled(c.s, new Date(c.to), new Date(Date.parse(c.at) + 1000))).toBeUndefined();
    });
  }
});
