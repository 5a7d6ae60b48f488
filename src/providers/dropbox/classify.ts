import { SyncguardError, abortError } from '../../errors.js';

export interface ClassifyContext {
  /** The account's name, for the "run syncguard auth dropbox --account NAME" hint. */
  account: string;
  /** What was being done, in words: "listing /Photos", "downloading Photos/a.jpg". */
  what?: string;
  signal?: AbortSignal;
  /** Removes secrets from text that came from the server or the network stack. */
  redact?: (text: string) => string;
}

/** The shape of a DropboxResponseError (SDK or our streaming helper): status, fetch Headers, parsed body. */
interface ResponseErrorLike {
  name: 'DropboxResponseError';
  status: number;
  headers?: { get?(name: string): string | null };
  error: unknown;
}

export function isDropboxResponseError(err: unknown): err is ResponseErrorLike {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'DropboxResponseError' &&
    typeof (err as { status?: unknown }).status === 'number'
  );
}

/** `error_summary` of an endpoint error ("path/not_found/.."), or '' when the body was not JSON. */
export function errorSummary(err: unknown): string {
  if (!isDropboxResponseError(err)) return '';
  const body = err.error as { error_summary?: unknown } | undefined;
  return typeof body?.error_summary === 'string' ? body.error_summary : '';
}

/** The `.tag` of an endpoint error, or undefined. */
export function errorTag(err: unknown): string | undefined {
  if (!isDropboxResponseError(err)) return undefined;
  const tag = (err.error as { error?: { '.tag'?: unknown } } | undefined)?.error?.['.tag'];
  return typeof tag === 'string' ? tag : undefined;
}

/** The access token was refused only because it has run out: refresh once and try again. */
export function isExpiredToken(err: unknown): boolean {
  return isDropboxResponseError(err) && err.status === 401 && errorTag(err) === 'expired_access_token';
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function networkCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  }
  if (err instanceof TypeError && /^(fetch failed|terminated)$/.test(err.message)) return err.message;
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return 'timed out';
  return undefined;
}

function retryAfterMs(err: ResponseErrorLike): number | undefined {
  const header = err.headers?.get?.('retry-after');
  const seconds =
    header != null && header !== ''
      ? Number(header)
      : Number((err.error as { error?: { retry_after?: unknown } })?.error?.retry_after);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/**
 * Turns anything a Dropbox call can throw into a SyncguardError (STYLE: translate once, at the edge).
 * Messages name what was being done and what to do; no SDK error travels on as a cause, so no
 * header, URL or body with a token in it can reach a log.
 */
export function classify(err: unknown, ctx: ClassifyContext): SyncguardError {
  if (err instanceof SyncguardError) return err;
  if (ctx.signal?.aborted) return abortError(ctx.signal);
  const redact = ctx.redact ?? ((s: string) => s);
  const doing = ctx.what ? ` (${ctx.what})` : '';
  const reauth = `run \`syncguard auth dropbox --account ${ctx.account}\` again`;

  if (isDropboxResponseError(err)) {
    const status = err.status;
    const body = err.error;
    const text = typeof body === 'string' ? body : '';
    const summary = errorSummary(err);
    const tag = errorTag(err);
    const oauthError =
      typeof (body as { error?: unknown })?.error === 'string'
        ? (body as { error: string; error_description?: string })
        : undefined;

    if (oauthError && status < 500 && status !== 429) {
      const why = redact(
        `${oauthError.error}${oauthError.error_description ? `: ${oauthError.error_description}` : ''}`,
      );
      if (oauthError.error === 'invalid_grant') {
        return new SyncguardError(
          'PROVIDER_AUTH',
          `Dropbox no longer accepts the saved authorization of account "${ctx.account}" (${why}): ${reauth}`,
        );
      }
      return new SyncguardError(
        'PROVIDER_AUTH',
        `Dropbox refused the app's credentials for account "${ctx.account}" (${why}): check appKey and appSecret in the config, then ${reauth}`,
      );
    }
    if (status === 401) {
      if (tag === 'invalid_select_user') {
        return new SyncguardError(
          'CONFIG',
          `Dropbox says the selectUser of account "${ctx.account}" is not a member of the team its token belongs to: check accounts[].selectUser (a dbmid:… member id)`,
        );
      }
      if (tag === 'missing_scope') {
        const required = (body as { error?: { required_scope?: unknown } }).error?.required_scope;
        const scope = typeof required === 'string' ? required : 'unknown';
        return new SyncguardError(
          'PROVIDER_AUTH',
          `the Dropbox app lacks the permission "${scope}"${doing}: enable it on the app's Permissions tab in the Dropbox App Console, then ${reauth}`,
        );
      }
      const what =
        tag === 'expired_access_token'
          ? 'the access token expired and could not be renewed'
          : tag === 'user_suspended'
            ? 'the Dropbox account is suspended'
            : `Dropbox refused the access token (${tag ?? 'unauthorized'})`;
      return new SyncguardError('PROVIDER_AUTH', `${what} for account "${ctx.account}"${doing}: ${reauth}`);
    }
    if (status === 429 || (status === 503 && retryAfterMs(err) !== undefined)) {
      return new SyncguardError('PROVIDER_RATE_LIMITED', `Dropbox asks us to slow down${doing}`, {
        retryAfterMs: retryAfterMs(err),
      });
    }
    if (status >= 500) {
      return new SyncguardError('PROVIDER_UNAVAILABLE', `Dropbox answered ${status}${doing}`);
    }
    if (status === 409) {
      if (tag === 'reset' || summary.startsWith('reset')) {
        return new SyncguardError(
          'CURSOR_RESET',
          `Dropbox reset the listing cursor${doing}: a full listing follows`,
        );
      }
      if (/^(path|path_lookup|from_lookup)\/not_found/.test(summary)) {
        return new SyncguardError('NOT_FOUND', `not found on Dropbox${doing}`);
      }
      if (/too_many_write_operations|too_many_requests/.test(summary)) {
        return new SyncguardError(
          'PROVIDER_RATE_LIMITED',
          `Dropbox is busy with other writes to this account${doing}`,
          { retryAfterMs: retryAfterMs(err) },
        );
      }
      if (/(^|\/)conflict(\/|$)/.test(summary)) {
        return new SyncguardError('EXISTS', `something already exists there on Dropbox${doing}`);
      }
      // LookupError.restricted_content: "The file cannot be transferred because the content is
      // restricted" (a copyright claim, a legal requirement). It will not change by asking again.
      if (/(^|\/)restricted_content(\/|$)/.test(summary)) {
        return new SyncguardError(
          'SKIPPED',
          'Dropbox will not serve this file: its content is restricted (restricted_content; a copyright claim or a legal requirement)',
        );
      }
      if (summary.startsWith('unsupported_file')) {
        return new SyncguardError(
          'PROVIDER_ERROR',
          `Dropbox cannot download this file${doing}: it is a cloud document (Paper, Google Docs…), export it to keep a copy`,
        );
      }
      if (/insufficient_space/.test(summary)) {
        return new SyncguardError(
          'PROVIDER_ERROR',
          `the Dropbox account is full${doing}: free some space and try again`,
        );
      }
      return new SyncguardError(
        'PROVIDER_ERROR',
        `Dropbox refused${doing}: ${redact(summary || tag || 'conflict')}`,
      );
    }
    if (status === 422) {
      if (tag === 'invalid_root') {
        return new SyncguardError(
          'CURSOR_RESET',
          `the root namespace of account "${ctx.account}" changed on Dropbox${doing}: a full listing follows`,
        );
      }
      return new SyncguardError(
        'PROVIDER_ERROR',
        `Dropbox gives no access to the namespace configured as root of account "${ctx.account}"${doing}: check accounts[].root`,
      );
    }
    if (status === 400 && /select.?user/i.test(text)) {
      return new SyncguardError(
        'CONFIG',
        `Dropbox refused the request for account "${ctx.account}"${doing}: ${redact(text.slice(0, 300))} (check accounts[].selectUser: it goes with a team token only)`,
      );
    }
    if (status === 403) {
      return new SyncguardError(
        'PROVIDER_ERROR',
        `Dropbox denies access${doing}: ${redact(summary || text.slice(0, 300) || 'forbidden')}`,
      );
    }
    return new SyncguardError(
      'PROVIDER_ERROR',
      `Dropbox refused the request${doing} with ${status}: ${redact((summary || text || tag || '').slice(0, 300))}`,
    );
  }

  const net = networkCode(err);
  if (net)
    return new SyncguardError('PROVIDER_UNAVAILABLE', `the connection to Dropbox failed${doing}: ${net}`);
  const message = err instanceof Error ? err.message : String(err);
  return new SyncguardError('PROVIDER_ERROR', `Dropbox call failed${doing}: ${redact(message)}`);
}
