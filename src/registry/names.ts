// The distribution grammar for repository names, tags and digests.

const component = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*'
const repositoryPattern = new RegExp(`^${component}(?:/${component})*$`)
const tagPattern = /^[\w][\w.-]{0,127}$/
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const sha256Pattern = /^sha256:[a-f0-9]{64}$/

export const MAX_REPOSITORY_LENGTH = 255

export function isValidRepository(name: string): boolean {
  return name.length > 0 && name.length <= MAX_REPOSITORY_LENGTH && repositoryPattern.test(name)
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag)
}

export function isValidDigest(digest: string): boolean {
  if (!digestPattern.test(digest)) return false
  return !digest.startsWith('sha256:') || sha256Pattern.test(digest)
}

export function isValidReference(reference: string): boolean {
  return reference.includes(':') ? isValidDigest(reference) : isValidTag(reference)
}
