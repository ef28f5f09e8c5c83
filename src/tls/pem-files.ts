// Writes a private key and its certificate so that no reader ever sees a half-written file, a key
// readable by others (not even briefly), or a new key beside the old certificate.
import { writeFilesAtomically } from '../lib/atomic-write.js'

export function writeKeyAndCertificate(keyPath: string, keyPem: string, certPath: string, certPem: string): void {
  // Both are written beside their targets first, then renamed into place key first.
  writeFilesAtomically([
    { path: keyPath, data: keyPem, mode: 0o600 },
    { path: certPath, data: certPem, mode: 0o644 },
  ])
}
