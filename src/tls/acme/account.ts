// The ACME account: its key (created once, mode 0600) and URL in storage, and the client that signs with it.
import { existsSync, readFileSync } from 'node:fs'
import { Agent, get } from 'node:https'
import { rootCertificates } from 'node:tls'
import acme from 'acme-client'
import type { Logger } from '../../observe/log.js'
import type { AcmePaths } from './storage.js'
import { writeFileAtomically } from '../../lib/atomic-write.js'

interface AccountInfo {
  directory: string
  url: string
  email: string
}

export interface AccountOptions {
  directoryUrl: string
  email: string
  eab: { kid: string; hmac_key: string }
  paths: AcmePaths
  log: Logger
}

function writePrivate(path: string, text: string): void {
  writeFileAtomically(path, text, 0o600)
}

function readInfo(path: string): AccountInfo | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as AccountInfo
  } catch {
    return undefined
  }
}

/**
 * Applies to every ACME request this process makes (acme-client shares one HTTP instance):
 * trust `caBundlePem` besides the public roots, and retry a failed request only briefly, since
 * the order scheduler has its own, longer backoff.
 */
let agent: Agent | undefined

export function configureTransport(caBundlePem: string | undefined): void {
  agent = caBundlePem ? new Agent({ ca: [...rootCertificates, caBundlePem], keepAlive: true }) : undefined
  if (agent) acme.axios.defaults.httpsAgent = agent
  const settings = acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number } }
  if (settings.acmeSettings) {
    settings.acmeSettings.retryMaxAttempts = 2
    settings.acmeSettings.retryDefaultDelay = 1
  }
}

/** Sends acme-client's own progress lines to the log at debug level. */
export function routeLibraryLog(log: Logger): void {
  acme.setLogger((message) => log.debug({ acme: message }, 'acme-client'))
}

/**
 * Fetches the directory first: acme-client reports a CA it cannot reach as a TypeError about
 * "config" (its retry handler loses the network error), so this says what actually went wrong.
 */
function checkDirectory(directoryUrl: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => reject(new Error(`cannot reach the ACME directory ${directoryUrl}: ${why}`))
    const req = get(directoryUrl, { ...(agent ? { agent } : {}), timeout: 15_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk.length + body.length < 1_000_000 ? chunk : ''))
      res.on('end', () => {
        if (res.statusCode !== 200) return fail(`HTTP ${res.statusCode}`)
        try {
          const directory = JSON.parse(body) as { newNonce?: unknown }
          if (typeof directory.newNonce !== 'string') return fail('the answer is not an ACME directory (no newNonce)')
        } catch {
          return fail('the answer is not JSON')
        }
        resolve()
      })
      res.on('error', (error) => fail(error.message))
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')))
    req.on('error', (error) => fail(error.message))
  })
}

/** A client for the account in storage, creating the key on first use; registers on the CA when needed. */
export async function accountClient(options: AccountOptions): Promise<acme.Client> {
  const { paths, directoryUrl, email, eab, log } = options
  await checkDirectory(directoryUrl)
  if (!existsSync(paths.accountKey)) {
    writePrivate(paths.accountKey, (await acme.crypto.createPrivateEcdsaKey('P-256')).toString())
    log.info({ key: paths.accountKey }, 'created an ACME account key')
  }
  const accountKey = readFileSync(paths.accountKey)
  const info = readInfo(paths.accountInfo)
  const known = info?.directory === directoryUrl ? info : undefined
  const client = new acme.Client({
    directoryUrl,
    accountKey,
    ...(known ? { accountUrl: known.url } : {}),
    ...(eab.kid ? { externalAccountBinding: { kid: eab.kid, hmacKey: eab.hmac_key } } : {}),
    // Polls for a challenge's or order's status: 1 s, 2 s, 4 s … up to 10 s between polls.
    backoffAttempts: 10,
    backoffMin: 1000,
    backoffMax: 10_000,
  })
  const contact = email ? [`mailto:${email}`] : []
  if (!known) {
    // With a key the CA already knows, this returns the existing account.
    await client.createAccount({ termsOfServiceAgreed: true, contact })
    writePrivate(paths.accountInfo, `${JSON.stringify({ directory: directoryUrl, url: client.getAccountUrl(), email } satisfies AccountInfo, null, 2)}\n`)
    log.info({ account: client.getAccountUrl(), email: email || undefined }, 'registered the ACME account')
  } else if (known.email !== email) {
    await client.updateAccount({ contact })
    writePrivate(paths.accountInfo, `${JSON.stringify({ ...known, email } satisfies AccountInfo, null, 2)}\n`)
    log.info({ account: known.url, email: email || undefined }, 'updated the ACME account contact')
  }
  return client
}
