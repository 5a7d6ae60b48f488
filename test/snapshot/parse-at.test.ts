import { describe, expect, it } from 'vitest';
import { parseAt } from '../../src/snapshot/repository.js';

/** `--at` and diff's dates: the documented forms only (issue 8, point 13). The process runs in UTC
 *  (test/helpers/cli.ts sets TZ for the CLI; vitest's setup here), so local times read as UTC. */
describe('snapshot: parseAt', () => {
  const utc = process.env.TZ === 'UTC';

  it('reads a snapshot id, "latest", and dates with or without a zone', () => {
    expect(parseAt('latest')).toBe('latest');
    expect(parseAt('20261127T131820.416Z')).toEqual(new Date('2026-11-27T13:18:20.416Z'));
    expect(parseAt('2026-11-20T18:30:00Z')).toEqual(new Date('2026-11-20T18:30:00.000Z'));
    expect(parseAt('2026-11-20T18:30:00.5+01:30')).toEqual(new Date('2026-11-20T17:00:00.500Z'));
    expect(parseAt('2026-11-20T18:30:00-05:00')).toEqual(new Date('2026-11-20T23:30:00.000Z'));
    const day = parseAt('2026-11-20') as Date;
    expect([day.getFullYear(), day.getMonth(), day.getDate(), day.getHours(), day.getMinutes()]).toEqual([
      2026, 10, 20, 23, 59,
    ]);
    const local = parseAt('2026-11-20 18:30') as Date;
    expect([local.getDate(), local.getHours(), local.getMinutes(), local.getSeconds()]).toEqual([
      20, 18, 30, 0,
    ]);
    if (utc) expect(parseAt('2026-11-20T18:30')).toEqual(new Date('2026-11-20T18:30:00.000Z'));
  });

  it('refuses everything else with the forms it takes, as a usage error', () => {
    for (const bad of [
      '2026-12-03 15:37 (comment) junk',
      '2026-12-03T15:37Z junk',
      '2026-13-01',
      '2026-02-29',
      '2026-11-20T24:00',
      '2026-11-20T18:60',
      '2026-11-20T18:30:00+25:00',
      '20261327T131820.416Z',
      'yesterday',
      'Dec 3 2026',
      '',
    ]) {
      expect(() => parseAt(bad), bad).toThrow(
        expect.objectContaining({
          code: 'USAGE',
          message: expect.stringMatching(
            /is not a snapshot id \(20261127T131820\.416Z\), a date .* or "latest"$/,
          ),
        }),
      );
    }
  });
});
