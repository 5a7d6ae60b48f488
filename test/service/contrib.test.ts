import { promises as fsp } from 'node:fs';
import { describe, expect, it } from 'vitest';

const read = (p: string) => fsp.readFile(new URL(`../../contrib/${p}`, import.meta.url), 'utf8');

/** The element names of a simple XML document, checking that every tag is closed in order. */
function elements(xml: string): string[] {
  const body = xml
    .replace(/<\?xml[^>]*\?>/, '')
    .replace(/<!DOCTYPE[^>]*>/, '')
    .replace(/<!--[\s\S]*?-->/g, '');
  const open: string[] = [];
  const seen: string[] = [];
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w.-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (close) expect(open.pop(), `</${name}> closes another element`).toBe(name);
    else {
      seen.push(name);
      if (!self) open.push(name);
    }
  }
  expect(open).toEqual([]);
  return seen;
}

describe('contrib: launchd and Task Scheduler', () => {
  it('the launchd plist is well formed and starts node and main.js by absolute paths', async () => {
    const plist = await read('launchd/org.syncguard.daemon.plist');
    expect(elements(plist)[0]).toBe('plist');
    const args = /<key>ProgramArguments<\/key>\s*<array>([\s\S]*?)<\/array>/.exec(plist)![1];
    const words = [...args.matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]);
    expect(words[0]).toMatch(/^\/.*\/node$/);
    expect(words[1]).toMatch(/^\/.*\/dist\/cli\/main\.js$/);
    expect(words.slice(2)).toContain('daemon');
    expect(plist).not.toMatch(/<string>\/usr\/bin\/env<\/string>/);
  });

  it('the Task Scheduler XML is well formed and runs node.exe with main.js', async () => {
    const xml = await read('windows/syncguard-snapshot.xml');
    const names = elements(xml);
    expect(names[0]).toBe('Task');
    for (const n of ['CalendarTrigger', 'StartWhenAvailable', 'Exec', 'Command', 'Arguments'])
      expect(names).toContain(n);
    expect(/<Command>([^<]*)<\/Command>/.exec(xml)![1]).toMatch(/^[A-Z]:\\.*\\node\.exe$/);
    expect(/<Arguments>([^<]*)<\/Arguments>/.exec(xml)![1]).toMatch(/\\dist\\cli\\main\.js" snapshot /);
  });
});
