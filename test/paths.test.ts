import { describe, expect, it } from 'vitest';
import { comparePaths, joinUnder, showPath, unsafeReason } from '../src/paths.js';

describe('paths', () => {
  it('refuses empty, absolute, dot segments and NUL', () => {
    for (const p of ['', '/etc/passwd', '../x', 'a/../../b', 'a/./b', 'a//b', 'a/', 'a\u0000b', '.', '..']) {
      expect(unsafeReason(p), JSON.stringify(p)).toBeDefined();
    }
  });

  it('keeps every other name a Linux file system allows, backslashes and drive-letter look-alikes included', () => {
    for (const p of [
      'C:\\Users\\x.txt',
      '\\\\server\\share',
      'a\\b',
      'line\nbreak',
      'tab\there',
      'caf\u00e9',
      'cafe\u0301',
      'x'.repeat(255),
      '...',
      '..a',
      ' lead',
    ]) {
      if (process.platform === 'win32') continue;
      expect(unsafeReason(p), JSON.stringify(p)).toBeUndefined();
    }
  });

  it('never joins to a place outside the root', () => {
    expect(joinUnder('/tmp/root', 'a/b.txt')).toBe('/tmp/root/a/b.txt');
    expect(() => joinUnder('/tmp/root', '../escape')).toThrow(/refused/);
    expect(() => joinUnder('/tmp/root', '/etc/passwd')).toThrow(/refused/);
  });

  it('shows control characters escaped, so a name cannot forge output lines', () => {
    expect(showPath('evil\nsyncguard: all good')).toBe('"evil\\nsyncguard: all good"');
    expect(showPath('plain.txt')).toBe('plain.txt');
  });

  it("orders a folder's entries right after the folder", () => {
    const sorted = ['a-b', 'a/z', 'a', 'a.txt'].sort(comparePaths);
    expect(sorted).toEqual(['a', 'a/z', 'a-b', 'a.txt']);
  });

  it('compares as the UTF-8 bytes with / as NUL, astral characters and lone surrogates included', () => {
    const bytes = (p: string) => Buffer.from(p.replaceAll('/', '\0'));
    const alphabet = [
      'a',
      'b',
      '/',
      '-',
      '.',
      '\0',
      '\u00e9',
      '\u0800',
      '\ud7ff',
      '\ue000',
      '\uffff',
      '\u{1f600}',
      '\u{10000}',
      '\ud800',
      '\udc00',
    ];
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const word = () => Array.from({ length: rnd(5) }, () => alphabet[rnd(alphabet.length)]).join('');
    for (let i = 0; i < 20_000; i++) {
      const a = word();
      const b = rnd(3) === 0 ? a + word() : word();
      const want = Math.sign(Buffer.compare(bytes(a), bytes(b)));
      expect(Math.sign(comparePaths(a, b)), JSON.stringify([a, b])).toBe(want);
      expect(Math.sign(comparePaths(b, a)) + 0, JSON.stringify([b, a])).toBe(-want + 0);
    }
  });
});
