// Public surface of the config module.
export { loadConfig, ConfigError, formatProblem, envName, leafPaths } from './load.js'
export type { ConfigProblem, LoadedConfig } from './load.js'
export type { Config, CertificateFiles, AcmeConfig, UpstreamConfig, RoutingConfig, RoutingStrategy, RepositoryLimitRule, AclAction, AclMatch, AclRule, AclGroup, ThrottleConfig } from './schema.js'
export { parseSize, parseDuration, formatBytes } from './units.js'
