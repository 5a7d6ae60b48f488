/**
 * Reading the config: YAML → ${ENV} substitution → zod. Every mistake is reported with the file, the
 * line, the key, what was expected and what was found, before anything is written anywhere.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { SyncguardError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

export interface LoadedConfig {
  config: Config;
  /** The file it came from. */
  file: string;
  /** Its folder: relative paths in the config are resolved against it. */
  dir: string;
}

/** Where the config is: --config, else $SYNCGUARD_CONFIG, else ./syncguard.yaml. */
export function configPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(explicit ?? env.SYNCGUARD_CONFIG ?? 'syncguard.yaml');
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  if (!existsSync(file)) {
    throw new SyncguardError(
      'CONFIG',
      `no config file at ${file}: copy config.example.yaml to syncguard.yaml and edit it, or point --config (or $SYNCGUARD_CONFIG) at yours`,
    );
  }
  return { config: parseConfig(readFileSync(file, 'utf8'), file, env), file, dir: dirname(file) };
}

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const where = (offset: number | undefined) =>
    offset === undefined ? file : `${file}:${lines.linePos(offset).line}`;
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new SyncguardError(
      'CONFIG',
      `${where(e.pos[0])}: the file is not valid YAML: ${e.message.split('\n')[0]}`,
    );
  }
  const fromEnv = new Map<string, string>();
  substituteEnv(doc, env, where, fromEnv);
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (e) {
    // The yaml library refuses to expand aliases past a limit (a "billion laughs" file).
    if (!(e instanceof ReferenceError)) throw e;
    throw new SyncguardError(
      'CONFIG',
      `${file}: the file uses too many YAML aliases (*name) to be read safely (${e.message}); write the values out`,
    );
  }
  const parsed = configSchema.safeParse(raw ?? {});
  if (parsed.success) return parsed.data;
  const messages = parsed.error.issues.slice(0, 5).map((issue) => {
    const path = issue.path as Array<string | number>;
    // An unknown key is shown at its own line, not at the line its section starts on.
    const node = issue.code === 'unrecognized_keys' ? keyNode(doc, path, issue.keys[0]) : nodeAt(doc, path);
    const key = formatKey(path) || '(top level)';
    return `${where(node?.range?.[0])} ${key}: ${describeIssue(issue, valueAt(raw, path), envSource(fromEnv, formatKey(path)))}`;
  });
  throw new SyncguardError('CONFIG', messages.join('\n'));
}

/** Replaces ${NAME} in every string, and notes in `fromEnv` which keys (formatted) took which variable. */
function substituteEnv(
  doc: Document,
  env: NodeJS.ProcessEnv,
  where: (o?: number) => string,
  fromEnv: Map<string, string>,
  node: unknown = doc.contents,
  path: Array<string | number> = [],
): void {
  if (isMap(node)) {
    for (const pair of node.items)
      substituteEnv(doc, env, where, fromEnv, pair.value, [
        ...path,
        String(isScalar(pair.key) ? pair.key.value : pair.key),
      ]);
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => substituteEnv(doc, env, where, fromEnv, item, [...path, i]));
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('$')) {
    const at = `${where((node as Node).range?.[0])} ${formatKey(path)}`;
    const command = path[0] === 'alerts' && path[1] === 'command';
    const named = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(node.value.replaceAll('$$', ''));
    if (command && path.length === 2 && named) {
      throw new SyncguardError(
        'CONFIG',
        `${at}: \${${named[1]}} cannot be used in a command run by /bin/sh: its value would become shell code (a ";" in it runs more) and be visible to every user of this machine (ps). Write the command in the list form, such as ["/usr/local/bin/notify", "syncguard"]: the command inherits syncguard's environment and reads ${named[1]} there`,
      );
    }
    node.value = node.value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string | undefined) => {
      if (m === '$$') return '$';
      const v = env[name!];
      if (v === undefined || v === '') {
        throw new SyncguardError(
          'CONFIG',
          `${at}: the environment variable ${name} is not set (the config says \${${name}})`,
        );
      }
      // An alert command's argument keeps its \${NAME}: the value reaches the command through its
      // environment (which it inherits), never through its arguments, which every user can read.
      if (command) return m;
      fromEnv.set(formatKey(path), name!);
      return v;
    });
  }
}

/** The variable a value at `key` (or anything below it) came from: such values are never shown,
 *  since the environment is where secrets live. */
function envSource(fromEnv: Map<string, string>, key: string): string | undefined {
  for (const [k, name] of fromEnv)
    if (key === '' || k === key || k.startsWith(key + '.') || k.startsWith(key + '[')) return name;
  return undefined;
}

function keyNode(doc: Document, path: Array<string | number>, key: string): Node | undefined {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
    if (pair && isScalar(pair.key)) return pair.key;
  }
  return nodeAt(doc, path);
}

function nodeAt(doc: Document, path: Array<string | number>): Node | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
    if (node && typeof node === 'object' && 'range' in node) return node;
    if (n > 0) {
      // The key itself, for a missing or unknown key.
      const parent = doc.getIn(path.slice(0, n - 1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === path[n - 1]);
        if (pair && isScalar(pair.key)) return pair.key;
        return parent;
      }
    }
  }
  return undefined;
}

function valueAt(raw: unknown, path: Array<string | number>): unknown {
  let v: unknown = raw;
  for (const k of path)
    v = v && typeof v === 'object' ? (v as Record<string | number, unknown>)[k] : undefined;
  return v;
}

function formatKey(path: Array<string | number | symbol>): string {
  return path
    .map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`))
    .join('');
}

const SECRET_KEY = /secret|token|password|key$/i;

function describeIssue(issue: z.core.$ZodIssue, got: unknown, envName?: string): string {
  const last = issue.path[issue.path.length - 1];
  const shown =
    envName !== undefined
      ? `(hidden: from \${${envName}})`
      : typeof last === 'string' && SECRET_KEY.test(last) && last !== 'appKey'
        ? '(hidden)'
        : JSON.stringify(got);
  switch (issue.code) {
    case 'invalid_value':
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${shown}`;
    case 'invalid_union': {
      const disc = (issue as { note?: string }).note;
      if (disc === 'No matching discriminator') {
        const opts = discriminatorOptions(issue.path);
        return `expected ${opts}, got ${shown}`;
      }
      return `${issue.message}; got ${shown}`;
    }
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (a typo?)`;
    case 'custom':
      return (issue.params as { valueFirst?: boolean } | undefined)?.valueFirst
        ? `${shown} ${issue.message}`
        : `${issue.message}${got === undefined ? '' : `, got ${shown}`}`;
    case 'invalid_type':
      return got === undefined
        ? `is required (expected ${issue.expected})`
        : `expected ${issue.expected}, got ${shown}`;
    default:
      return `${issue.message}${got === undefined ? '' : `, got ${shown}`}`;
  }
}

function discriminatorOptions(path: PropertyKey[]): string {
  if (path[0] === 'store') return '"s3" | "fs"';
  return '"local" | "dropbox" | "onedrive"';
}

/** The JSON Schema of the config file, for editors (`syncguard config schema`). */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
