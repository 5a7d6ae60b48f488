import type { DropboxAccountConfig } from '../../config/schema.js';
import type { SyncguardError } from '../../errors.js';
import type { Log } from '../../log.js';
import { Pacer, showDuration, type PacerOptions } from '../_pacer.js';
import type { ProviderContext } from '../registry.js';
import { createClient, dropboxFetch, withSignal, type Client } from './api.js';
import { classify, isExpiredToken } from './classify.js';

/**
 * The one way the Dropbox provider calls Dropbox: the SDK client, one Pacer, token renewal and one
 * classify() that turns whatever failed into a SyncguardError with secrets redacted. Listing, download,
 * upload and the path root all call through it.
 */
export class DropboxCalls {
  readonly client: Client;
  readonly pacer: Pacer;
  readonly account: string;
  readonly log: Log;
  private readonly secrets: string[];

  constructor(
    account: DropboxAccountConfig,
    ctx: ProviderContext,
    refreshToken: string,
    pacer?: PacerOptions,
  ) {
    this.account = account.name;
    this.log = ctx.log;
    const base = ctx.fetch ?? globalThis.fetch;
    this.client = createClient({
      appKey: account.appKey,
      appSecret: account.appSecret,
      refreshToken,
      fetch: dropboxFetch(base, account.endpoint),
      selectUser: account.selectUser,
    });
    this.secrets = [refreshToken, ...(account.appSecret ? [account.appSecret] : [])];
    this.pacer = new Pacer({
      concurrency: Math.max(4, account.concurrency ?? 4),
      onWait: (ms, err) => {
        // A long wait is said at info level: Dropbox often asks for 300 s (rclone #1788, #3482).
        ctx.log(
          ms >= 10_000 ? 'info' : 'debug',
          `dropbox ${account.name}: retrying in ${showDuration(ms)} after ${err.code}: ${err.message}`,
        );
        const until = this.pacer.throttledUntil;
        if (err.code === 'PROVIDER_RATE_LIMITED' && until !== undefined)
          ctx.onThrottle?.(new Date(until), err.message);
      },
      ...pacer,
    });
  }

  /**
   * One Dropbox call through the pacer. The token is renewed before the call when near its end (the
   * SDK's own check), and once more when Dropbox ends it early with 401 expired_access_token: the SDK
   * never reacts to a 401 (api-brief §1.7). Refreshes are single-flight (api.ts).
   */
  call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const { auth } = this.client;
    return this.pacer.call(
      () =>
        withSignal(signal, async () => {
          try {
            await auth.checkAndRefreshAccessToken();
            const used = auth.getAccessToken();
            try {
              return await fn();
            } catch (e) {
              if (!isExpiredToken(e)) throw e;
              if (auth.getAccessToken() === used) await auth.refreshAccessToken();
              return await fn();
            }
          } catch (e) {
            throw this.classify(e, what, signal);
          }
        }),
      signal,
    );
  }

  classify(err: unknown, what: string, signal?: AbortSignal): SyncguardError {
    return classify(err, { account: this.account, what, signal, redact: (s) => this.redact(s) });
  }

  redact(text: string): string {
    let out = text;
    const token = this.client.auth.getAccessToken();
    for (const secret of [...this.secrets, ...(token ? [token] : [])]) {
      if (secret.length >= 6) out = out.split(secret).join('[redacted]');
    }
    return out
      .replace(/((?:refresh_token|access_token|client_secret|code_verifier|code)=)[^&\s]+/g, '$1[redacted]')
      .replace(/Bearer\s+\S+/g, 'Bearer [redacted]');
  }
}
