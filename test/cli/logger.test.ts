import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/cli/logger.js';
import { configSchema } from '../../src/config/schema.js';
import { redact, secretsOf } from '../../src/secrets.js';
import { tempDir } from '../schedule/_helpers.js';

function capture() {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => lines.push(...s.split('\n').filter(Boolean)) } };
}

describe('cli: the daemon log', () => {
  it('writes a time, a level and the message per line for people', () => {
    const out = capture();
    const { log } = createLogger({ format: 'human', stream: out.stream });
    log('info', 'docs: scheduled snapshot starts');
    log('error', 'docs: the run failed');
    log('debug', 'not shown without -v');
    expect(out.lines).toHaveLength(2);
    expect(out.lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}docs: scheduled snapshot starts$/,
    );
    expect(out.lines[1]).toMatch(/Z ERROR docs: the run failed$/);
  });

  it('writes one JSON object a line with --log-format json', () => {
    const out = capture();
    const { log } = createLogger({ format: 'json', stream: out.stream, verbose: true });
    log('warn', 'docs: 3 files could not be read');
    log('debug', 'node details');
    const docs = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(docs).toHaveLength(2);
    expect(docs[0]).toMatchObject({
      level: 'warn',
      msg: 'docs: 3 files could not be read',
      pid: process.pid,
    });
    expect(new Date(docs[0].time as string).toISOString()).toBe(docs[0].time);
    expect(docs[1].level).toBe('debug');
  });

  it('with -q writes warnings and errors only', () => {
    const out = capture();
    const { log } = createLogger({ format: 'human', stream: out.stream, quiet: true });
    log('info', 'ran');
    log('warn', 'careful');
    expect(out.lines).toEqual([expect.stringMatching(/WARN {2}careful$/)]);
  });

  it('never writes a secret the config or a credentials file holds, nor anything shaped like a token', async () => {
    const dir = await tempDir('logger-secrets');
    const refresh = 'rt-9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZyyXX';
    await fsp.writeFile(
      join(dir, 'dbx.json'),
      JSON.stringify({ version: 1, provider: 'dropbox', appKey: 'k', refreshToken: refresh }),
    );
    const config = configSchema.parse({
      store: {
        type: 's3',
        bucket: 'backups',
        objectLock: 'off',
        region: 'us-east-1',
        accessKeyId: 'AKIAEXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      },
      alerts: {
        webhook: {
          url: 'https://hooks.example.com/T000/B000/XXXXsecretpath',
          headers: { Authorization: 'Token abcdefgh12345' },
        },
      },
      accounts: [
        {
          name: 'family',
          provider: 'dropbox',
          appKey: 'k',
          appSecret: 'app-secret-value-1',
          credentials: './dbx.json',
        },
      ],
    });
    const secrets = secretsOf(config, dir);
    expect(secrets).toEqual(
      expect.arrayContaining([
        'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        refresh,
        'app-secret-value-1',
        'https://hooks.example.com/T000/B000/XXXXsecretpath',
        'Token abcdefgh12345',
      ]),
    );
    for (const format of ['human', 'json'] as const) {
      const out = capture();
      const { log } = createLogger({ format, stream: out.stream, secrets });
      log('error', `family: the run failed: refresh with ${refresh} refused (invalid_grant)`);
      log('warn', 'S3 said: signature with wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY does not match');
      log('warn', 'posting to https://hooks.example.com/T000/B000/XXXXsecretpath failed');
      log(
        'info',
        'sent Authorization: Bearer sl.AAAAbbbbCCCCddddEEEEffff and refresh_token=rt-abcdefgh12345678',
      );
      const text = out.lines.join('\n');
      for (const s of [...secrets, 'sl.AAAAbbbbCCCCddddEEEEffff', 'rt-abcdefgh12345678'])
        expect(text).not.toContain(s);
      expect(text.match(/\[redacted\]/g)).toHaveLength(5);
      expect(text).toContain('invalid_grant');
    }
  });

  it('leaves ordinary words alone', () => {
    expect(redact('docs: error code PROVIDER_AUTH; 3 files', ['short', 'wJalrXUtnFEMI'])).toBe(
      'docs: error code PROVIDER_AUTH; 3 files',
    );
  });
});
