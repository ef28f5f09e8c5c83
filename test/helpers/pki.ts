// A test CA and a server certificate for 127.0.0.1 (and localhost) signed by it, made with openssl: for the remote registry, the token service and slapd, which nothing in the system pool trusts.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './exec.js'

export interface TestPki {
  /** ca.crt: the CA certificate clients are told to trust. */
  ca: string
  /** server.crt and server.key. */
  certificate: string
  key: string
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const result = await run('openssl', args, { cwd })
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`)
}

/** Writes ca.crt/ca.key and server.crt/server.key (EC P-256, two days) into `dir`; `ca` and `server` name their subjects. */
export async function makeTestPki(dir: string, names: { ca: string; server: string }): Promise<TestPki> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl(dir, 'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=${names.ca}`, '-days', '2')
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  await openssl(dir, 'req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${names.server}`)
  await openssl(dir, 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext')
  return { ca: join(dir, 'ca.crt'), certificate: join(dir, 'server.crt'), key: join(dir, 'server.key') }
}
