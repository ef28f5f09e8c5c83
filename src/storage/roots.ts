// At start-up: which upstreams' storage Portier reads blobs from, and whether each root looks like a registry's (so a wrong mount is said once, not found blob by blob).
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'
import type { Upstream } from '../upstreams/upstreams.js'

export interface StorageRoot {
  upstream: string
  root: string
  /** ready: `<root>/docker/registry/v2` can be read; empty: the root exists without it (before the first push); missing: no readable root (a wrong path or mount). */
  state: 'ready' | 'empty' | 'missing'
  /** With storage_uploads: whether Portier can create the registry's directories there. */
  uploads?: 'writable' | 'not_writable'
}

export function storageRoots(upstreams: readonly Upstream[]): StorageRoot[] {
  return upstreams.flatMap((upstream) => {
    const root = upstream.storage
    if (root === undefined) return []
    const state = readableDirectory(join(root, 'docker', 'registry', 'v2')) ? 'ready' : readableDirectory(root) ? 'empty' : 'missing'
    if (upstream.storageUploads !== true) return [{ upstream: upstream.name, root, state }]
    const writable = state === 'ready' ? writableDirectory(join(root, 'docker', 'registry', 'v2')) : writableDirectory(root)
    return [{ upstream: upstream.name, root, state, uploads: writable ? 'writable' : 'not_writable' }]
  })
}

function readableDirectory(path: string): boolean {
  return accessible(path, constants.R_OK | constants.X_OK)
}

function writableDirectory(path: string): boolean {
  return accessible(path, constants.W_OK | constants.X_OK)
}

function accessible(path: string, mode: number): boolean {
  try {
    accessSync(path, mode)
    return true
  } catch {
    return false
  }
}
