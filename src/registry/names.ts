// The distribution grammar for repository names, tags and digests.

const component = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*'
const repositoryPattern = new RegExp(`^${component}(?:/${component})*$`)
const tagPattern = /^[\w][\w.-]{0,127}$/
// OCI image-spec descriptor grammar: algorithm-component (separator algorithm-component)* ':' encoded.
const digestPattern = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/

export const MAX_REPOSITORY_LENGTH = 255

/** The encodings of the registered algorithms (OCI image-spec), and sha384 which distribution accepts too: lower-case hex of a fixed length. */
const registeredEncodings: ReadonlyMap<string, RegExp> = new Map([
  ['sha256', /^[a-f0-9]{64}$/],
  ['sha384', /^[a-f0-9]{96}$/],
  ['sha512', /^[a-f0-9]{128}$/],
  ['blake3', /^[a-f0-9]{64}$/],
])

/**
 * The grammar sets no length for algorithms nobody registered, so without a cap a client can make
 * the gateway forward (and log) kilobytes of "digest". 32 characters name any real algorithm, and
 * 512 encoded characters hold a 2048-bit hash in hex, four times the largest registered one.
 */
export const MAX_ALGORITHM_LENGTH = 32
export const MAX_ENCODED_LENGTH = 512

export function isValidRepository(name: string): boolean {
  return name.length > 0 && name.length <= MAX_REPOSITORY_LENGTH && repositoryPattern.test(name)
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag)
}

export function isValidDigest(digest: string): boolean {
  if (digest.length > MAX_ALGORITHM_LENGTH + 1 + MAX_ENCODED_LENGTH) return false
  const match = digestPattern.exec(digest)
  if (!match) return false
  const algorithm = match[1] as string
  const encoded = match[2] as string
  const registered = registeredEncodings.get(algorithm)
  if (registered) return registered.test(encoded)
  return algorithm.length <= MAX_ALGORITHM_LENGTH && encoded.length <= MAX_ENCODED_LENGTH
}

export function isValidReference(reference: string): boolean {
  return reference.includes(':') ? isValidDigest(reference) : isValidTag(reference)
}
