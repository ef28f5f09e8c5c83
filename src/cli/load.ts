// The configuration as commands load it: from --config or $PORTIER_CONFIG, with the files it names checked, and its problems printed.
import { ConfigError, formatProblem } from '../config/index.js'
import { loadConfig, type LoadedConfig } from '../app/config.js'

/** EXIT 2: the configuration is invalid (check-config, and serve before listening). */
export const EXIT_CONFIG = 2

export function load(file: string | undefined): LoadedConfig {
  return loadConfig(file ? { file } : {})
}

/** Throws a ConfigError naming each file serve could not load (missing, unreadable, a key that does not match). */
export async function checkFiles(config: LoadedConfig['config'], file: string | undefined): Promise<void> {
  const { fileProblems } = await import('../app/config-files.js')
  const problems = await fileProblems(config, file ?? 'defaults')
  if (problems.length > 0) throw new ConfigError(problems)
}

/** What serve and check-config both do first: load the configuration, then every file it names. */
export async function loadChecked(file: string | undefined): Promise<LoadedConfig> {
  const loaded = load(file)
  await checkFiles(loaded.config, file)
  return loaded
}

export function printConfigErrors(error: ConfigError): void {
  process.stderr.write(`portier: the configuration has ${error.problems.length} problem${error.problems.length === 1 ? '' : 's'}:\n`)
  for (const problem of error.problems) process.stderr.write(`  ${formatProblem(problem)}\n`)
}
