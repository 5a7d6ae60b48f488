#!/usr/bin/env node
/**
 * The Dropbox or Graph emulator (test/emulators/, compiled by bench/tsconfig.cloud.json) in a process
 * of its own, so that the CLI measured by bench/cloud.mjs has its own memory and CPU. bench/cloud.mjs
 * forks it and drives it over IPC:
 *
 *   node bench/cloud/emulator-server.mjs dropbox|onedrive <build dir>
 *
 * Requests { id, cmd, args } are answered with { id, ok, result } or { id, ok: false, error }:
 *   info                         { url, appKey }
 *   token                        a Dropbox refresh token for the emulated user (never printed)
 *   fill { files, seed }         that many files of 1–4 KiB in 100 folders of 10 subfolders; { files, folders, bytes }
 *   night { changes, rename }    `changes` files edited or added; with rename, folder d042 (1,000 files at 100,000)
 *                                renamed; { changed, changedBytes, renamed }
 *   counts                       { calls: { route: n }, downloadedBytes }: since the last reset
 *   reset                        zero the counters
 *   close                        stop the emulator and exit
 * It prints nothing but errors.
 */
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [provider, build] = process.argv.slice(2);
if (!['dropbox', 'onedrive'].includes(provider) || !build || !process.send) {
  console.error(
    'usage (forked with IPC by bench/cloud.mjs): emulator-server.mjs dropbox|onedrive <build dir>',
  );
  process.exit(2);
}

// Bytes of download bodies actually sent (200/206 answers only), counted at the socket's edge. The
// emulators build their server with node:http's createServer, so wrapping it here, before they are
// loaded, sees every response without touching their code.
let downloadedBytes = 0;
const isDownload = (url) => url.startsWith('/2/files/download') || url.startsWith('/dl/');
const createServer = http.createServer;
http.createServer = function (...args) {
  const i = args.findIndex((a) => typeof a === 'function');
  const handler = args[i];
  args[i] = (req, res) => {
    if (isDownload(req.url ?? '')) {
      const count = (chunk) => {
        if (chunk && typeof chunk !== 'function' && (res.statusCode === 200 || res.statusCode === 206))
          downloadedBytes += Buffer.byteLength(chunk);
      };
      const write = res.write;
      const end = res.end;
      res.write = function (chunk, ...rest) {
        count(chunk);
        return write.call(this, chunk, ...rest);
      };
      res.end = function (chunk, ...rest) {
        count(chunk);
        return end.call(this, chunk, ...rest);
      };
    }
    return handler(req, res);
  };
  return createServer.apply(this, args);
};
syncBuiltinESMExports();

const load = (p) => import(pathToFileURL(join(build, p)).href);

/** Deterministic content: a unique first line, then a slice of one AES-CTR keystream. */
const KEYSTREAM = (() => {
  const key = createHash('sha256').update('syncguard-cloud-bench').digest();
  const c = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([c.update(Buffer.alloc(8 << 20)), c.final()]);
})();
function content(label, size) {
  const head = Buffer.from(`${label}\n`);
  const off =
    Number.parseInt(createHash('sha1').update(label).digest('hex').slice(0, 8), 16) %
    (KEYSTREAM.length - size);
  return Buffer.concat([head, KEYSTREAM.subarray(off, off + Math.max(0, size - head.length))]).subarray(
    0,
    size,
  );
}
const sizeOf = (i) => 1024 + (((i * 2654435761) >>> 0) % (3 * 1024 + 1));
/** f<i> lives in d<i/1000>/s<i/100 % 10>: 1,000 files a top folder at 100,000 files. */
const pathOf = (i, files) => {
  const per = Math.max(1, Math.ceil(files / 100));
  const d = Math.floor(i / per);
  const s = Math.floor((i % per) / Math.max(1, Math.ceil(per / 10)));
  return `d${String(d).padStart(3, '0')}/s${s}/f${String(i).padStart(6, '0')}.bin`;
};
const EPOCH = Date.UTC(2026, 0, 5, 6, 0, 0);

let emu;
let files = 0;
let seed = 'bench';
let put; // (path, data, date) => void
let rename; // (from, to) => number of files moved

if (provider === 'dropbox') {
  const { startDropboxEmulator } = await load('test/emulators/dropbox.js');
  emu = await startDropboxEmulator({ appKey: 'bench-app-key' });
  put = (path, data, date) => emu.home.put('/' + path, data, { clientModified: date });
  rename = (from, to) => {
    const n = emu.home.subtree(emu.home.get('/' + from)).filter((x) => x.tag === 'file').length;
    emu.home.move('/' + from, '/' + to);
    return n;
  };
} else {
  const { startGraphEmulator } = await load('test/emulators/graph.js');
  // Sign-ins are approved at the second poll, as if the user entered the code at once.
  emu = await startGraphEmulator({ driveType: 'personal', autoApprove: true });
  put = (path, data, date) => emu.drive.write(path, data, { modified: date });
  rename = (from, to) => {
    const n = emu.drive
      .paths()
      .filter((p) => p.startsWith(from + '/') && emu.drive.item(p).kind === 'file').length;
    emu.drive.rename(from, to.slice(to.lastIndexOf('/') + 1));
    return n;
  };
}

function counts() {
  const calls = provider === 'dropbox' ? emu.counts() : { ...emu.calls };
  return { calls, downloadedBytes };
}

function reset() {
  if (provider === 'dropbox') emu.resetCounts();
  else emu.resetCounters();
  downloadedBytes = 0;
}

const commands = {
  info: () => ({ url: emu.url, appKey: emu.appKey }),
  token: () => {
    if (provider !== 'dropbox')
      throw new Error('token: only the Dropbox emulator issues refresh tokens this way');
    return emu.issueRefreshToken();
  },
  fill: ({ files: n, seed: s }) => {
    files = n;
    seed = s ?? seed;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const size = sizeOf(i);
      put(pathOf(i, n), content(`${seed}:${i}`, size), new Date(EPOCH + i * 1000));
      bytes += size;
    }
    reset();
    return { files: n, folders: 100 + 100 * 10, bytes };
  },
  night: ({ changes, rename: doRename }) => {
    const when = new Date(EPOCH + 400 * 86_400_000);
    let changedBytes = 0;
    const edits = Math.ceil(changes * 0.6);
    for (let k = 0; k < changes; k++) {
      // Edits spread over the tree (never in the folder renamed), then new files in a new folder.
      let i = (k * 7919 + 17) % files;
      while (pathOf(i, files).startsWith('d042/')) i = (i + 1013) % files;
      const path = k < edits ? pathOf(i, files) : `new/added-${k}.bin`;
      const size = 1024 + k * 97;
      put(path, content(`${seed}:night:${k}`, size), when);
      changedBytes += size;
    }
    let renamed;
    if (doRename) {
      const n = rename('d042', 'd042 renamed');
      renamed = { from: 'd042', to: 'd042 renamed', files: n };
    }
    return { changed: changes, changedBytes, renamed };
  },
  counts,
  reset: () => {
    reset();
    return null;
  },
  close: async () => {
    await emu.close();
    setImmediate(() => process.exit(0));
    return null;
  },
};

process.on('message', (/** @type {any} */ m) => void handle(m));

/** @param {any} m */
async function handle(m) {
  try {
    const fn = commands[m.cmd];
    if (!fn) throw new Error(`unknown command ${m.cmd}`);
    process.send({ id: m.id, ok: true, result: await fn(m.args ?? {}) });
  } catch (e) {
    process.send({ id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
}
process.on('disconnect', () => {
  void emu.close().finally(() => process.exit(0));
});
process.send({ ready: true, url: emu.url });
