import {
  AuthenticationHandler,
  AuthenticationHandlerOptions,
  Client,
  ResponseType,
  type Context,
  type GraphRequest,
  type Middleware,
} from '@microsoft/microsoft-graph-client';
import { SyncguardError } from '../../errors.js';
import type { Pacer } from '../_pacer.js';
import { HttpError, classify } from './classify.js';
import type { TokenSource } from './auth.js';

/** The raw Graph calls the provider makes, each through the pacer. No domain logic here. */

const GRAPH_BASE = 'https://graph.microsoft.com/';
/** The https base URL the Graph client uses when `endpoint` is plain http (an emulator): the client
 *  only sends tokens to, and only parses links on, https hosts. `.test` is reserved (RFC 6761), so no
 *  real host is ever rewritten. */
const FAKE_GRAPH_BASE = 'https://graph.syncguard.test/';
const USER_AGENT = 'ISV|syncguard|syncguard/0.1';
const SELECT =
  'id,name,size,file,folder,package,deleted,root,parentReference,lastModifiedDateTime,fileSystemInfo,remoteItem,cTag,eTag';

/** A Graph driveItem, the fields the provider reads. */
export interface DriveItemJson {
  id: string;
  name?: string;
  size?: number;
  lastModifiedDateTime?: string;
  fileSystemInfo?: { lastModifiedDateTime?: string; createdDateTime?: string };
  parentReference?: { id?: string; driveId?: string; path?: string };
  file?: { mimeType?: string; hashes?: { quickXorHash?: string; sha256Hash?: string; sha1Hash?: string } };
  folder?: { childCount?: number };
  package?: { type?: string };
  deleted?: { state?: string };
  root?: Record<string, unknown>;
  remoteItem?: unknown;
  cTag?: string;
  eTag?: string;
}

export interface DeltaPage {
  value: DriveItemJson[];
  '@odata.nextLink'?: string;
  '@odata.deltaLink'?: string;
}

export interface DriveJson {
  id: string;
  driveType?: string;
  name?: string;
  webUrl?: string;
}

/**
 * The fetch every request goes through. With an http `endpoint`, requests to `.test` hosts (the
 * Graph base above, and the download and upload hosts an emulator names) go to that endpoint, with
 * the host they were meant for in X-Forwarded-Host, as a reverse proxy would send them.
 */
export function endpointFetch(
  endpoint: string | undefined,
  base: typeof fetch,
): { baseUrl: string; fetch: typeof fetch } {
  if (!endpoint) return { baseUrl: GRAPH_BASE, fetch: base };
  const url = new URL(endpoint);
  if (url.protocol === 'https:')
    return { baseUrl: url.origin + url.pathname.replace(/\/*$/, '/'), fetch: base };
  const target = url.origin + url.pathname.replace(/\/+$/, '');
  const rewriting = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const original = new URL(
      typeof input === 'string' ? input : input instanceof URL ? input.href : input.url,
    );
    if (!original.hostname.endsWith('.test')) return base(input, init);
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set('x-forwarded-host', original.host);
    headers.set('x-forwarded-proto', 'https');
    const rewritten = target + original.pathname + original.search;
    if (input instanceof Request) return base(new Request(rewritten, input), { ...init, headers });
    return base(rewritten, { ...init, headers });
  }) as typeof fetch;
  return { baseUrl: FAKE_GRAPH_BASE, fetch: rewriting };
}

/** The last middleware: our fetch instead of the global one. Redirects are never followed here, so
 *  a download's pre-authenticated URL is fetched by us, without the bearer token. */
class FetchHandler implements Middleware {
  constructor(private readonly f: typeof fetch) {}
  async execute(ctx: Context): Promise<void> {
    ctx.response = await this.f(ctx.request as Parameters<typeof fetch>[0], {
      ...(ctx.options as RequestInit),
      redirect: 'manual',
    });
  }
}

/** Below this share of RateLimit-Limit left, calls wait for RateLimit-Reset. */
const RATE_LIMIT_LOW = 0.1;

/**
 * SharePoint (and so Graph on Business drives) sends RateLimit-Limit, -Remaining and -Reset (draft IETF
 * RateLimit header fields) once 80% of an app's quota is used, before it answers 429 ("how to avoid
 * getting throttled or blocked in SharePoint Online"). When little is left, every call waits for the
 * reset instead of running into 429s. Returns how long to wait, in ms, and why; undefined otherwise.
 */
export function rateLimitPause(headers: Headers): { ms: number; why: string } | undefined {
  const remaining = Number(headers.get('ratelimit-remaining') ?? NaN);
  const reset = Number(headers.get('ratelimit-reset') ?? NaN);
  const limit = Number(headers.get('ratelimit-limit') ?? NaN);
  if (!Number.isFinite(remaining) || !Number.isFinite(reset) || reset <= 0) return undefined;
  const low = Number.isFinite(limit) && limit > 0 ? remaining <= limit * RATE_LIMIT_LOW : remaining <= 0;
  if (!low) return undefined;
  return {
    ms: reset * 1000,
    why: `SharePoint says ${remaining}${Number.isFinite(limit) ? ` of ${limit}` : ''} requests are left until its quota resets (RateLimit-Remaining), in ${reset} s`,
  };
}

export interface GraphApiOptions {
  account: string;
  endpoint?: string;
  fetch?: typeof fetch;
  pacer: Pacer;
  tokens: TokenSource;
  /** Tokens that may write (restore back); asked for only when something is written. */
  writeTokens: () => TokenSource;
}

type Api = (path: string) => GraphRequest;

function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown })?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

export const encodePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

export class GraphApi {
  private readonly client: Client;
  readonly baseUrl: string;
  /** fetch for pre-authenticated URLs (downloads, upload sessions): never carries a token. */
  readonly http: typeof fetch;

  constructor(private readonly o: GraphApiOptions) {
    const { baseUrl, fetch: plain } = endpointFetch(o.endpoint, o.fetch ?? globalThis.fetch.bind(globalThis));
    const f = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const res = await plain(input, init);
      const pause = rateLimitPause(res.headers);
      if (pause) o.pacer.ease(pause.ms, pause.why);
      return res;
    }) as typeof fetch;
    this.baseUrl = baseUrl;
    this.http = f;
    this.client = Client.initWithMiddleware({
      baseUrl,
      customHosts: new Set([new URL(baseUrl).hostname]),
      fetchOptions: { headers: { 'User-Agent': USER_AGENT } },
      middleware: [
        // The token of each request is given per request (below), so that a 401 can be matched to
        // the token it refused.
        new AuthenticationHandler({ getAccessToken: async () => this.o.tokens.get() }),
        new FetchHandler(f),
      ],
    });
  }

  /**
   * One Graph call through the pacer: retried when throttled or unavailable, refreshed once and
   * repeated when the token is refused (401), translated by classify() otherwise.
   */
  call<T>(
    what: string,
    // The Graph client types every answer as `any`: the caller names what it expects, as T.
    fn: (api: Api) => Promise<unknown>,
    opts: { signal?: AbortSignal; write?: boolean } = {},
  ): Promise<T> {
    const ctx = { what, account: this.o.account };
    return this.o.pacer.call(async () => {
      const tokens = opts.write ? this.o.writeTokens() : this.o.tokens;
      let token = await tokens.get(opts.signal);
      const api: Api = (path) => {
        const r = this.client
          .api(path)
          .middlewareOptions([new AuthenticationHandlerOptions({ getAccessToken: async () => token })]);
        return opts.signal ? r.option('signal', opts.signal) : r;
      };
      try {
        return (await fn(api)) as T;
      } catch (e) {
        if (statusOf(e) !== 401) throw classify(e, ctx);
        token = await tokens.refresh(token);
        try {
          return (await fn(api)) as T;
        } catch (e2) {
          throw classify(e2, ctx);
        }
      }
    }, opts.signal);
  }

  /** A request to a pre-authenticated URL (no token), through the pacer. */
  plain<T>(what: string, fn: (http: typeof fetch) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const ctx = { what, account: this.o.account };
    return this.o.pacer.call(async () => {
      try {
        return await fn(this.http);
      } catch (e) {
        throw classify(e, ctx);
      }
    }, signal);
  }

  getDrive(ref: { me: true } | { driveId: string }, signal?: AbortSignal): Promise<DriveJson> {
    const path = 'me' in ref ? '/me/drive' : `/drives/${encodeURIComponent(ref.driveId)}`;
    return this.call('reading the drive', (api) => api(path).select('id,driveType,name,webUrl').get(), {
      signal,
    });
  }

  /** `site` is Graph's "hostname:/server-relative-path" (or a bare hostname for the root site). */
  getSite(
    site: string,
    signal?: AbortSignal,
  ): Promise<{ id: string; webUrl?: string; displayName?: string }> {
    return this.call(`finding the SharePoint site ${site}`, (api) => api(`/sites/${site}`).get(), { signal });
  }

  async listSiteDrives(siteId: string, signal?: AbortSignal): Promise<DriveJson[]> {
    const out: DriveJson[] = [];
    let url: string | undefined = `/sites/${encodeURIComponent(siteId)}/drives`;
    while (url) {
      const page: { value: DriveJson[]; '@odata.nextLink'?: string } = await this.call(
        "listing the site's document libraries",
        (api) => api(url!).get(),
        { signal },
      );
      out.push(...page.value);
      url = page['@odata.nextLink'];
    }
    return out;
  }

  /** The site's default document library (GET /sites/{id}/drive). */
  getSiteDrive(siteId: string, signal?: AbortSignal): Promise<DriveJson> {
    return this.call(
      "finding the site's default document library",
      (api) =>
        api(`/sites/${encodeURIComponent(siteId)}/drive`)
          .select('id,driveType,name,webUrl')
          .get(),
      { signal },
    );
  }

  getRoot(driveId: string, signal?: AbortSignal): Promise<DriveItemJson> {
    return this.call(
      "reading the drive's root",
      (api) =>
        api(`/drives/${encodeURIComponent(driveId)}/root`)
          .select('id')
          .get(),
      { signal },
    );
  }

  /** The first delta request of a full enumeration. */
  deltaStart(driveId: string): string {
    return `/drives/${encodeURIComponent(driveId)}/root/delta?$select=${SELECT}`;
  }

  /** One page of delta; a 410 (resyncRequired and its kin) gives the Location to start over from. */
  async deltaPage(
    url: string,
    signal?: AbortSignal,
  ): Promise<{ page: DeltaPage } | { resync: true; location?: string; code: string }> {
    try {
      return { page: await this.call('listing changes', (api) => api(url).get(), { signal }) };
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'CURSOR_RESET') {
        const cause = e.cause as { headers?: Headers; code?: string } | undefined;
        return {
          resync: true,
          location: cause?.headers?.get('location') ?? undefined,
          code: cause?.code ?? 'resyncRequired',
        };
      }
      throw e;
    }
  }

  async *children(driveId: string, itemId: string, signal?: AbortSignal): AsyncGenerator<DriveItemJson> {
    let url: string | undefined =
      `/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(itemId)}/children?$select=${SELECT}`;
    while (url) {
      const page: DeltaPage = await this.call('listing a folder', (api) => api(url!).get(), { signal });
      yield* page.value;
      url = page['@odata.nextLink'];
    }
  }

  /** Where a file's content can be fetched without a token: GET /content answers 302 to it. */
  async contentLocation(
    driveId: string,
    itemId: string,
    what: string,
    signal?: AbortSignal,
  ): Promise<string> {
    return this.call(
      what,
      async (api) => {
        const res = (await api(
          `/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(itemId)}/content`,
        )
          .responseType(ResponseType.RAW)
          .get()) as Response;
        const location = res.headers.get('location');
        if (res.status >= 300 && res.status < 400 && location) {
          await res.body?.cancel();
          return new URL(location, this.baseUrl).href;
        }
        if (res.ok) {
          // Graph always redirects; a proxy that serves the bytes itself is read again from the same URL.
          await res.body?.cancel();
          return res.url;
        }
        throw await HttpError.from(res);
      },
      { signal },
    );
  }

  async item(driveId: string, itemId: string, signal?: AbortSignal): Promise<DriveItemJson | undefined> {
    try {
      return await this.call(
        "reading a folder's details",
        (api) =>
          api(`/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(itemId)}`)
            .select(SELECT)
            .get(),
        { signal },
      );
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'NOT_FOUND') return undefined;
      throw e;
    }
  }

  async itemByPath(
    driveId: string,
    path: string,
    signal?: AbortSignal,
    write = false,
  ): Promise<DriveItemJson | undefined> {
    const p =
      path === ''
        ? `/drives/${encodeURIComponent(driveId)}/root`
        : `/drives/${encodeURIComponent(driveId)}/root:/${encodePath(path)}`;
    try {
      return await this.call(`looking up ${path || 'the root'}`, (api) => api(p).select(SELECT).get(), {
        signal,
        write,
      });
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'NOT_FOUND') return undefined;
      throw e;
    }
  }

  /** Creates a folder; undefined when the name exists already (409). */
  async createFolder(
    driveId: string,
    parentId: string,
    name: string,
    signal?: AbortSignal,
  ): Promise<DriveItemJson | undefined> {
    try {
      return await this.call(
        `creating the folder ${name}`,
        (api) =>
          api(`/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(parentId)}/children`).post({
            name,
            folder: {},
            '@microsoft.graph.conflictBehavior': 'fail',
          }),
        { signal, write: true },
      );
    } catch (e) {
      if (e instanceof SyncguardError && e.code === 'EXISTS') return undefined;
      throw e;
    }
  }

  /** The simple upload (up to 4 MiB). 409 nameAlreadyExists → EXISTS when conflict is "fail". */
  putContent(
    driveId: string,
    parentId: string,
    name: string,
    body: Buffer,
    conflict: 'fail' | 'replace',
    what: string,
    signal?: AbortSignal,
  ): Promise<DriveItemJson> {
    const path = `/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(parentId)}:/${encodeURIComponent(name)}:/content?@microsoft.graph.conflictBehavior=${conflict}`;
    return this.call(what, (api) => api(path).header('Content-Type', 'application/octet-stream').put(body), {
      signal,
      write: true,
    });
  }

  patchItem(
    driveId: string,
    itemId: string,
    patch: Record<string, unknown>,
    what: string,
    signal?: AbortSignal,
  ): Promise<DriveItemJson> {
    return this.call(
      what,
      (api) => api(`/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(itemId)}`).patch(patch),
      { signal, write: true },
    );
  }

  createUploadSession(
    driveId: string,
    parentId: string,
    name: string,
    item: Record<string, unknown>,
    what: string,
    signal?: AbortSignal,
  ): Promise<{ uploadUrl: string; nextExpectedRanges?: string[] }> {
    const path = `/drives/${encodeURIComponent(driveId)}/items/${encodeURIComponent(parentId)}:/${encodeURIComponent(name)}:/createUploadSession`;
    return this.call(what, (api) => api(path).post({ item }), { signal, write: true });
  }
}
