/** The daemon's HTTP endpoint: GET /healthz (the scheduler is alive, and each account's state) and
 *  GET /metrics (Prometheus). Read-only, no secrets, on 127.0.0.1 unless the config says otherwise. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SyncguardError } from '../errors.js';

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

export interface StatusHandlers {
  health(): unknown;
  metrics(): Promise<{ text: string; contentType: string }>;
}

export async function startStatusServer(
  host: string,
  port: number,
  handlers: StatusHandlers,
): Promise<StatusServer> {
  const server: Server = createServer((req, res) => void answer(req, res));
  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    try {
      if (path === '/healthz') {
        res
          .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(JSON.stringify(handlers.health()) + '\n');
      } else if (path === '/metrics') {
        const m = await handlers.metrics();
        res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' }).end(m.text);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
      }
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new SyncguardError(
          'CONFIG',
          e.code === 'EADDRINUSE'
            ? `status.port: ${host}:${port} is in use by another program: choose another port in the config`
            : `status: cannot listen on ${host}:${port}: ${e.message}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
