// `portier passwd add|remove|list`: the command line of the htpasswd manager (src/auth/passwd.ts).
import { configOption, configPath, helpOption, parseCommand, UsageError } from './args.js'
import { load } from './load.js'

export const usage = `Usage: portier passwd add|remove|list [--file FILE] [--mode MODE] [USER]

Manages an htpasswd file (bcrypt, cost 10) that Portier, htpasswd(1) and registry:2 all read.
  add USER      adds USER or sets a new password; the password is read from the terminal, or the
                first line of stdin (at least 8 characters)
  remove USER   removes USER (exit 1 when there is no such user)
  list          prints the users, one a line

Options:
  -f, --file FILE     the htpasswd file (default: auth.htpasswd.path of the configuration)
  -m, --mode MODE     the file's permissions, e.g. 0644 when the gateway runs as another user (a
                      container); default: an existing file keeps its mode, a new one is 0600
  -c, --config FILE   YAML configuration that names the file (default: $PORTIER_CONFIG, else built-in defaults)
  -h, --help          this text
`

const fileOption = { type: 'string', short: 'f' } as const
const modeOption = { type: 'string', short: 'm' } as const

export async function passwd(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand('passwd', args, { file: fileOption, mode: modeOption, config: configOption, help: helpOption }, 2)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const [action, user] = positionals
  if (!action) throw new UsageError('passwd needs add, remove or list', 'passwd')
  const file = values.file || load(configPath(values.config)).config.auth.htpasswd.path
  const { passwdCommand, parseMode } = await import('../auth/passwd.js')
  try {
    process.stdout.write(await passwdCommand(action, file, user, values.mode !== undefined ? { mode: parseMode(values.mode) } : {}))
  } catch (error) {
    process.stderr.write(`portier: ${(error as Error).message}\n`)
    return 1
  }
  return 0
}
