import type { Readable } from 'node:stream';
import type { OnedriveAccountConfig } from '../../config/schema.js';
import { SyncguardError, throwIfAborted } from '../../errors.js';
import type { Log } from '../../log.js';
import { normaliseFolder } from '../../paths.js';
import { Pacer } from '../_pacer.js';
import type { ProviderContext } from '../registry.js';
import type {
  Change,
  ChangesOptions,
  Provider,
  ProviderFeatures,
  RemoteEntry,
  UploadOptions,
} from '../types.js';
import { GraphApi, type DriveJson } from './api.js';
import { TokenSource, createMsalApp, credentialsPath, scopesFor } from './auth.js';
import { Round, idKey, toRoundItem } from './delta.js';
import { openItem } from './download.js';
import { OnedriveWriter } from './upload.js';

/** Names the default document library of a site goes by in English, in config and in its address. */
const DEFAULT_LIBRARY_NAMES = new Set(['documents', 'shared documents']);
/** Rounds of 410 resyncRequired (or of refused cursors) in one listing before giving up. */
const MAX_RESYNCS = 3;
/** Pages with nothing in them, one after the other, before a round is ended: Graph may send some (and
 *  says to follow them, microsoft-graph-docs-contrib#1316), but not for ever. */
const MAX_EMPTY_PAGES = 100;
/** Pages in one listing, at most: 200 items a page, 40 million items. */
const MAX_PAGES = 200_000;

interface DriveInfo {
  driveId: string;
  driveType: string;
  rootId: string;
}

export interface OnedriveProviderOptions {
  /** The pacer all calls go through (tests pass one with a short sleep). */
  pacer?: Pacer;
}

/**
 * A OneDrive (Personal or Business) or a SharePoint document library, through Microsoft Graph.
 * Lists with delta on the drive root (filtered to the configured folders by ancestry), reads through
 * pre-authenticated download URLs, and writes back for restores. Every call goes through one Pacer.
 */
export class OnedriveProvider implements Provider {
  readonly features: ProviderFeatures = {
    deltaListing: true,
    nativeHash: 'quickxor',
    canUpload: true,
    local: false,
    caseInsensitive: true,
  };
  private readonly api: GraphApi;
  private readonly pacer: Pacer;
  private readonly folders: string[];
  private readonly log: Log;
  private drive?: Promise<DriveInfo>;
  private writer?: OnedriveWriter;
  /** SHA-256 that Graph reported for files listed by this provider (Personal only), checked by open(). */
  private readonly sha256 = new Map<string, string>();
  /** Files whose downloaded bytes differ from their listing, already warned about (see openItem). */
  private readonly warned = new Set<string>();

  constructor(
    private readonly account: OnedriveAccountConfig,
    ctx: ProviderContext,
    opts: OnedriveProviderOptions = {},
  ) {
    this.log = ctx.log;
    this.folders = [
      ...new Set(
        account.folders.map((f) => {
          try {
            return normaliseFolder(f);
          } catch (e) {
            throw new SyncguardError(
              'CONFIG',
              `account "${account.name}": folders: ${(e as Error).message}`,
              { cause: e },
            );
          }
        }),
      ),
    ];
    if (this.folders.includes('')) this.folders = [];
    const cachePath = credentialsPath(account, ctx.configDir);
    const app = createMsalApp(account, { cachePath, fetch: ctx.fetch });
    const who = { name: account.name, credentialsPath: cachePath };
    const tokens = new TokenSource(app, scopesFor(account), who);
    let writeTokens: TokenSource | undefined;
    this.pacer = opts.pacer ?? new Pacer({ concurrency: account.concurrency ?? 4 });
    this.api = new GraphApi({
      account: account.name,
      endpoint: account.endpoint,
      fetch: ctx.fetch,
      pacer: this.pacer,
      tokens,
      writeTokens: () =>
        (writeTokens ??= new TokenSource(app, scopesFor(account, { write: true }), who, true)),
    });
  }

  private driveInfo(signal?: AbortSignal): Promise<DriveInfo> {
    if (!this.drive) {
      this.drive = this.resolveDrive(signal);
      this.drive.catch(() => {
        this.drive = undefined;
      });
    }
    return this.drive;
  }

  private async resolveDrive(signal?: AbortSignal): Promise<DriveInfo> {
    const d = this.account.drive;
    let drive: DriveJson;
    try {
      if (d === 'me') drive = await this.api.getDrive({ me: true }, signal);
      else if ('driveId' in d) drive = await this.api.getDrive({ driveId: d.driveId }, signal);
      else drive = await this.siteLibrary(d.site, d.library, signal);
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'NOT_FOUND') {
        throw new SyncguardError(
          'CONFIG',
          `the drive of account "${this.account.name}" was not found (${JSON.stringify(d)}): check the account's drive`,
          { cause: e },
        );
      }
      throw e;
    }
    const root = await this.api.getRoot(drive.id, signal);
    return { driveId: drive.id, driveType: drive.driveType ?? 'personal', rootId: root.id };
  }

  /** A SharePoint library: the site by "hostname:/path" (/sites/{hostname}:/{path}), then its drive by name. */
  private async siteLibrary(site: string, library: string, signal?: AbortSignal): Promise<DriveJson> {
    const ref = siteRef(site);
    let siteJson: { id: string };
    try {
      siteJson = await this.api.getSite(ref, signal);
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'NOT_FOUND') {
        throw new SyncguardError(
          'CONFIG',
          `the SharePoint site "${site}" of account "${this.account.name}" was not found: give drive.site as "contoso.sharepoint.com:/sites/name"`,
          { cause: e },
        );
      }
      throw e;
    }
    const drives = await this.api.listSiteDrives(siteJson.id, signal);
    const want = library.toLowerCase();
    const urlName = (w?: string) =>
      (w ? decodeURIComponent(w.replace(/\/+$/, '').split('/').pop() ?? '') : '').toLowerCase();
    let found =
      drives.find((x) => x.name?.toLowerCase() === want) ?? drives.find((x) => urlName(x.webUrl) === want);
    // The default library is "Documents" only in English ("Dokumente", "Documentos"…): asked for by
    // its English name (the default of drive.library), it is the site's default drive, whatever its name.
    if (!found && DEFAULT_LIBRARY_NAMES.has(want)) found = await this.api.getSiteDrive(siteJson.id, signal);
    if (!found) {
      const names = drives.map((x) => `"${x.name}"`).join(', ') || 'none';
      throw new SyncguardError(
        'CONFIG',
        `the SharePoint site "${site}" has no document library "${library}" (it has ${names}): check the account's drive.library`,
      );
    }
    return found;
  }

  /**
   * Whether a cursor is a delta link we may follow: an https link on this Graph host. Delta links are
   * opaque: Graph has given /drives/{id}/root/delta?token=…, drives('{id}')/root/microsoft.graph.delta(token='…')
   * and drives('{id}')/items('{root}')/microsoft.graph.delta(…) (OneDrive/onedrive-api-docs#1431). The link
   * is kept as given; only a drive it names, in any spelling and casing, must be this one.
   */
  private usable(cursor: string, driveId: string): boolean {
    try {
      const u = new URL(cursor);
      const base = new URL(this.api.baseUrl);
      if (u.protocol !== 'https:' || u.host !== base.host) return false;
      const path = decodeURIComponent(u.pathname);
      const named = /\/drives(?:\/([^/]+)|\('([^']*)'\))/.exec(path);
      const drive = named ? (named[1] ?? named[2]) : undefined;
      return drive === undefined || drive.toLowerCase() === driveId.toLowerCase();
    } catch {
      return false;
    }
  }

  async *changes(
    cursor?: string,
    opts: ChangesOptions = {},
  ): AsyncGenerator<Change, string | undefined, undefined> {
    const { signal } = opts;
    throwIfAborted(signal);
    const d = await this.driveInfo(signal);
    let full = true;
    let reset = false;
    let url = this.api.deltaStart(d.driveId);
    if (cursor !== undefined) {
      if (opts.previous && this.usable(cursor, d.driveId)) {
        url = cursor;
        full = false;
      } else {
        // Without the previous state, ids cannot be placed; a cursor of another drive means nothing here.
        this.log(
          'warn',
          `OneDrive account "${this.account.name}": the saved change cursor cannot be used (${opts.previous ? 'it belongs to another drive' : 'no previous state'}); listing everything`,
        );
        reset = true;
      }
    }
    this.sha256.clear();
    let round = new Round(d.rootId, full ? undefined : opts.previous, this.folders);
    let deltaLink: string | undefined;
    let resyncs = 0;
    let refused = 0;
    let emptyPages = 0;
    let pages = 0;
    const asked = new Set<string>();
    const startOver = (location: string | undefined, why: string) => {
      if (++resyncs > MAX_RESYNCS)
        throw new SyncguardError(
          'PROVIDER_ERROR',
          `OneDrive asked ${resyncs} times in a row to start the listing over (${why}): try again later`,
        );
      url = location && this.sameHost(location) ? location : this.api.deltaStart(d.driveId);
      full = true;
      reset = true;
      round = new Round(d.rootId, undefined, this.folders);
      asked.clear();
    };
    for (;;) {
      throwIfAborted(signal);
      let r: Awaited<ReturnType<GraphApi['deltaPage']>>;
      try {
        r = await this.api.deltaPage(url, signal);
        refused = 0;
      } catch (e) {
        // Graph has answered 400 "Invalid API or resource" and 404 to its own delta links: a cursor
        // it no longer takes, whatever the status says. Tried once more, then a full listing.
        const status = refusedStatus(e);
        if (status === undefined || url === this.api.deltaStart(d.driveId)) throw e;
        if (++refused < 2) continue;
        refused = 0;
        this.log(
          'warn',
          `OneDrive account "${this.account.name}": OneDrive refused the change cursor twice (HTTP ${status}); listing everything`,
        );
        startOver(undefined, `HTTP ${status}`);
        continue;
      }
      if ('resync' in r) {
        // 410: the cursor is too old or the drive changed under it (driveitem-delta, "resyncRequired").
        this.log(
          'info',
          `OneDrive account "${this.account.name}": the change cursor expired (${r.code}); listing everything`,
        );
        startOver(r.location, r.code);
        continue;
      }
      asked.add(url);
      pages++;
      for (const raw of r.page.value) if (raw?.id) round.add(toRoundItem(raw));
      const next = r.page['@odata.nextLink'];
      if (next) {
        emptyPages = r.page.value.length === 0 ? emptyPages + 1 : 0;
        // A nextLink given again with an empty page goes round in circles (microsoft-graph-docs#2749):
        // the round ends there, and the next run goes on from that link.
        const again = emptyPages > 0 && asked.has(next);
        if (again || emptyPages >= MAX_EMPTY_PAGES || pages >= MAX_PAGES) {
          this.log(
            'warn',
            `OneDrive account "${this.account.name}": ${again ? 'OneDrive gave the same page of changes again, empty' : pages >= MAX_PAGES ? `the listing reached ${MAX_PAGES} pages` : `OneDrive sent ${emptyPages} empty pages in a row`}; the listing ends here and the next run goes on from where it stopped`,
          );
          deltaLink = next;
          break;
        }
        url = next;
        continue;
      }
      deltaLink = r.page['@odata.deltaLink'];
      if (!deltaLink)
        throw new SyncguardError('PROVIDER_ERROR', 'OneDrive ended a change listing without a deltaLink');
      break;
    }
    if (!full) await this.listMovedIn(round, d.driveId, signal);
    await this.placeOrphans(round, d.driveId, signal);
    if (reset) yield { kind: 'reset' };
    for (const c of round.changes({ full })) {
      if (c.kind === 'upsert' && c.entry.type === 'file' && c.entry.id) {
        const sha = round.get(c.entry.id)?.sha256;
        if (sha) this.sha256.set(c.entry.id, sha);
      }
      yield c;
    }
    return deltaLink;
  }

  private sameHost(url: string): boolean {
    try {
      return new URL(url).host === new URL(this.api.baseUrl).host;
    } catch {
      return false;
    }
  }

  /** Folders moved into the configured folders from outside arrive without what they hold. */
  private async listMovedIn(round: Round, driveId: string, signal?: AbortSignal): Promise<void> {
    const stack = round.foldersToList();
    const listed = new Set<string>();
    while (stack.length > 0) {
      throwIfAborted(signal);
      const id = stack.pop()!;
      if (listed.has(id)) continue;
      listed.add(id);
      for await (const raw of this.api.children(driveId, id, signal)) {
        if (round.get(raw.id)) continue; // this round's version is newer
        const it = toRoundItem(raw);
        round.add(it);
        if (it.kind === 'dir') stack.push(it.id);
      }
    }
  }

  /** Items whose parent chain is unknown: fetch the folders above them, up to one the round or the
   *  previous snapshot knows. One call per unknown folder; none at all when Graph sends the parent chain. */
  private async placeOrphans(round: Round, driveId: string, signal?: AbortSignal): Promise<void> {
    const fetched = new Set<string>();
    for (;;) {
      const missing = round.unknownParents().filter((id) => !fetched.has(idKey(id)));
      if (missing.length === 0) return;
      for (const id of missing) {
        throwIfAborted(signal);
        fetched.add(idKey(id));
        const raw = await this.api.item(driveId, id, signal);
        round.add(
          raw
            ? { ...toRoundItem(raw), context: true }
            : { id, kind: 'dir', deleted: true, size: 0, modified: new Date(0), context: true },
        );
      }
    }
  }

  async open(entry: RemoteEntry, signal?: AbortSignal): Promise<Readable> {
    const d = await this.driveInfo(signal);
    return openItem(
      {
        api: this.api,
        account: this.account.name,
        driveId: d.driveId,
        log: this.log,
        sha256Of: (id) => this.sha256.get(id),
        warned: this.warned,
      },
      entry,
      signal,
    );
  }

  private async write(signal?: AbortSignal): Promise<OnedriveWriter> {
    const d = await this.driveInfo(signal);
    return (this.writer ??= new OnedriveWriter({ api: this.api, driveId: d.driveId, rootId: d.rootId }));
  }

  async mkdir(path: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    await (await this.write(opts.signal)).mkdir(path, opts.signal);
  }

  async upload(path: string, body: Readable, size: number, opts: UploadOptions): Promise<void> {
    await (await this.write(opts.signal)).upload(path, body, size, opts);
  }

  async exists(path: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.write(signal)).exists(path, signal);
  }

  async close(): Promise<void> {}

  /** Throttling waits and retries so far, for run reports. */
  stats(): { throttledMs: number; retries: number } {
    return { throttledMs: this.pacer.throttledMs, retries: this.pacer.retries };
  }
}

/** The HTTP status of a delta request Graph refused as if the link were wrong (400, 404), if it was that. */
function refusedStatus(e: unknown): number | undefined {
  if (!(e instanceof SyncguardError)) return undefined;
  if (e.code === 'NOT_FOUND') return 404;
  const status = (e.cause as { statusCode?: unknown } | undefined)?.statusCode;
  return e.code === 'PROVIDER_ERROR' && status === 400 ? 400 : undefined;
}

/** "contoso.sharepoint.com:/sites/finance", "https://contoso.sharepoint.com/sites/finance" or
 *  "contoso.sharepoint.com" → the site reference Graph takes after /sites/. */
export function siteRef(site: string): string {
  let host: string;
  let path: string;
  if (/^https?:\/\//i.test(site)) {
    const u = new URL(site);
    host = u.hostname;
    path = decodeURIComponent(u.pathname);
  } else {
    const i = site.indexOf(':');
    host = i < 0 ? site : site.slice(0, i);
    path = i < 0 ? '' : site.slice(i + 1);
  }
  host = host.replace(/\/+$/, '');
  path = path.replace(/^\/+|\/+$/g, '');
  if (!/^[A-Za-z0-9.-]+$/.test(host)) {
    throw new SyncguardError(
      'CONFIG',
      `drive.site "${site}" does not start with a host name: write it as "contoso.sharepoint.com:/sites/name"`,
    );
  }
  return path === '' ? host : `${host}:/${path.split('/').map(encodeURIComponent).join('/')}`;
}
