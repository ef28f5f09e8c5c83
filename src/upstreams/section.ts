// The `upstreams` and `health` config sections: the registries behind Portier and how their health is watched.
import { z } from 'zod'
import { flag, list, section, text, whole, duration } from '../config/fields.js'

const originExpect = 'a registry origin like "http://registry:5000"'

const upstream = section({
  url: text({ pattern: /^https?:\/\/[^/?#\s]+\/?$/, expect: originExpect }),
  name: text().default(''),
  /** Basic credentials Portier itself presents to this upstream (empty: none). */
  username: text().default(''),
  password: text().default(''),
  /** Pass the client's own Authorization header through (e.g. the upstream verifies Portier's tokens). */
  forward_authorization: flag().default(false),
  // Absent unless set, so a plain upstream entry stays as short as before.
  /** Share of repositories (by-repository) or of requests (shared) relative to the others; 1 when absent. */
  weight: whole({ min: 1, max: 1000 }).optional(),
  /** PEM file of CA certificates trusted for this upstream's HTTPS (in addition to the system roots). */
  ca_bundle: text().optional(),
  /** PEM client certificate and key Portier presents to this upstream (mutual TLS). */
  client_cert: text().optional(),
  client_key: text().optional(),
  /**
   * This registry's filesystem storage root (its storage.filesystem.rootdirectory, the directory that
   * holds docker/registry/v2), readable by Portier: blob GET/HEAD are answered from it.
   */
  storage: text({ pattern: /^\//, expect: 'an absolute path like "/var/lib/registry"' }).optional(),
  /**
   * Portier holds blob upload sessions itself and writes them into `storage` as the registry lays them out
   * (it must be writable, by the same user as the registry); manifests still go to the registry.
   */
  storage_uploads: flag().optional(),
})

/** The list, each upstream named (by default its host:port) and no name used twice. */
export const upstreamsSection = list(upstream)
  .transform((upstreams, context) => {
    const names = new Set<string>()
    return upstreams.map((entry, index) => {
      let host = ''
      try {
        host = new URL(entry.url).host
      } catch {
        context.issues.push({ code: 'custom', path: [index, 'url'], input: entry.url, message: originExpect })
      }
      const named = { ...entry, name: entry.name || host }
      if (host !== '' && names.has(named.name)) {
        context.issues.push({ code: 'custom', path: [index, 'name'], input: named.name, message: 'a name no other upstream has' })
      }
      names.add(named.name)
      if (entry.storage_uploads === true && entry.storage === undefined) {
        context.issues.push({ code: 'custom', path: [index, 'storage_uploads'], input: true, message: 'true only together with storage (the registry storage the uploads are written into)' })
      }
      return named
    })
  })
  .default(() => [])

export const healthSection = section({
  interval: duration().default(10_000),
  timeout: duration().default(5_000),
  failure_threshold: whole({ min: 1 }).default(3),
  success_threshold: whole({ min: 1 }).default(1),
}).prefault({})

export type UpstreamConfig = z.output<typeof upstreamsSection>[number]
export type HealthConfig = z.output<typeof healthSection>
