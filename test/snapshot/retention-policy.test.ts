import { describe, expect, it } from 'vitest';
import { applyPolicy } from '../../src/snapshot/retention.js';

const none = { last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
const at = (iso: string) => ({ id: iso, time: new Date(iso) });

/** One snapshot a night at 02:00 UTC, from `first` for `n` nights. */
function nightly(first: string, n: number) {
  const t0 = Date.parse(first);
  return Array.from({ length: n }, (_, i) => at(new Date(t0 + i * 86_400_000).toISOString()));
}

describe('retention: the keep policy', () => {
  it('always keeps the newest snapshot, even with a policy that keeps nothing', () => {
    const kept = applyPolicy(nightly('2026-11-01T02:00:00.000Z', 3), { keep: none });
    expect([...kept.keys()]).toEqual(['2026-11-03T02:00:00.000Z']);
    expect(kept.get('2026-11-03T02:00:00.000Z')).toEqual(['the newest']);
  });

  it('keeps the newest snapshot of each of the last N days that have one', () => {
    const snaps = [
      at('2026-11-01T02:00:00.000Z'),
      at('2026-11-01T14:00:00.000Z'),
      at('2026-11-03T02:00:00.000Z'),
      at('2026-11-04T02:00:00.000Z'),
    ];
    const kept = applyPolicy(snaps, { keep: { ...none, daily: 3 } });
    expect([...kept.keys()].sort()).toEqual([
      '2026-11-01T14:00:00.000Z',
      '2026-11-03T02:00:00.000Z',
      '2026-11-04T02:00:00.000Z',
    ]);
    expect(kept.get('2026-11-01T14:00:00.000Z')).toEqual(['daily 2026-11-01']);
  });

  it('counts ISO weeks from Monday, and months and years, each by its newest snapshot', () => {
    const snaps = nightly('2025-12-20T02:00:00.000Z', 60); // 2025-12-20 … 2026-02-17
    const kept = applyPolicy(snaps, { keep: { ...none, weekly: 2, monthly: 3, yearly: 2 } });
    const why = (id: string) => kept.get(id) ?? [];
    // 2026-02-17 is a Tuesday: the newest of week 8; week 7 ends on Sunday 2026-02-15.
    expect(why('2026-02-17T02:00:00.000Z')).toEqual(
      expect.arrayContaining(['weekly 2026-W08', 'monthly 2026-02', 'yearly 2026']),
    );
    expect(why('2026-02-15T02:00:00.000Z')).toEqual(['weekly 2026-W07']);
    expect(why('2026-01-31T02:00:00.000Z')).toEqual(['monthly 2026-01']);
    expect(why('2025-12-31T02:00:00.000Z')).toEqual(['monthly 2025-12', 'yearly 2025']);
    expect(kept.size).toBe(4);
  });

  it('keeps the last N whatever their dates', () => {
    const snaps = nightly('2026-11-01T02:00:00.000Z', 5);
    const kept = applyPolicy(snaps, { keep: { ...none, last: 2 } });
    expect([...kept.keys()].sort()).toEqual(['2026-11-04T02:00:00.000Z', '2026-11-05T02:00:00.000Z']);
  });

  it('counts days in the configured timezone, not in UTC', () => {
    // 23:30 UTC on 1 Nov is already 2 Nov in Berlin (UTC+1): the two snapshots share a Berlin day.
    const snaps = [at('2026-11-01T23:30:00.000Z'), at('2026-11-02T20:00:00.000Z')];
    expect(applyPolicy(snaps, { keep: { ...none, daily: 5 }, timeZone: 'UTC' }).size).toBe(2);
    const berlin = applyPolicy(snaps, { keep: { ...none, daily: 5 }, timeZone: 'Europe/Berlin' });
    expect([...berlin.keys()]).toEqual(['2026-11-02T20:00:00.000Z']);
  });

  it('with the default policy, a year of nightly snapshots keeps about 14 + 8 + 12 + 1, not 365', () => {
    const snaps = nightly('2025-11-27T02:00:00.000Z', 365);
    const kept = applyPolicy(snaps, {
      keep: { last: 0, daily: 14, weekly: 8, monthly: 24, yearly: 5 },
      timeZone: 'UTC',
    });
    expect(kept.size).toBeGreaterThanOrEqual(30);
    expect(kept.size).toBeLessThanOrEqual(40);
    // Every one of the last 14 nights is kept.
    for (const s of snaps.slice(-14)) expect(kept.has(s.id)).toBe(true);
  });
});
