// Writes a private key and its certificate so that no reader ever sees a half-written file, a key
// readable by others (not even briefly), or a new key beside the old certificate.
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

export function writeKeyAndCertificate(keyPath: string, keyPem: string, certPath: string, certPem: string): void {
  mkdirSync(dirname(keyPath), { recursive: true })
  mkdirSync(dirname(certPath), { recursive: true })
  // Written beside and renamed into place.
  const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  writeFileSync(`${keyPath}${suffix}`, keyPem, { mode: 0o600 })
  chmodSync(`${keyPath}${suffix}`, 0o600)
  writeFileSync(`${certPath}${suffix}`, certPem, { mode: 0o644 })
  renameSync(`${keyPath}${suffix}`, keyPath)
  renameSync(`${certPath}${suffix}`, certPath)
}
