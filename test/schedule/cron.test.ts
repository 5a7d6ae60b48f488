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
