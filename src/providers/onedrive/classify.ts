import { SyncguardError } from '../../errors.js';

/** A non-2xx answer from a request made without the Graph client (download and upload URLs, RAW responses). */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers?: Headers,
  ) {
    super(message);
  }

  /** Reads Graph's error body ({"error":{"code","message"}}) when there is one. */
  static async from(res: Response): Promise<HttpError> {
    let code = '';
    let message = res.statusText;
    try {
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code ?? '';
      message = body.error?.message ?? message;
    } catch {
      // Not JSON (a proxy's page, an empty body): the status says enough.
    }
    return new HttpError(res.status, code, message, res.headers);
  }
}

export interface ClassifyContext {
  /** What was being done, for the message: "listing changes", "reading Documents/a.txt". */
  what: string;
  /** The account's name, for the `syncguard auth` hint. */
  account: string;
}

interface StatusLike {
  statusCode?: number;
  code?: string | null;
  message?: string;
  headers?: Headers;
  name?: string;
}

const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNABORTED',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Retry-After is seconds or an HTTP date (RFC 9110 §10.2.3). */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  const v = headers?.get('retry-after');
  if (!v) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** Whether an error is a dropped connection or another network failure (also inside a cause chain). */
export function isNetworkError(err: unknown): boolean {
  for (let e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
    if (e.name === 'TypeError' && (e.message === 'fetch failed' || e.message === 'terminated')) return true;
    if (e.name === 'SocketError' || e.name === 'ConnectTimeoutError' || e.name === 'HeadersTimeoutError' || e.name === 'BodyTimeoutError') return true;
  }
  return false;
}

function isAbort(err: unknown): boolean {
  const e = err as StatusLike | undefined;
  return e?.name === 'AbortError' || e?.code === 'AbortError' || e?.code === 'ABORT_ERR';
}

/**
 * The one place where Graph's errors (GraphError from the client, HttpError from our own requests,
 * fetch's TypeErrors) become SyncguardErrors. Messages never hold a token or a pre-authenticated URL.
 */
export function classify(err: unknown, ctx: ClassifyContext): SyncguardError {
  if (err instanceof SyncguardError) return err;
  if (isAbort(err)) return new SyncguardError('ABORTED', `OneDrive: ${ctx.what} was aborted`, { cause: err });
  const e = (err ?? {}) as StatusLike;
  const status = typeof e.statusCode === 'number' ? e.statusCode : -1;
  // The Graph client wraps whatever a middleware threw into a GraphError with status -1 and the
  // thrown error's name as its code.
  if (status === -1) {
    if (e.code === 'AbortError') return new SyncguardError('ABORTED', `OneDrive: ${ctx.what} was aborted`, { cause: err });
    if (isNetworkError(err) || e.code === 'TypeError') {
      return new SyncguardError('PROVIDER_UNAVAILABLE', `OneDrive could not be reached while ${ctx.what} (${e.message || 'network error'}); it is retried`, { cause: err });
    }
    return new SyncguardError('PROVIDER_ERROR', `OneDrive: ${ctx.what} failed: ${e.message || String(err)}`, { cause: err });
  }
  const code = e.code ? ` ${e.code}` : '';
  const detail = `HTTP ${status}${code}`;
  if (status === 401) {
    return new SyncguardError('PROVIDER_AUTH', `OneDrive refused the sign-in of account "${ctx.account}" while ${ctx.what} (${detail}): run \`syncguard auth onedrive --account ${ctx.account}\` again`, { cause: err });
  }
  if (status === 403) {
    return new SyncguardError('PROVIDER_ERROR', `OneDrive denied access while ${ctx.what} (${detail}): check that the signed-in user may read this drive and that the app has the permissions docs/onedrive.md lists`, { cause: err });
  }
  if (status === 404) return new SyncguardError('NOT_FOUND', `OneDrive: ${ctx.what}: not found (${detail})`, { cause: err });
  if (status === 409 && e.code === 'nameAlreadyExists') return new SyncguardError('EXISTS', `OneDrive: ${ctx.what}: the name exists already (${detail})`, { cause: err });
  if (status === 410) return new SyncguardError('CURSOR_RESET', `OneDrive forgot the change cursor while ${ctx.what} (${detail}): a full listing follows`, { cause: err });
  if (status === 429 || status === 503 || status === 509) {
    return new SyncguardError('PROVIDER_RATE_LIMITED', `OneDrive is throttling requests while ${ctx.what} (${detail})`, { cause: err, retryAfterMs: retryAfterMs(e.headers) });
  }
  if (status >= 500) return new SyncguardError('PROVIDER_UNAVAILABLE', `OneDrive failed while ${ctx.what} (${detail}); it is retried`, { cause: err });
  return new SyncguardError('PROVIDER_ERROR', `OneDrive refused ${ctx.what} (${detail}${e.message ? `: ${e.message}` : ''})`, { cause: err });
}
