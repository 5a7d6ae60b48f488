import { InteractionRequiredAuthError } from '@azure/msal-node';
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
  /** Writing was asked for: a missing consent means signing in with --write. */
  write?: boolean;
}

interface StatusLike {
  statusCode?: number;
  code?: string | null;
  message?: string;
  headers?: Headers;
  name?: string;
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

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
  for (
    let e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown } | undefined,
      depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
    if (e.name === 'TypeError' && (e.message === 'fetch failed' || e.message === 'terminated')) return true;
    if (
      e.name === 'SocketError' ||
      e.name === 'ConnectTimeoutError' ||
      e.name === 'HeadersTimeoutError' ||
      e.name === 'BodyTimeoutError'
    )
      return true;
  }
  return false;
}

function isAbort(err: unknown): boolean {
  const e = err as StatusLike | undefined;
  return e?.name === 'AbortError' || e?.code === 'AbortError' || e?.code === 'ABORT_ERR';
}

const INTERACTION_CODES = new Set([
  'invalid_grant',
  'interaction_required',
  'consent_required',
  'login_required',
  'no_tokens_found',
  'bad_token',
  'refresh_token_expired',
  'native_account_unavailable',
]);

/** An MSAL error (it has an errorCode). Only MSAL's error code, sub-error and the AADSTS number are
 *  quoted: never a token, never the request. */
function classifyMsal(err: unknown, ctx: ClassifyContext): SyncguardError {
  const account = ctx.account;
  const e = (err ?? {}) as {
    errorCode?: string;
    subError?: string;
    errorMessage?: string;
    message?: string;
    status?: number;
    name?: string;
  };
  // MSAL reports the device code flow's other answers (authorization_declined, expired_token, …)
  // as post_request_failed, with the server's error code at the end of its message.
  const polled =
    e.errorCode === 'post_request_failed'
      ? /([a-z]+(?:_[a-z]+)+)\s*$/.exec(e.errorMessage ?? '')?.[1]
      : undefined;
  const code = polled ?? e.errorCode ?? '';
  const sub = e.subError ?? '';
  const aadsts = /AADSTS\d+/.exec(e.errorMessage ?? e.message ?? '')?.[0];
  const tag = [code, sub, aadsts].filter(Boolean).join(', ') || e.name || 'error';
  const what = ctx.what;
  if (code === 'network_error' || isNetworkError(err)) {
    return new SyncguardError(
      'PROVIDER_UNAVAILABLE',
      `the Microsoft sign-in service could not be reached while ${what} (${tag}); it is retried`,
      { cause: err },
    );
  }
  if (e.status === 429)
    return new SyncguardError(
      'PROVIDER_RATE_LIMITED',
      `the Microsoft sign-in service is throttling requests (${tag})`,
      { cause: err },
    );
  if (code === 'temporarily_unavailable' || code === 'server_error' || (e.status ?? 0) >= 500) {
    return new SyncguardError(
      'PROVIDER_UNAVAILABLE',
      `the Microsoft sign-in service failed while ${what} (${tag}); it is retried`,
      { cause: err },
    );
  }
  const consent = sub === 'consent_required' || code === 'consent_required' || aadsts === 'AADSTS65001';
  if (consent && ctx.write) {
    return new SyncguardError(
      'PROVIDER_AUTH',
      `the OneDrive sign-in of account "${account}" does not allow writing (${tag}): run \`syncguard auth onedrive --account ${account} --write\` to allow restoring into OneDrive`,
      { cause: err },
    );
  }
  if (err instanceof InteractionRequiredAuthError || INTERACTION_CODES.has(code)) {
    return new SyncguardError(
      'PROVIDER_AUTH',
      `the OneDrive sign-in of account "${account}" has expired or was revoked (${tag}): run \`syncguard auth onedrive --account ${account}\` again`,
      { cause: err },
    );
  }
  if (
    code === 'expired_token' ||
    code === 'authorization_declined' ||
    code === 'bad_verification_code' ||
    code === 'device_code_polling_cancelled'
  ) {
    return new SyncguardError(
      'PROVIDER_AUTH',
      `the OneDrive sign-in of account "${account}" did not finish (${tag}): run \`syncguard auth onedrive --account ${account}\` and complete the sign-in in the browser`,
      { cause: err },
    );
  }
  return new SyncguardError(
    'PROVIDER_AUTH',
    `signing in to OneDrive for account "${account}" failed (${tag}): check the account's clientId and tenant, and that the app registration allows public client flows (docs/onedrive.md)`,
    { cause: err },
  );
}

/**
 * The one place where errors from Graph (GraphError from the client, HttpError from our own requests,
 * fetch's TypeErrors) and from the sign-in (MSAL's AuthErrors) become SyncguardErrors. Messages never
 * hold a token or a pre-authenticated URL.
 */
export function classify(err: unknown, ctx: ClassifyContext): SyncguardError {
  if (err instanceof SyncguardError) return err;
  if (typeof (err as { errorCode?: unknown })?.errorCode === 'string') return classifyMsal(err, ctx);
  if (isAbort(err)) return new SyncguardError('ABORTED', `OneDrive: ${ctx.what} was aborted`, { cause: err });
  const e = (err ?? {}) as StatusLike;
  const status = typeof e.statusCode === 'number' ? e.statusCode : -1;
  // The Graph client wraps whatever a middleware threw into a GraphError with status -1 and the
  // thrown error's name as its code.
  if (status === -1) {
    if (e.code === 'AbortError')
      return new SyncguardError('ABORTED', `OneDrive: ${ctx.what} was aborted`, { cause: err });
    if (isNetworkError(err) || e.code === 'TypeError') {
      return new SyncguardError(
        'PROVIDER_UNAVAILABLE',
        `OneDrive could not be reached while ${ctx.what} (${e.message || 'network error'}); it is retried`,
        { cause: err },
      );
    }
    return new SyncguardError('PROVIDER_ERROR', `OneDrive: ${ctx.what} failed: ${e.message || String(err)}`, {
      cause: err,
    });
  }
  const code = e.code ? ` ${e.code}` : '';
  const detail = `HTTP ${status}${code}`;
  if (status === 401) {
    return new SyncguardError(
      'PROVIDER_AUTH',
      `OneDrive refused the sign-in of account "${ctx.account}" while ${ctx.what} (${detail}): run \`syncguard auth onedrive --account ${ctx.account}\` again`,
      { cause: err },
    );
  }
  const virus = e.headers?.get('x-virus-infected');
  if (status === 403 && (virus || e.code === 'malwareDetected')) {
    // OneDrive's scanner flagged the file: it is not served, to anyone, however often asked
    // (OneDrive/onedrive-api-docs#653, #1626). A skip with the reason, not a permission failure.
    return new SyncguardError(
      'SKIPPED',
      `OneDrive will not serve this file: its virus scanner flagged it${virus ? ` (X-Virus-Infected: ${virus})` : ' (malwareDetected)'}`,
      { cause: err },
    );
  }
  if (status === 403) {
    return new SyncguardError(
      'PROVIDER_ERROR',
      `OneDrive denied access while ${ctx.what} (${detail}): check that the signed-in user may read this drive and that the app has the permissions docs/onedrive.md lists`,
      { cause: err },
    );
  }
  if (status === 404)
    return new SyncguardError('NOT_FOUND', `OneDrive: ${ctx.what}: not found (${detail})`, { cause: err });
  if (status === 409 && e.code === 'nameAlreadyExists')
    return new SyncguardError('EXISTS', `OneDrive: ${ctx.what}: the name exists already (${detail})`, {
      cause: err,
    });
  if (status === 410)
    return new SyncguardError(
      'CURSOR_RESET',
      `OneDrive forgot the change cursor while ${ctx.what} (${detail}): a full listing follows`,
      { cause: err },
    );
  if (status === 429 || status === 503 || status === 509) {
    return new SyncguardError(
      'PROVIDER_RATE_LIMITED',
      `OneDrive is throttling requests while ${ctx.what} (${detail})`,
      { cause: err, retryAfterMs: retryAfterMs(e.headers) },
    );
  }
  if (status >= 500)
    return new SyncguardError(
      'PROVIDER_UNAVAILABLE',
      `OneDrive failed while ${ctx.what} (${detail}); it is retried`,
      { cause: err },
    );
  return new SyncguardError(
    'PROVIDER_ERROR',
    `OneDrive refused ${ctx.what} (${detail}${e.message ? `: ${e.message}` : ''})`,
    { cause: err },
  );
}
