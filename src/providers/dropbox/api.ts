import { AsyncLocalStorage } from 'node:async_hooks';
import { Dropbox, DropboxAuth, DropboxResponseError } from 'dropbox';

/** Raw Dropbox calls and the SDK wiring; no domain logic (that lives in listing.ts, download.ts,
 *  upload.ts and roots.ts). */

export const CONTENT_DOWNLOAD_URL = 'https://content.dropboxapi.com/2/files/download';
export const AUTHORIZE_URL = 'https://www.dropbox.com/oauth2/authorize';
const DROPBOX_HOST = /(^|\.)(dropboxapi\.com|dropbox\.com)$/i;

/** JSON for the Dropbox-API-Arg header: every char from U+007F up escaped as \uXXXX (the SDK's own
 *  httpHeaderSafeJson is not exported). */
export function headerSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  );
}

/** The signal of the provider call in progress, handed to fetch: the SDK has no way to pass one. */
const callScope = new AsyncLocalStorage<{ signal?: AbortSignal }>();

export function withSignal<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  return callScope.run({ signal }, fn);
}

/**
 * The fetch every Dropbox call goes through. The SDK builds https://*.dropboxapi.com URLs whatever its
 * `domain` option says (api-brief §1.8.2), so an `endpoint` (an emulator, a proxy) is reached by
 * rewriting scheme and host here, keeping path and query; the original host travels in
 * X-Forwarded-Host. The signal of the current call is attached when the caller gave none.
 */
export function dropboxFetch(base: typeof fetch, endpoint?: string): typeof fetch {
  const prefix = endpoint ? new URL(endpoint) : undefined;
  return (input, init = {}) => {
    const scoped = callScope.getStore()?.signal;
    const withCallSignal = scoped && !init.signal ? { ...init, signal: scoped } : init;
    if (!prefix) return base(input, withCallSignal);
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    if (!DROPBOX_HOST.test(url.hostname)) return base(input, withCallSignal);
    const headers = new Headers(withCallSignal.headers);
    headers.set('X-Forwarded-Host', url.host);
    const target = new URL(prefix.href);
    target.pathname = prefix.pathname.replace(/\/+$/, '') + url.pathname;
    target.search = url.search;
    return base(target, { ...withCallSignal, headers });
  };
}

/** What the SDK does but does not declare in its .d.ts. */
interface DropboxInternals {
  auth: SdkAuth;
  setAuthHeaders(auth: string, init: { headers: Record<string, string> }): void;
  setCommonHeaders(init: { headers: Record<string, string> }): void;
  fetch: typeof fetch;
}

/** DropboxAuth with the methods typed as they behave (they return promises, typed void). */
export interface SdkAuth {
  getAccessToken(): string | undefined;
  getRefreshToken(): string | undefined;
  checkAndRefreshAccessToken(): Promise<void>;
  refreshAccessToken(scope?: string[] | null): Promise<void>;
  setAccessTokenExpiresAt(at: Date): void;
}

export interface ClientOptions {
  appKey: string;
  appSecret?: string;
  refreshToken: string;
  fetch: typeof fetch;
  /** JSON of Dropbox-API-Path-Root, when not the home namespace. */
  pathRoot?: string;
  selectUser?: string;
}

export interface Client {
  dbx: Dropbox;
  auth: SdkAuth;
}

/**
 * A Dropbox client whose token refresh is single-flight: the SDK refreshes before a call when the
 * token is near its end but lets N concurrent calls start N refreshes (api-brief §1.7).
 */
export function createClient(opts: ClientOptions): Client {
  const auth = new DropboxAuth({
    clientId: opts.appKey,
    clientSecret: opts.appSecret,
    refreshToken: opts.refreshToken,
    fetch: opts.fetch,
  }) as unknown as SdkAuth;
  const refresh = auth.refreshAccessToken.bind(auth);
  let inFlight: Promise<void> | undefined;
  auth.refreshAccessToken = () => {
    inFlight ??= refresh().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const dbx = new Dropbox({
    auth: auth as unknown as DropboxAuth,
    fetch: opts.fetch,
    pathRoot: opts.pathRoot,
    selectUser: opts.selectUser,
  });
  return { dbx, auth };
}

/** Sets (or clears) Dropbox-API-Path-Root for every later call; the SDK reads the field per request. */
export function setPathRoot(client: Client, pathRoot: string | undefined): void {
  (client.dbx as unknown as { pathRoot?: string }).pathRoot = pathRoot;
}

export interface DownloadResponse {
  /** FileMetadata of the revision served, from Dropbox-API-Result. */
  metadata: DownloadedMetadata;
  status: number;
  body: ReadableStream<Uint8Array>;
}

export interface DownloadedMetadata {
  id?: string;
  rev?: string;
  size: number;
  content_hash?: string;
  path_display?: string;
}

/**
 * files/download as a stream. The SDK's filesDownload reads the whole file into memory and fails
 * with native fetch (`res.buffer is not a function`, dropbox-sdk-js #1065), so this builds the request
 * with the SDK's own auth and headers (api-brief §1.8.4). Rejects with DropboxResponseError like the SDK.
 */
export async function downloadStream(client: Client, path: string, start = 0): Promise<DownloadResponse> {
  const dbx = client.dbx as unknown as DropboxInternals;
  await dbx.auth.checkAndRefreshAccessToken();
  const init = {
    method: 'POST',
    headers: { 'Dropbox-API-Arg': headerSafeJson({ path }) } as Record<string, string>,
  };
  if (start > 0) init.headers.Range = `bytes=${start}-`;
  dbx.setAuthHeaders('user', init);
  dbx.setCommonHeaders(init);
  const res = await dbx.fetch(CONTENT_DOWNLOAD_URL, init);
  if (!res.ok) {
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* text/plain errors stay text, as in the SDK */
    }
    throw new DropboxResponseError(res.status, res.headers, body);
  }
  const header = res.headers.get('dropbox-api-result');
  if (!header || !res.body) {
    await res.body?.cancel().catch(() => {});
    throw new DropboxResponseError(
      502,
      res.headers,
      'files/download answered without a Dropbox-API-Result header',
    );
  }
  return { metadata: JSON.parse(header) as DownloadedMetadata, status: res.status, body: res.body };
}

export { Dropbox, DropboxAuth, DropboxResponseError };
