import {
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP proxy in front of the real S3 server that misbehaves on chosen requests, as networks and
 * loaded servers do: a 503 SlowDown, a reset connection, a reply lost after the server acted, a body
 * damaged on the way (one byte flipped, the length kept), or AWS's refusal of a locked write that
 * carries no Content-MD5. Other requests pass through byte for byte (same Host header), so SigV4
 * still verifies.
 */
export type Misbehaviour =
  'slow-down' | 'internal-error' | 'reset' | 'lose-reply' | 'damage-body' | 'need-md5';

export interface FlakyProxy {
  endpoint: string;
  /** Every request seen, as "METHOD path?query". */
  seen: string[];
  /** The headers of every request seen, in the same order. */
  headers: IncomingHttpHeaders[];
  /** Decides per request; undefined forwards it. */
  rule: (req: IncomingMessage, n: number) => Misbehaviour | undefined;
  close(): Promise<void>;
}

export async function flakyProxy(target: string): Promise<FlakyProxy> {
  const to = new URL(target);
  const proxy: FlakyProxy = {
    endpoint: '',
    seen: [],
    headers: [],
    rule: () => undefined,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const n = proxy.seen.push(`${req.method} ${req.url}`);
    proxy.headers.push(req.headers);
    const what = proxy.rule(req, n);
    if (what === 'reset') {
      req.resume();
      req.on('end', () => req.socket.destroy());
      return;
    }
    if (what === 'need-md5') {
      req.resume();
      req.on('end', () => {
        res.writeHead(400, { 'content-type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters</Message></Error>',
        );
      });
      return;
    }
    if (what === 'slow-down' || what === 'internal-error') {
      req.resume();
      req.on('end', () => {
        const [status, code] = what === 'slow-down' ? [503, 'SlowDown'] : [500, 'InternalError'];
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message></Error>`,
        );
      });
      return;
    }
    const up = request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (what === 'lose-reply') {
          // The server has done the work; the client never hears of it.
          upRes.resume();
          upRes.on('end', () => req.socket.destroy());
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => req.socket.destroy());
    if (what !== 'damage-body') {
      req.pipe(up);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (body.length > 0) body[body.length >> 1] ^= 0x01;
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}
