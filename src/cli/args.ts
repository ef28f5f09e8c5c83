// Arguments of one command, read with util.parseArgs: the options commands share, and parse errors as usage errors.
import { parseArgs, type ParseArgsConfig } from 'node:util'

/** Wrong arguments: the command's usage follows the message on stderr, exit code EXIT_USAGE. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose usage to print; undefined for the global help. */
    readonly command?: string,
  ) {
    super(message)
  }
}

/** EX_USAGE (sysexits.h): the command was used the wrong way. */
export const EXIT_USAGE = 64

export const helpOption = { type: 'boolean', short: 'h' } as const
export const configOption = { type: 'string', short: 'c' } as const

/** What each option that takes a value needs, for "--config needs a file". */
const VALUE_NAMES: Readonly<Record<string, string>> = {
  config: 'a file',
  file: 'a file',
  out: 'a directory',
  mode: 'permissions like 0644',
  'admin-url': 'a URL like http://127.0.0.1:9113',
  user: 'a user name',
  ca: 'a certificate file',
  message: 'a text',
  'retry-after': 'a duration like 10m',
  name: 'a name',
  scope: "a scope like 'repository:team/*:pull,push'",
  expires: 'a duration like 90d, or never',
  owner: 'a user name',
  member: 'a user name',
  'for-user': 'a user name',
  'for-group': 'a group name',
  for: 'a user name',
  repository: 'a repository name or glob like team/*',
  actions: 'actions like pull,push',
}

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * util.parseArgs in strict mode for one command; its errors become UsageErrors that say what was wrong
 * in the words of the old hand-written parser ("unknown option --x", "--config needs a file").
 */
export function parseCommand<T extends Options>(command: string, args: string[], options: T, positionals: number) {
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: positionals > 0 })
    if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument ${parsed.positionals[positionals] as string}`, command)
    return parsed
  } catch (error) {
    throw usageError(command, error)
  }
}

function usageError(command: string, error: unknown): unknown {
  if (error instanceof UsageError) return error
  const code = (error as NodeJS.ErrnoException).code
  const message = error instanceof Error ? error.message : String(error)
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? ''
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${quoted}`, command)
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${quoted}`, command)
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '-c, --config <value>' argument missing", "... argument is ambiguous", "Option '-h, --help' does not take an argument"
      const name = /--([a-z-]+)/.exec(quoted)?.[1] ?? quoted
      if (message.includes('does not take an argument')) return new UsageError(`--${name} takes no value`, command)
      return new UsageError(`--${name} needs ${VALUE_NAMES[name] ?? 'a value'}${message.includes('ambiguous') ? ' (a value starting with "-" goes as --' + name + '=VALUE)' : ''}`, command)
    }
    default:
      return error
  }
}

/** --config, else $PORTIER_CONFIG, else none (built-in defaults). */
export function configPath(value: string | undefined): string | undefined {
  return value || process.env.PORTIER_CONFIG || undefined
}
