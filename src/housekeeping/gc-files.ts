// Checks what the gc section names (the registry's config.yml, its storage as mounted here) the way a run reads them, for serve and check-config.
import { existsSync } from 'node:fs'
import type { KeyProblem } from '../config/fields.js'
import type { GcConfig } from './gc-section.js'
import { GcUnavailable, upstreamTarget } from './gc-target.js'

/** Problems with gc.*: `embedded` is true when Portier runs the embedded registry (no upstreams). */
export function gcFileProblems(gc: GcConfig, embedded: boolean, baseDir: string = process.cwd()): KeyProblem[] {
  if (embedded) {
    if (gc.registry_config !== '') {
      return [{ key: 'gc.registry_config', expected: '"" with the embedded registry (no upstreams): Portier collects data/registry itself', found: JSON.stringify(gc.registry_config) }]
    }
    return []
  }
  if (gc.registry_config === '') {
    if (gc.schedule !== '') return [{ key: 'gc.schedule', expected: 'gc.registry_config set too: scheduled runs need the registry\'s config.yml and storage', found: JSON.stringify(gc.schedule) }]
    return []
  }
  try {
    const target = upstreamTarget(gc, '', baseDir)
    if (!existsSync(target.storageRoot)) {
      return [{ key: gc.storage_root !== '' ? 'gc.storage_root' : 'gc.registry_config', expected: 'the registry\'s storage mounted into Portier (storage.filesystem.rootdirectory, or gc.storage_root)', found: `${JSON.stringify(target.storageRoot)}: no such directory` }]
    }
    return []
  } catch (error) {
    if (!(error instanceof GcUnavailable)) throw error
    return [{ key: 'gc.registry_config', expected: 'a readable registry config.yml with filesystem storage', found: error.message.replace(/^gc\.registry_config: /, '') }]
  }
}
