// Which packages a started gateway has loaded: a feature's heavy dependencies (jose and node-forge for token mode,
// ldapts for LDAP, the Redis and PostgreSQL clients, openid-client, acme-client) load only when it is configured,
// since each costs resident memory in every process that loads it.
import t, { type Test } from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { gatewayFixture } from '../helpers/gateway.js'
import { hashPassword } from '../../src/auth/hashes.js'

/** Loaded into the gateway with --import: appends the name of every package a module is resolved in. */
const HOOK = `
import { registerHooks } from 'node:module'
import { appendFileSync } from 'node:fs'
const seen = new Set()
registerHooks({
  resolve(specifier, context, next) {
    const resolved = next(specifier, context)
    const name = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(resolved.url)?.[1]
    if (name && !seen.has(name)) {
      seen.add(name)
      appendFileSync(process.env.LOADED_PACKAGES_FILE, name + '\\n')
    }
    return resolved
  },
})
`

const OPTIONAL = ['jose', 'node-forge', 'ldapts', '@redis/client', 'pg', 'openid-client', 'acme-client']

async function loadedPackages(t: Test, auth: Record<string, unknown>): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), 'portier-modules-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const hook = join(work, 'hook.mjs')
  await writeFile(hook, HOOK)
  const file = join(work, 'packages.txt')
  await writeFile(file, '')
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: 'http://127.0.0.1:9' }], auth },
    env: { NODE_OPTIONS: `--import=${pathToFileURL(hook).href}`, LOADED_PACKAGES_FILE: file },
  })
  // The fixture returns once the gateway logged 'portier ready': everything the start loads is loaded.
  await gateway.stop()
  return (await readFile(file, 'utf8')).split('\n').filter((name) => name !== '')
}

t.test('htpasswd auth (the bench configuration) loads none of the optional features\' packages', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-modules-users-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 4)}\n`)
  const loaded = await loadedPackages(t, { mode: 'htpasswd', htpasswd: { path: htpasswd } })
  // The hook sees the packages every start needs: it works.
  t.ok(loaded.includes('undici'), `undici loaded (${loaded.join(', ')})`)
  t.ok(loaded.includes('zod'), 'zod loaded')
  for (const name of OPTIONAL) t.notOk(loaded.includes(name), `${name} not loaded`)
})

t.test('token mode loads jose and node-forge (and still no LDAP, Redis, PostgreSQL, OIDC or ACME client)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-modules-token-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 4)}\n`)
  const loaded = await loadedPackages(t, {
    mode: 'token',
    htpasswd: { path: htpasswd },
    token: { key: join(work, 'token.key'), cert: join(work, 'token.crt') },
  })
  t.ok(loaded.includes('jose'), `jose loaded (${loaded.join(', ')})`)
  t.ok(loaded.includes('node-forge'), 'node-forge loaded')
  for (const name of OPTIONAL.filter((name) => name !== 'jose' && name !== 'node-forge')) t.notOk(loaded.includes(name), `${name} not loaded`)
})
