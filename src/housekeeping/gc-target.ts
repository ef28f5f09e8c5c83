// Which registry storage a garbage collection works on: the embedded registry's, or the upstream registry's named by gc.registry_config (its storage mounted into Portier).
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import yaml from 'js-yaml'
import { isRecord } from '../lib/is-record.js'
import type { GcConfig } from './gc-section.js'

export interface GcTarget {
  /** The registry binary (docker-registry / registry) that runs `garbage-collect`. */
  binary: string
  /** The registry's config.yml, passed to the collector. */
  configPath: string
  /** storage.filesystem.rootdirectory as Portier sees it. */
  storageRoot: string
  /**
   * Why the registry may keep answering from a stale blob descriptor cache after a run (storage.cache.blobdescriptor: inmemory):
   * a deleted layer would still be said to exist, so re-pushing it is skipped and the manifest points at nothing (distribution #2270).
   */
  staleCacheWarning?: string
}

export interface EmbeddedStorage {
  binary: string
  dataDir: string
}

export class GcUnavailable extends Error {
  override name = 'GcUnavailable'
}

/** The embedded registry's: the config and storage Portier generated under embedded_registry.data_dir. */
export function embeddedTarget(embedded: EmbeddedStorage): GcTarget {
  const dataDir = resolve(embedded.dataDir)
  return { binary: embedded.binary, configPath: join(dataDir, 'config.yml'), storageRoot: join(dataDir, 'storage') }
}

/** An upstream registry's, from its config.yml (gc.registry_config); throws GcUnavailable naming what is missing. */
export function upstreamTarget(config: Pick<GcConfig, 'registry_config' | 'storage_root'>, binary: string, baseDir: string): GcTarget {
  if (config.registry_config === '') {
    throw new GcUnavailable(
      'garbage collection needs the registry\'s storage: set gc.registry_config to the config.yml of the registry behind Portier ' +
        '(with its storage mounted into Portier), or run Portier without upstreams so it runs the embedded registry',
    )
  }
  const configPath = resolve(baseDir, config.registry_config)
  let parsed: unknown
  try {
    parsed = yaml.load(readFileSync(configPath, 'utf8'))
  } catch (error) {
    throw new GcUnavailable(`gc.registry_config: cannot read ${configPath}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const storage = isRecord(parsed) && isRecord(parsed.storage) ? parsed.storage : undefined
  const filesystem = storage && isRecord(storage.filesystem) ? storage.filesystem : undefined
  const root = typeof filesystem?.rootdirectory === 'string' ? filesystem.rootdirectory : filesystem ? '/var/lib/registry' : undefined
  if (!root && config.storage_root === '') {
    throw new GcUnavailable(`gc.registry_config: ${configPath} has no storage.filesystem section (Portier measures and protects filesystem storage only)`)
  }
  const target: GcTarget = { binary, configPath, storageRoot: config.storage_root !== '' ? resolve(baseDir, config.storage_root) : resolve(dirname(configPath), root ?? '') }
  const cache = storage && isRecord(storage.cache) ? storage.cache : undefined
  if (cache?.blobdescriptor === 'inmemory') {
    target.staleCacheWarning =
      `${configPath} sets storage.cache.blobdescriptor: inmemory: after a collection the registry may still say deleted layers exist ` +
      '(a re-push then skips them and the image cannot be pulled). Remove that cache setting, or restart the registry after each run'
  }
  return target
}
