// `portier check-config`: validates the configuration and the files it names, as serve would load them.
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { loadChecked } from './load.js'

export const usage = `Usage: portier check-config [--config FILE]

Validates the configuration and every file it names (certificates and their keys, htpasswd files,
token keys, secret files) as serve would load them, then exits: 0 = valid, 2 = problems (each one
on stderr with its file, key, what was expected and what was found).

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -h, --help          this text
`

export async function checkConfig(args: string[]): Promise<number> {
  const { values } = parseCommand('check-config', args, { config: configOption, help: helpOption }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const file = configPath(values.config)
  // What serve loads: certificates and their keys, htpasswd files, token keys, secret files.
  const { sources } = await loadChecked(file)
  process.stdout.write(`configuration is valid (${sources.length > 0 ? sources.join(', ') : 'defaults only'})\n`)
  return 0
}
