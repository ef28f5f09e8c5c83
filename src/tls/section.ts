// The `tls` config section: Portier's own HTTPS listener and where its certificates come from.
import { z } from 'zod'
import { flag, list, oneOf, section, strings, text } from '../config/fields.js'
import { acmeSection } from './acme/section.js'

const certificateFiles = section({ cert: text(), key: text() })

export const tlsSection = section({
  enabled: flag().default(true),
  certificates: list(certificateFiles).default(() => []),
  self_signed: section({
    dir: text().default('certs/self-signed'),
    hosts: strings().default(() => []),
  }).prefault({}),
  min_version: oneOf(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  acme: acmeSection,
}).prefault({})

export type TlsConfig = z.output<typeof tlsSection>
export type CertificateFiles = z.output<typeof certificateFiles>
