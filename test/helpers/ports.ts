// Finds a free TCP port on 127.0.0.1 by binding port 0 and closing the listener again.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Binds 127.0.0.1:port (0: any free port) and closes the listener again; resolves with the port that was bound. */
function bindOnce(port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('bindOnce: unexpected server address'));
        return;
      }
      const bound = addr.port;
      srv.close((e) => (e ? reject(e) : resolve(bound)));
    });
  });
}

/** Returns a port that was free on 127.0.0.1 a moment ago (small race window, fine for tests). */
export function freePort(): Promise<number> {
  return bindOnce(0);
}

/**
 * An origin that surely refuses connections while the returned `release` has not run: the port is
 * held by a listener on 127.0.0.1, so no other test can take it (nor bind it on 0.0.0.0), and the
 * origin names 127.0.0.2, where nothing listens. A port from freePort() alone may be taken by a test
 * running beside this one between the check and the connection.
 */
export function refusedOrigin(): Promise<{ url: string; release: () => void }> {
  return new Promise((resolve, reject) => {
    const holder = createServer((socket) => socket.destroy());
    holder.on('error', reject);
    holder.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = holder.address();
      if (addr === null || typeof addr === 'string') {
        holder.close();
        reject(new Error('refusedOrigin: unexpected server address'));
        return;
      }
      resolve({ url: `http://127.0.0.2:${addr.port}`, release: () => holder.close() });
    });
  });
}

/**
 * A free port below the kernel's ephemeral range (net.ipv4.ip_local_port_range), for a port that stays
 * unbound for seconds before its server starts (pebble starts first and must be told the port). A port
 * from freePort() lies inside that range, and meanwhile the kernel may give it to an outgoing connection
 * of a test running beside this one as its source port: the server then fails with EADDRINUSE.
 */
export async function freePortBelowEphemeral(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the usual default.
  }
  const bottom = Math.min(20000, low - 1000);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = bottom + Math.floor(Math.random() * (low - bottom));
    if (await bindOnce(port).then(() => true, () => false)) return port;
  }
  return freePort();
}
