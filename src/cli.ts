#!/usr/bin/env node
// The portier binary: picks the command and hands it its arguments (src/cli/<command>.ts); exit codes and usage errors.
// First: refuses an unsupported Node.js before any other module runs.
import './runtime.js'
import { readFileSync } from 'node:fs'
import { ConfigError } from './config/index.js'
import { EXIT_USAGE, UsageError } from './cli/args.js'
import { commands, help } from './cli/commands.js'
import { EXIT_CONFIG, printConfigErrors } from './cli/load.js'

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/**
 * The command and its arguments. The command comes first; options written before it
 * (`portier --config FILE serve`, which the first parser took) are handed to it all the same.
 */
function split(argv: string[]): { name: string; args: string[] } {
  const at = argv.findIndex((arg) => !arg.startsWith('-'))
  if (at < 0) return { name: '', args: argv }
  if (at === 0) return { name: argv[0] as string, args: argv.slice(1) }
  if (argv[at - 1] !== undefined && ['-c', '--config', '-f', '--file', '-o', '--out', '-m', '--mode'].includes(argv[at - 1] as string)) {
    // `portier --config FILE serve`: FILE is a value, the command comes after it.
    const next = argv.findIndex((arg, index) => index > at && !arg.startsWith('-'))
    if (next < 0) return { name: '', args: argv }
    return { name: argv[next] as string, args: [...argv.slice(0, next), ...argv.slice(next + 1)] }
  }
  return { name: argv[at] as string, args: [...argv.slice(0, at), ...argv.slice(at + 1)] }
}

async function main(argv: string[]): Promise<number> {
  const first = argv[0]
  if (first === '-h' || first === '--help') {
    process.stdout.write(help)
    return 0
  }
  if (first === '-v' || first === '--version') {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  if (argv.length === 0) {
    process.stdout.write(help)
    return EXIT_USAGE
  }
  const { name, args } = split(argv)
  // `portier help [COMMAND]`, as git and docker have it.
  if (name === 'help') {
    const topic = args.find((arg) => !arg.startsWith('-'))
    const load = topic ? commands[topic] : undefined
    if (topic && !load) return unknownCommand(topic)
    process.stdout.write(load ? (await load()).usage : help)
    return 0
  }
  const load = commands[name]
  if (!load) {
    if (name === '') {
      process.stderr.write(`portier: no command given (only ${args.join(' ')})\n\n${help}`)
      return EXIT_USAGE
    }
    return unknownCommand(name)
  }
  const command = await load()
  try {
    return await command.run(args)
  } catch (error) {
    if (error instanceof ConfigError) {
      printConfigErrors(error)
      return EXIT_CONFIG
    }
    if (error instanceof UsageError) {
      process.stderr.write(`portier: ${error.message}\n\n${command.usage}`)
      return EXIT_USAGE
    }
    throw error
  }
}

function unknownCommand(name: string): number {
  process.stderr.write(`portier: unknown command ${name}\n\n${help}`)
  return EXIT_USAGE
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`portier: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exitCode = 1
  },
)
