// Blobs from storage: digest → path is strict (sha256/sha384/sha512, lowercase hex of exact length), names are re-checked, and Range is read as the registry reads it.
import t from 'tap'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { blobDataPath, layerLinkPath, parseBlobDigest } from '../../src/storage/paths.js'
import { openLinkedBlob } from '../../src/storage/linked-blob.js'
import { planRange } from '../../src/storage/ranges.js'

const HEX256 = 'a'.repeat(62) + '0f'
const HEX512 = '0123456789abcdef'.repeat(8)
const ROOT = '/srv/registry'

t.test('digest → blob data path: exactly distribution\'s layout for sha256 and sha512', async (t) => {
  t.equal(blobDataPath(ROOT, `sha256:${HEX256}`), `${ROOT}/docker/registry/v2/blobs/sha256/aa/${HEX256}/data`)
  t.equal(blobDataPath(ROOT, `sha512:${HEX512}`), `${ROOT}/docker/registry/v2/blobs/sha512/01/${HEX512}/data`)
  t.equal(layerLinkPath(ROOT, 'library/alpine', `sha256:${HEX256}`), `${ROOT}/docker/registry/v2/repositories/library/alpine/_layers/sha256/${HEX256}/link`)
})

t.test('anything but a registered algorithm with lowercase hex of its exact length never becomes a path', async (t) => {
  const refused = [
    `sha256:${HEX256.toUpperCase()}`, // uppercase hex
    `sha256:${HEX256.slice(0, 63)}A`, // one uppercase letter
    `sha256:${HEX256.slice(0, 63)}`, // too short
    `sha256:${HEX256}0`, // too long
    `sha256:${HEX512}`, // sha512's length under sha256
    `sha512:${HEX256}`, // sha256's length under sha512
    `sha384:${'a'.repeat(64)}`, // sha256's length under sha384
    `blake3:${HEX256}`,
    `SHA256:${HEX256}`,
    `sha256:../../../../etc/passwd`,
    `sha256:${'a'.repeat(60)}/../`,
    `sha256:..%2f${'a'.repeat(58)}`,
    `sha256:${'a'.repeat(63)}\u0000`,
    `sha256:${'g'.repeat(64)}`,
    `sha256 :${HEX256}`,
    `:${HEX256}`,
    HEX256,
    '',
    `sha256:${HEX256}:${HEX256}`,
  ]
  for (const digest of refused) {
    t.equal(parseBlobDigest(digest), undefined, `${JSON.stringify(digest)} is not parsed`)
    t.equal(blobDataPath(ROOT, digest), undefined, `${JSON.stringify(digest)}: no data path`)
    t.equal(layerLinkPath(ROOT, 'a/app', digest), undefined, `${JSON.stringify(digest)}: no link path`)
  }
})

t.test('repository names are checked again: no traversal, no absolute or empty component', async (t) => {
  for (const name of ['../etc', 'a/../../b', '/abs', 'a//b', 'a/./b', '.', '..', 'A/b', 'a\\b', '', 'a/b/', 'a\u0000b', '_layers/..']) {
    t.equal(layerLinkPath(ROOT, name, `sha256:${HEX256}`), undefined, `${JSON.stringify(name)}: no link path`)
  }
  t.ok(layerLinkPath(ROOT, 'a.b/c_d/e-f/g__h', `sha256:${HEX256}`), 'a valid name with every separator has one')
})

t.test('a blob opens only when the repository links exactly that digest', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'portier-storage-unit-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const digest = `sha256:${HEX256}`
  const data = blobDataPath(root, digest) as string
  const link = layerLinkPath(root, 'a/app', digest) as string
  await mkdir(join(data, '..'), { recursive: true })
  await writeFile(data, 'blob bytes')

  const noLink = await openLinkedBlob(root, 'a/app', digest)
  t.match(noLink, { kind: 'fallback', reason: 'no_link' }, 'no link: the registry answers')

  await mkdir(join(link, '..'), { recursive: true })
  await writeFile(link, `sha256:${'b'.repeat(64)}`)
  t.match(await openLinkedBlob(root, 'a/app', digest), { kind: 'fallback', reason: 'other_link' }, 'a link to another digest: the registry answers')
  await writeFile(link, `${digest}\n`)
  t.match(await openLinkedBlob(root, 'a/app', digest), { kind: 'fallback', reason: 'other_link' }, 'a link with anything more than the digest: the registry answers')

  // As registry 2.8 stores a blob pushed under its sha512 (or sha384) digest: that link names the sha256 data.
  for (const [algorithm, length] of [['sha512', 128], ['sha384', 96]] as const) {
    const other = `${algorithm}:${'c'.repeat(length)}`
    const otherLink = layerLinkPath(root, 'a/app', other) as string
    await mkdir(join(otherLink, '..'), { recursive: true })
    await writeFile(otherLink, digest)
    const followed = await openLinkedBlob(root, 'a/app', other)
    t.match(followed, { kind: 'open', size: 10, digest }, `${algorithm}: the link to the sha256 data is followed, and the answer names the sha256 digest`)
    if (followed.kind === 'open') await followed.handle.close()
    await writeFile(otherLink, `sha512:${'d'.repeat(128)}`)
    t.match(await openLinkedBlob(root, 'a/app', other), { kind: 'fallback', reason: 'other_link' }, `${algorithm}: a link to anything but sha256 data: the registry answers`)
  }

  await writeFile(link, digest)
  const opened = await openLinkedBlob(root, 'a/app', digest)
  t.equal(opened.kind, 'open')
  if (opened.kind === 'open') {
    t.equal(opened.size, 10, 'size from fstat')
    await opened.handle.close()
  }
  t.match(await openLinkedBlob(root, 'b/app', digest), { kind: 'fallback', reason: 'no_link' }, 'another repository without the link: the registry answers')
  t.match(await openLinkedBlob(root, '../a/app', digest), { kind: 'fallback', reason: 'not_readable' }, 'a name outside the grammar: nothing is opened')

  await rm(data)
  t.match(await openLinkedBlob(root, 'a/app', digest), { kind: 'fallback', reason: 'no_file' }, 'link but no data file: the registry answers')
  await mkdir(data)
  t.match(await openLinkedBlob(root, 'a/app', digest), { kind: 'fallback', reason: 'no_file' }, 'data is a directory: the registry answers')
})

t.test('Range as Go\'s ServeContent reads it; forms it answers its own way go to the registry', async (t) => {
  const size = 1000
  t.same(planRange({}, size), { kind: 'whole' })
  t.same(planRange({ range: 'bytes=10-19' }, size), { kind: 'part', start: 10, end: 19 })
  t.same(planRange({ range: 'bytes=10-' }, size), { kind: 'part', start: 10, end: 999 })
  t.same(planRange({ range: 'bytes=990-5000' }, size), { kind: 'part', start: 990, end: 999 }, 'an end past the size is clipped')
  t.same(planRange({ range: 'bytes=-5' }, size), { kind: 'part', start: 995, end: 999 }, 'a suffix')
  t.same(planRange({ range: 'bytes=-5000' }, size), { kind: 'part', start: 0, end: 999 }, 'a suffix longer than the blob: all of it')
  t.same(planRange({ range: 'bytes=1000-' }, size), { kind: 'unsatisfiable' }, 'a start at the size: 416')
  t.same(planRange({ range: 'bytes=2000-3000' }, size), { kind: 'unsatisfiable' })
  t.same(planRange({ range: 'bytes=0-' }, 0), { kind: 'unsatisfiable' }, 'any range of an empty blob: 416')
  for (const range of ['bytes=0-1,5-6', 'junk', 'bytes=5-1', 'bytes=-0', 'bytes=+1-2', 'bytes=a-b', 'items=0-1', 'bytes=1', 'bytes=-']) {
    t.same(planRange({ range }, size), { kind: 'registry' }, `${range}: the registry answers`)
  }
  t.same(planRange({ range: 'bytes=0-1', 'if-range': '"x"' }, size), { kind: 'registry' }, 'conditional: the registry answers')
  t.same(planRange({ 'if-none-match': '"x"' }, size), { kind: 'registry' })
})
