// Public surface of the config module: loading YAML and PORTIER_* variables against a registered schema, field kinds, units.
export { loadWith, ConfigError, formatProblem, envName, leafPaths } from './load.js'
export type { ConfigProblem, ConfigSpec, CrossCheck, Loaded, LoadOptions } from './load.js'
export type { KeyProblem } from './fields.js'
export { parseSize, parseDuration, formatBytes } from './units.js'
