import { createRequire } from 'node:module';

type NodeCron = typeof import('node-cron').default;
let lib: NodeCron | undefined;

/** node-cron, loaded on first use: it only checks the config's cron expressions (the daemon runs
 *  them with croner), so a command that never reads a schedule (`--help`) starts without it.
 *  Synchronous (its CommonJS build), so that the config's schema can check an expression as it parses. */
export function nodeCron(): NodeCron {
  return (lib ??= (createRequire(import.meta.url)('node-cron') as { default: NodeCron }).default);
}
