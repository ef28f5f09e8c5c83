// Finds a free TCP port on 127.0.0.1 by binding port 0 and closing the listener again.
import { createServer } from 'node:net';

/** Returns a port that was free on 127.0.0.1 a moment ago (small race window, fine for tests). */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: unexpected server address'));
        return;
      }
      const { port } = addr;
      srv.close((e) => (e ? reject(e) : resolve(port)));
    });
  });
}
