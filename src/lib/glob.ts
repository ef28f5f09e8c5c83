// Repository-name globs, one dialect for the ACL and the size limits: * within a path component, ** across components, ? one character.

/** Escapes every character a regular expression would read as syntax. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

// Regular-expression source (unanchored) for a glob. `atStart` says the text begins the whole glob:
// the ACL compiles the pieces around a `${account}` placeholder separately.
//
// A `**` that stands for whole components (between slashes, or leading before a slash) matches zero
// or more of them: `team/**/cache` matches `team/cache` as well as `team/x/y/cache`. Anywhere else
// (a trailing `ml/**`, `a**`) it matches any characters, slashes included.
export function globSource(glob: string, atStart = true): string {
  let out = ''
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] as string
    if (char === '*' && glob[i + 1] === '*') {
      const bounded = (i === 0 ? atStart : glob[i - 1] === '/') && glob[i + 2] === '/'
      if (bounded) {
        out += '(?:.*/)?'
        i += 2
      } else {
        out += '.*'
        i += 1
      }
    } else if (char === '*') out += '[^/]*'
    else if (char === '?') out += '[^/]'
    else out += escapeRegExp(char)
  }
  return out
}

/** A regular expression matching whole repository names against `glob`. */
export function compileGlob(glob: string): RegExp {
  return new RegExp(`^${globSource(glob)}$`)
}

/** What a usable glob looks like (lowercase name characters, * ? and at most two * in a row), for config schemas. */
export const repositoryGlobPattern = /^(?!.*\*{3})[a-z0-9._\-/*?]+$/
export const repositoryGlobExpected = 'a repository glob: lowercase name characters (a-z 0-9 . _ - /) with * (within a path component), ** (across components) and ? (one character)'

/** Why `glob` cannot match repository names, or undefined when it is fine (placeholders are the caller's to remove first). */
export function globProblem(glob: string): string | undefined {
  if (glob === '') return 'an empty glob'
  if (/\*{3,}/.test(glob)) return 'three or more * in a row'
  if (!/^[a-z0-9._\-/*?]*$/.test(glob)) return 'characters no repository name can contain'
  return undefined
}
