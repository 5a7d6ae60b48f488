import { afterEach, describe, expect, it } from 'vitest';
import { onedriveTestbed, type OnedriveTestbed } from './graph-fixture.js';
import { startGraphEmulator, type GraphEmulator, type GraphEmulatorOptions } from './graph.js';

/** The parts of Graph's answers these tests read. */
interface Item {
  id: string;
  name: string;
  parentReference: { id: string };
  file?: { hashes: Record<string, string> };
  folder?: unknown;
  package?: unknown;
}
interface Body extends Partial<Item> {
  value: Item[];
  '@odata.nextLink'?: string;
  '@odata.deltaLink'?: string;
  error: { message: string };
}

/** Each behaviour of the real service lives behind a switch: here, each one off and on, over HTTP. */
describe('emulator: graph switches', () => {
  const beds: OnedriveTestbed[] = [];
  afterEach(async () => {
    for (const tb of beds.splice(0)) await tb.cleanup();
  });

  async function graph(opts: GraphEmulatorOptions = {}, account: Record<string, unknown> = {}) {
    const tb = await onedriveTestbed(await startGraphEmulator(opts), account, { write: true });
    beds.push(tb);
    const emu: GraphEmulator = tb.emu;
    const token = emu.accessTokensIssued.at(-1)!;
    /** A Graph path, or a link the emulator handed out (its host is replaced by the emulator's). */
    const call = async (pathOrLink: string, init: RequestInit = {}) => {
      const u = pathOrLink.startsWith('https://') ? new URL(pathOrLink) : undefined;
      const url = u ? emu.url + u.pathname + u.search : `${emu.url}/v1.0${pathOrLink}`;
      const res = await fetch(url, {
        ...init,
        redirect: 'manual',
        headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Body };
    };
    return { emu, drive: emu.drive, call };
  }

  const deltaAll = async (call: Awaited<ReturnType<typeof graph>>['call']) => {
    const items: Item[] = [];
    let link = '/me/drive/root/delta';
    for (;;) {
      const r = await call(link);
      items.push(...r.body.value);
      if (r.body['@odata.nextLink']) link = r.body['@odata.nextLink'];
      else return { items, deltaLink: r.body['@odata.deltaLink']! };
    }
  };

  it('idCaseDrift: /root and delta spell the same ids in different cases, and any case is taken', async () => {
    for (const idCaseDrift of [false, true]) {
      const { drive, call } = await graph({ idCaseDrift });
      drive.write('a.txt', 'a');
      const root = (await call('/me/drive/root')).body;
      const a = (await deltaAll(call)).items.find((i) => i.name === 'a.txt')!;
      expect(a.parentReference.id === root.id, String(idCaseDrift)).toBe(!idCaseDrift);
      expect(a.parentReference.id.toLowerCase()).toBe(root.id!.toLowerCase());
      const d = (await call('/me/drive')).body.id!;
      expect((await call(`/drives/${d.toUpperCase()}/items/${a.id.toLowerCase()}`)).status).toBe(200);
    }
  });

  it('sha256OnPersonal and hashlessInListings: which hashes a listing gives', async () => {
    const hashes = async (opts: GraphEmulatorOptions) => {
      const { drive, call } = await graph(opts);
      const v = drive.write('f.txt', 'f');
      const listed = (await deltaAll(call)).items.find((i) => i.name === 'f.txt')!;
      const got = (await call(`/me/drive/items/${v.id}`)).body;
      return { listed: listed.file!.hashes, got: got.file!.hashes };
    };
    expect(Object.keys((await hashes({})).listed)).toEqual(['quickXorHash']);
    expect(Object.keys((await hashes({ sha256OnPersonal: true })).listed).sort()).toEqual([
      'quickXorHash',
      'sha256Hash',
    ]);
    const hashless = await hashes({ driveType: 'business', hashlessInListings: true });
    expect(hashless.listed).toEqual({});
    expect(Object.keys(hashless.got)).toEqual(['quickXorHash']);
  });

  it('rewriteOnDownload: the bytes served differ from the size listed', async () => {
    for (const on of [false, true]) {
      const { emu, drive, call } = await graph(on ? { rewriteOnDownload: /\.doc$/ } : {});
      const v = drive.write('letter.doc', 'dear');
      const loc = new URL((await call(`/me/drive/items/${v.id}/content`)).headers.get('location')!);
      const served = Buffer.from(await (await fetch(emu.url + loc.pathname)).arrayBuffer());
      expect(served.length === v.size, String(on)).toBe(!on);
    }
  });

  it('deltaLinkForm: delta links in OData function form, which work', async () => {
    for (const [form, re] of [
      ['query', /\/drives\/[^/]+\/root\/delta\?token=/],
      ['drives', /\/drives\('[^']+'\)\/root\/microsoft\.graph\.delta\(token='/],
      ['items', /\/drives\('[^']+'\)\/items\('[^']+'\)\/microsoft\.graph\.delta\(token='/],
    ] as const) {
      const { drive, call } = await graph({ deltaLinkForm: form });
      drive.write('a.txt', 'a');
      const { deltaLink } = await deltaAll(call);
      expect(deltaLink, form).toMatch(re);
      drive.write('b.txt', 'b');
      const r = await call(deltaLink);
      expect(r.body.value.map((i) => i.name)).toContain('b.txt');
    }
  });

  it('oneNoteAsFolder: a notebook is a folder with a package facet, its own content 404', async () => {
    for (const oneNoteAsFolder of [false, true]) {
      const { drive, call } = await graph({ oneNoteAsFolder });
      const nb = drive.addPackage('Notebook', { 'S.one': 's' });
      const j = (await call(`/me/drive/items/${nb.id}`)).body;
      expect(j.package).toEqual({ type: 'oneNote' });
      expect(j.folder !== undefined, String(oneNoteAsFolder)).toBe(oneNoteAsFolder);
      expect((await call(`/me/drive/items/${nb.id}/content`)).status).toBe(404);
    }
  });

  it('rejectDeltaLinks and repeatDelta: refused delta links, and a nextLink given again with an empty page', async () => {
    const { emu, drive, call } = await graph();
    drive.write('a.txt', 'a');
    const { deltaLink } = await deltaAll(call);
    expect((await call(deltaLink)).status).toBe(200);
    emu.rejectDeltaLinks(1, 400);
    const refused = await call(deltaLink);
    expect([refused.status, refused.body.error.message]).toEqual([400, 'Invalid API or resource']);
    emu.rejectDeltaLinks(1, 404);
    expect((await call(deltaLink)).status).toBe(404);
    expect((await call(deltaLink)).status).toBe(200);
    emu.repeatDelta(2);
    const again = await call(deltaLink);
    expect(again.body.value).toEqual([]);
    expect(new URL(again.body['@odata.nextLink']!).pathname).toBe(new URL(deltaLink).pathname);
  });

  it('flagVirus: 403 with X-Virus-Infected on download', async () => {
    const { drive, call, emu } = await graph();
    const v = drive.write('tool.exe', 'MZ');
    const get = async () => {
      const loc = new URL((await call(`/me/drive/items/${v.id}/content`)).headers.get('location')!);
      return fetch(emu.url + loc.pathname);
    };
    expect((await get()).status).toBe(200);
    drive.flagVirus('tool.exe');
    const r = await get();
    expect([r.status, r.headers.get('x-virus-infected')]).toEqual([403, 'Win32/EICAR_Test_File']);
  });

  it('versions: a PATCH of fileSystemInfo makes a version on Business, not on Personal', async () => {
    for (const driveType of ['personal', 'business'] as const) {
      const { drive, call } = await graph({ driveType });
      const v = drive.write('a.txt', 'a');
      await call(`/me/drive/items/${v.id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ fileSystemInfo: { lastModifiedDateTime: '2024-01-01T00:00:00Z' } }),
      });
      expect(drive.item('a.txt')!.versions, driveType).toBe(driveType === 'business' ? 2 : 1);
    }
  });

  it('rateLimitNext: RateLimit headers on the next answers only', async () => {
    const { emu, call } = await graph();
    expect((await call('/me/drive')).headers.get('ratelimit-remaining')).toBeNull();
    emu.rateLimitNext(1, { limit: 1200, remaining: 10, reset: 31 });
    const r = await call('/me/drive');
    expect([r.headers.get('ratelimit-remaining'), r.headers.get('ratelimit-reset')]).toEqual(['10', '31']);
    expect((await call('/me/drive')).headers.get('ratelimit-remaining')).toBeNull();
  });

  it('sites: the default library by GET /sites/{id}/drive, whatever its name', async () => {
    const { emu, call } = await graph(
      { driveType: 'business' },
      { drive: { site: 'contoso.sharepoint.com:/sites/berlin' } },
    );
    const site = emu.addSite('contoso.sharepoint.com:/sites/berlin', ['Dokumente', 'Berichte']);
    const d = (await call(`/sites/${site.id}/drive`)).body;
    expect([d.id, d.name]).toEqual([site.libraries.get('Dokumente')!.id, 'Dokumente']);
  });
});
