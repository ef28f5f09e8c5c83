// Starts a real Debian `slapd` (OpenLDAP) on 127.0.0.1 with a small directory (users alice, bob and the disabled carol,
// groups ci and admins), ldap:// with StartTLS and ldaps:// from a CA made for the test, and stops it in teardown.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { run } from './exec.js'
import { makeTestPki } from './pki.js'
import { freePort } from './ports.js'

export const SLAPD_BIN = process.env.PORTIER_SLAPD_BIN ?? '/usr/sbin/slapd'
export const SLAPADD_BIN = '/usr/sbin/slapadd'

export const SUFFIX = 'dc=portier,dc=test'
export const ADMIN_DN = `cn=admin,${SUFFIX}`
export const SERVICE_DN = `cn=portier,ou=services,${SUFFIX}`

/** The people in the test directory, with their passwords. carol is locked (pwdAccountLockedTime). */
export const PEOPLE = {
  alice: { password: 'alice-ldap-password', groups: ['ci', 'admins'] },
  bob: { password: 'bob-ldap-password', groups: [] as string[] },
  carol: { password: 'carol-ldap-password', groups: ['ci'] },
  // A name with filter metacharacters: only an escaped filter finds exactly this entry.
  'dave*': { password: 'dave-ldap-password', groups: ['ci'] },
} as const

export interface SlapdHandle {
  /** ldap://127.0.0.1:PORT (plain, StartTLS offered) */
  url: string
  /** ldaps://127.0.0.1:PORT */
  ldapsUrl: string
  /** The CA that signed slapd's certificate (PEM file). */
  caFile: string
  /** A file holding the service account's password (cn=portier,ou=services,…). */
  servicePasswordFile: string
  serviceDn: string
  userBase: string
  groupBase: string
  dir: string
  /** Stops slapd, keeping its data: start() brings it back on the same ports. */
  pause(): Promise<void>
  /** Starts it again after pause() (nothing when it runs). */
  start(): Promise<void>
  /** Stops slapd and removes its directory. Idempotent. */
  stop(): Promise<void>
}

/** RFC 2307 {SSHA}: what slappasswd writes. */
function ssha(password: string): string {
  const salt = randomBytes(8)
  const digest = createHash('sha1').update(password).update(salt).digest()
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`
}

function ldif(servicePassword: string): string {
  const entries: string[] = [
    `dn: ${SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: portier\no: Portier test`,
    `dn: ou=people,${SUFFIX}\nobjectClass: organizationalUnit\nou: people`,
    `dn: ou=groups,${SUFFIX}\nobjectClass: organizationalUnit\nou: groups`,
    `dn: ou=services,${SUFFIX}\nobjectClass: organizationalUnit\nou: services`,
    `dn: ${SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: portier\nuserPassword: ${ssha(servicePassword)}`,
  ]
  for (const [uid, person] of Object.entries(PEOPLE)) {
    const lines = [
      // The RDN is cn (no metacharacters), so a uid like "dave*" needs no DN escaping.
      `dn: cn=${uid.replace(/\W/g, '')},ou=people,${SUFFIX}`,
      'objectClass: inetOrgPerson',
      `cn: ${uid.replace(/\W/g, '')}`,
      `sn: ${uid}`,
      `uid: ${uid}`,
      `userPassword: ${ssha(person.password)}`,
    ]
    // ppolicy's permanent lock: the way an OpenLDAP operator disables an account.
    if (uid === 'carol') lines.push('pwdAccountLockedTime: 000001010000Z')
    entries.push(lines.join('\n'))
  }
  for (const group of ['ci', 'admins']) {
    const members = Object.entries(PEOPLE)
      .filter(([, person]) => (person.groups as readonly string[]).includes(group))
      .map(([uid]) => `member: cn=${uid.replace(/\W/g, '')},ou=people,${SUFFIX}`)
    entries.push([`dn: cn=${group},ou=groups,${SUFFIX}`, 'objectClass: groupOfNames', `cn: ${group}`, ...members].join('\n'))
  }
  return `${entries.join('\n\n')}\n`
}

function slapdConf(dir: string): string {
  return [
    'include /etc/ldap/schema/core.schema',
    'include /etc/ldap/schema/cosine.schema',
    'include /etc/ldap/schema/inetorgperson.schema',
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    // ppolicy defines pwdAccountLockedTime (and refuses binds of a locked account).
    'moduleload ppolicy',
    `pidfile ${join(dir, 'slapd.pid')}`,
    `TLSCACertificateFile ${join(dir, 'ca.crt')}`,
    `TLSCertificateFile ${join(dir, 'server.crt')}`,
    `TLSCertificateKeyFile ${join(dir, 'server.key')}`,
    'database mdb',
    `suffix "${SUFFIX}"`,
    `rootdn "${ADMIN_DN}"`,
    `rootpw ${randomBytes(12).toString('hex')}`,
    `directory ${join(dir, 'db')}`,
    'maxsize 16777216',
    'overlay ppolicy',
    // Passwords are for binding only; the service account reads everything else; nobody else reads anything.
    'access to attrs=userPassword by anonymous auth by * none',
    `access to * by dn.exact="${SERVICE_DN}" read by self read by * none`,
    '',
  ].join('\n')
}

/** Waits until slapd answers a search of the root DSE, bounded. */
async function waitReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`slapd exited (${child.exitCode ?? child.signalCode}): ${readFileSync(logFile, 'utf8').slice(-2000)}`)
    const probe = await run('ldapsearch', ['-x', '-H', url, '-b', '', '-s', 'base', '-LLL', 'namingContexts'], { timeoutMs: 5_000 })
    if (probe.code === 0) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`slapd did not answer on ${url}: ${readFileSync(logFile, 'utf8').slice(-2000)}`)
}

export async function startSlapd(): Promise<SlapdHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'portier-slapd-'))
  await mkdir(join(dir, 'db'))
  await makeTestPki(dir, { ca: 'portier test LDAP CA', server: '127.0.0.1' })
  const servicePassword = randomBytes(12).toString('base64url')
  const servicePasswordFile = join(dir, 'service-password')
  await writeFile(servicePasswordFile, `${servicePassword}\n`, { mode: 0o600 })
  const conf = join(dir, 'slapd.conf')
  await writeFile(conf, slapdConf(dir))
  await writeFile(join(dir, 'directory.ldif'), ldif(servicePassword))
  const loaded = await run(SLAPADD_BIN, ['-f', conf, '-l', join(dir, 'directory.ldif')])
  if (loaded.code !== 0) throw new Error(`slapadd failed: ${loaded.stderr}`)
  const [port, ldapsPort] = [await freePort(), await freePort()]
  const url = `ldap://127.0.0.1:${port}`
  const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`
  const logFile = join(dir, 'slapd.log')
  let child: ChildProcess | undefined
  let removed = false

  const start = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) return
    const log = openSync(logFile, 'a')
    // -d: stays in the foreground (so the test owns the process) and logs to stderr.
    child = spawn(SLAPD_BIN, ['-f', conf, '-h', `${url}/ ${ldapsUrl}/`, '-d', 'stats'], { stdio: ['ignore', log, log] })
    closeSync(log)
    live.add(child)
    const started = child
    child.once('exit', () => live.delete(started))
    await waitReady(url, child, logFile)
  }

  const pause = async (): Promise<void> => {
    const running = child
    child = undefined
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()))
    running.kill('SIGTERM')
    const killer = setTimeout(() => running.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(killer)
  }

  await start()
  return {
    url,
    ldapsUrl,
    caFile: join(dir, 'ca.crt'),
    servicePasswordFile,
    serviceDn: SERVICE_DN,
    userBase: `ou=people,${SUFFIX}`,
    groupBase: `ou=groups,${SUFFIX}`,
    dir,
    pause,
    start,
    async stop() {
      await pause()
      if (removed) return
      removed = true
      if (process.env.PORTIER_KEEP_TMP) return
      await rm(dir, { recursive: true, force: true })
    },
  }
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

/** startSlapd, stopped in the test's teardown. */
export async function slapdFixture(t: Test): Promise<SlapdHandle> {
  const slapd = await startSlapd()
  t.teardown(() => slapd.stop())
  return slapd
}
