/**
 * Telling a person: a webhook (a JSON POST, retried), a command (the same JSON on its stdin), and a
 * healthchecks.io-style ping (start, success, fail), so that a machine that stopped running is noticed
 * too. Payloads are made from run reports only: account names, counts, times, error codes and
 * messages, never a token or a key. URLs may hold a token in their path (Slack, healthchecks.io), so
 * messages about them name only their origin. Sending never fails a run: the outcome goes in its report.
 */
import { spawn } from 'node:child_process';
import type { AlertsConfig } from '../config/schema.js';
import type { Log } from '../log.js';
import type { StaleSummary } from '../snapshot/manifest.js';
import { sleep as realSleep } from '../providers/_pacer.js';
import { VERSION } from '../version.js';
import type { RunReport } from './reports.js';

export type AlertEvent = 'failure' | 'partial' | 'stale' | 'tripwire' | 'success';

/** A run whose snapshot holds a file not read for this many runs in a row alerts as `stale`. */
export const STALE_ALERT_RUNS = 3;

export interface AlertDeps {
  log: Log;
  fetch?: typeof fetch;
  /** Waits between retries (tests pass one that does not). */
  sleep?: (ms: number) => Promise<void>;
}

export interface AlertPayload {
  source: 'syncguard';
  event: AlertEvent;
  account: string;
  host: string;
  time: string;
  /** One line for people. */
  summary: string;
  result: RunReport['result'];
  run: string;
  trigger: RunReport['trigger'];
  snapshot: RunReport['snapshot'] | null;
  tripwire: { fired: boolean; reasons: string[] } | null;
  error: RunReport['error'] | null;
  warnings: string[];
}

type Outcome = RunReport['alerts'][number];

/** The alert a run calls for, if any. A stopped run, and the first of skipped runs in a row, call for
 *  none; from the second skip in a row on, the account is not being backed up: a failure. A run that
 *  passed over damaged or planted objects of the store is "partial": someone should look at the store. */
export function alertEvent(r: RunReport): AlertEvent | undefined {
  switch (r.result) {
    case 'skipped':
      return (r.skippedInARow ?? 0) >= 2 ? 'failure' : undefined;
    case 'ok':
      return r.damaged?.length ? 'partial' : 'success';
    case 'partial':
      return (r.snapshot?.stale?.maxRuns ?? 0) >= STALE_ALERT_RUNS ? 'stale' : 'partial';
    case 'tripwire':
      return 'tripwire';
    case 'failed':
      return 'failure';
    default:
      return undefined;
  }
}

export function summarize(r: RunReport): string {
  const s = r.snapshot;
  switch (r.result) {
    case 'ok':
    case 'partial':
    case 'tripwire': {
      let text = `${r.account}: snapshot ${s!.id}: ${s!.files} files, ${s!.bytes} bytes, ${s!.bytesAdded} bytes added`;
      if (s!.failed > 0) text += `; ${s!.failed} files could not be read`;
      if (r.damaged?.length)
        text += `; ${r.damaged.length} damaged or planted objects in the store were passed over (${r.damaged[0].object}${r.damaged.length > 1 ? ', …' : ''}): run \`syncguard verify\``;
      if (s!.stale && s!.stale.files > 0) text += `; ${staleText(s!.stale)}`;
      if (r.result === 'tripwire')
        text += `; RANSOMWARE TRIPWIRE: ${r.tripwire?.reasons.join('; ')}. Pruning of this account stops until \`syncguard ack ${r.account}\``;
      return text;
    }
    case 'failed':
      return `${r.account}: the ${r.trigger} run failed: ${r.error?.message ?? 'unknown error'}`;
    case 'skipped':
      return `${r.account}: skipped${(r.skippedInARow ?? 0) >= 2 ? ` ${r.skippedInARow} runs in a row` : ''}: ${r.error?.message ?? 'another run was going'}`;
    case 'stopped':
      return `${r.account}: stopped before it finished; nothing was written`;
  }
}

/** "2 files not read: 1 for 3 runs in a row, 1 for 1 run (since 20261120T020000.000Z); the previous versions are kept" */
export function staleText(st: StaleSummary): string {
  const by = st.byRuns.map((b) => `${b.files} for ${b.runs} run${b.runs === 1 ? '' : 's'}`).join(', ');
  return `${st.files} file${st.files === 1 ? '' : 's'} not read: ${by}${st.since ? ` (since ${st.since})` : ''}; the last version read is kept and each is read again every run`;
}

export function alertPayload(r: RunReport, event: AlertEvent): AlertPayload {
  return {
    source: 'syncguard',
    event,
    account: r.account,
    host: r.host,
    time: r.finished,
    summary: summarize(r),
    result: r.result,
    run: r.id,
    trigger: r.trigger,
    snapshot: r.snapshot ?? null,
    tripwire: r.tripwire ? { fired: r.tripwire.fired, reasons: r.tripwire.reasons } : null,
    error: r.error ?? null,
    warnings: r.warnings,
  };
}

/** Sends the alerts the config asks for about a finished run; resolves to their outcomes. */
export async function sendAlerts(cfg: AlertsConfig, report: RunReport, deps: AlertDeps): Promise<Outcome[]> {
  const event = alertEvent(report);
  // A stale run is a partial run that has lasted: whoever hears of partial runs hears of it too.
  if (!event || !(cfg.on.includes(event) || (event === 'stale' && cfg.on.includes('partial')))) return [];
  const payload = alertPayload(report, event);
  const jobs: Array<Promise<Outcome>> = [];
  if (cfg.webhook) {
    const w =
      typeof cfg.webhook === 'string'
        ? { url: cfg.webhook, headers: {}, retries: 3, timeoutSeconds: 10 }
        : cfg.webhook;
    jobs.push(postWebhook(w, payload, deps));
  }
  if (cfg.command) jobs.push(runCommand(cfg.command, payload));
  const outcomes = await Promise.all(jobs);
  for (const o of outcomes)
    if (!o.ok) deps.log('warn', `${report.account}: the ${o.channel} alert could not be sent: ${o.error}`);
  return outcomes;
}

async function postWebhook(
  w: { url: string; headers: Record<string, string>; retries: number; timeoutSeconds: number },
  payload: AlertPayload,
  deps: AlertDeps,
): Promise<Outcome> {
  const body = JSON.stringify(payload);
  const res = await withRetries(w.retries, deps, () =>
    request(deps, w.url, {
      method: 'POST',
      body,
      timeoutMs: w.timeoutSeconds * 1000,
      headers: { 'content-type': 'application/json', 'user-agent': `syncguard/${VERSION}`, ...w.headers },
    }),
  );
  return res.ok
    ? { channel: 'webhook', ok: true }
    : { channel: 'webhook', ok: false, error: `the webhook at ${origin(w.url)} failed: ${res.error}` };
}

/** Pings a healthchecks.io-style check: <url>/start, <url>, <url>/fail. `rid` pairs a start with its end. */
export async function pingHealthcheck(
  url: string,
  kind: 'start' | 'success' | 'fail',
  opts: { rid: string; body?: string },
  deps: AlertDeps,
): Promise<Outcome> {
  const u = new URL(url);
  u.pathname =
    u.pathname.replace(/\/+$/, '') + (kind === 'start' ? '/start' : kind === 'fail' ? '/fail' : '');
  u.searchParams.set('rid', opts.rid);
  const res = await withRetries(2, deps, () =>
    request(deps, u.href, {
      method: 'POST',
      body: (opts.body ?? '').slice(0, 10_000),
      timeoutMs: 10_000,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'user-agent': `syncguard/${VERSION}` },
    }),
  );
  if (!res.ok) deps.log('warn', `the healthcheck ping (${kind}) to ${origin(url)} failed: ${res.error}`);
  return res.ok
    ? { channel: `healthcheck ${kind}`, ok: true }
    : { channel: `healthcheck ${kind}`, ok: false, error: res.error };
}

interface Attempt {
  ok: boolean;
  error?: string;
  retry?: boolean;
  retryAfterMs?: number;
}

async function withRetries(retries: number, deps: AlertDeps, fn: () => Promise<Attempt>): Promise<Attempt> {
  const sleep = deps.sleep ?? ((ms: number) => realSleep(ms));
  let last: Attempt = { ok: false, error: 'not sent' };
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await sleep(Math.min(60_000, last.retryAfterMs ?? 1000 * 2 ** (attempt - 1)));
    last = await fn();
    if (last.ok || !last.retry) return last;
  }
  return last;
}

async function request(
  deps: AlertDeps,
  url: string,
  init: { method: string; body: string; headers: Record<string, string>; timeoutMs: number },
): Promise<Attempt> {
  try {
    const res = await (deps.fetch ?? fetch)(url, {
      method: init.method,
      body: init.body,
      headers: init.headers,
      signal: AbortSignal.timeout(init.timeoutMs),
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { ok: true };
    const retry = res.status === 408 || res.status === 429 || res.status >= 500;
    return {
      ok: false,
      error: `HTTP ${res.status}`,
      retry,
      retryAfterMs: retryAfter(res.headers.get('retry-after')),
    };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why =
      err.name === 'TimeoutError'
        ? `no answer in ${init.timeoutMs / 1000} s`
        : (err.cause?.code ?? err.cause?.message ?? err.message);
    return { ok: false, error: why, retry: true };
  }
}

function retryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(an invalid URL)';
  }
}

/** Runs the alert command: a string through /bin/sh, or an argv list as it is; the payload on stdin,
 *  and SYNCGUARD_EVENT, SYNCGUARD_ACCOUNT, SYNCGUARD_RESULT, SYNCGUARD_SUMMARY in its environment. */
function runCommand(cmd: string | string[], payload: AlertPayload, timeoutMs = 60_000): Promise<Outcome> {
  const [file, args] = typeof cmd === 'string' ? ['/bin/sh', ['-c', cmd]] : [cmd[0], cmd.slice(1)];
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: timeoutMs,
      env: {
        ...process.env,
        SYNCGUARD_EVENT: payload.event,
        SYNCGUARD_ACCOUNT: payload.account,
        SYNCGUARD_RESULT: payload.result,
        SYNCGUARD_SUMMARY: payload.summary,
      },
    });
    child.on('error', (e) =>
      resolve({
        channel: 'command',
        ok: false,
        error: `${file} could not be started: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
      }),
    );
    child.on('close', (code, signal) =>
      resolve(
        code === 0
          ? { channel: 'command', ok: true }
          : {
              channel: 'command',
              ok: false,
              error: signal
                ? `it was ended by ${signal}${signal === 'SIGTERM' ? ` (it ran longer than ${timeoutMs / 1000} s)` : ''}`
                : `it exited with code ${code}`,
            },
      ),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(payload) + '\n');
  });
}
