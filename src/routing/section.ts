// The `routing` config section: how requests are spread over several upstreams.
import { z } from 'zod'
import { oneOf, section, text } from '../config/fields.js'

export const routingSection = section({
  /** Empty only with a single upstream (routingProblems insists on a choice when there are several). */
  strategy: oneOf(['', 'shared', 'by-repository', 'mirror']).default(''),
  balance: oneOf(['least-in-flight', 'round-robin']).default('least-in-flight'),
  secret: text({ pattern: /^(?:.{32,})?$/, expect: 'empty (use secret_file), or a random string of at least 32 characters' }).default(''),
  secret_file: text().default('data/routing/secret'),
  mirror: section({ require: oneOf(['all', 'quorum']).default('all') }).prefault({}),
}).prefault({})

export type RoutingConfig = z.output<typeof routingSection>
export type RoutingStrategy = Exclude<RoutingConfig['strategy'], ''>
