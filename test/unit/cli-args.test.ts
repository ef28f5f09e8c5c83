// One command's arguments through util.parseArgs: parse errors become usage errors in plain words, naming the command.
import t from 'tap'
import { configOption, helpOption, parseCommand, UsageError } from '../../src/cli/args.js'

const options = { config: configOption, out: { type: 'string', short: 'o' }, help: helpOption } as const

function usageError(args: string[], positionals = 0): UsageError {
  try {
    parseCommand('token-key', args, options, positionals)
  } catch (error) {
    if (error instanceof UsageError) return error
    throw error
  }
  throw new Error(`no usage error for ${args.join(' ')}`)
}

t.test('values, short forms, --name=value and --help', async (t) => {
  const { values } = parseCommand('token-key', ['-o', 'keys', '--config=portier.yaml', '-h'], options, 0)
  t.same({ ...values }, { out: 'keys', config: 'portier.yaml', help: true })
})

t.test('each parse error names what was wrong and the command whose usage follows', async (t) => {
  const unknown = usageError(['--frobnicate'])
  t.equal(unknown.message, 'unknown option --frobnicate')
  t.equal(unknown.command, 'token-key')
  t.equal(usageError(['-x']).message, 'unknown option -x')
  t.equal(usageError(['--config']).message, '--config needs a file')
  t.equal(usageError(['-o']).message, '--out needs a directory')
  t.match(usageError(['--config', '--help']).message, /^--config needs a file \(a value starting with "-" goes as --config=VALUE\)$/)
  t.equal(usageError(['--help=yes']).message, '--help takes no value')
  t.equal(usageError(['extra']).message, 'unexpected argument extra')
  t.equal(usageError(['add', 'alice', 'bob'], 2).message, 'unexpected argument bob')
})
