// One certificate order: a new P-256 key and CSR, the challenge of the configured type for each
// name (answered by the ChallengeResponder), finalisation, and the issued chain.
import acme from 'acme-client'
import type { ChallengeResponder } from './challenges.js'

export type ChallengeType = 'http-01' | 'tls-alpn-01'

export interface OrderRequest {
  client: acme.Client
  domains: string[]
  challenge: ChallengeType
  responder: ChallengeResponder
  email: string
  /** Fetch each challenge the way the CA will before asking it to validate. */
  selfCheck: boolean
}

export interface IssuedCertificate {
  keyPem: string
  /** Leaf first, then the intermediates. */
  chainPem: string
}

export async function orderCertificate(request: OrderRequest): Promise<IssuedCertificate> {
  const { client, domains, challenge: type, responder } = request
  const key = await acme.crypto.createPrivateEcdsaKey('P-256')
  const [, csr] = await acme.crypto.createCsr({ commonName: domains[0] as string, altNames: domains }, key)
  const chainPem = await client.auto({
    csr,
    ...(request.email ? { email: request.email } : {}),
    termsOfServiceAgreed: true,
    skipChallengeVerification: !request.selfCheck,
    challengePriority: [type],
    challengeCreateFn: async (authz, challenge, keyAuthorization) => {
      const offered: string = challenge.type
      if (offered !== type) {
        const offered = authz.challenges.map((c) => c.type).join(', ')
        throw new Error(`the CA offers no ${type} challenge for ${authz.identifier.value} (offered: ${offered})`)
      }
      if (type === 'http-01') responder.addHttp(challenge.token, keyAuthorization)
      else {
        const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey('P-256'))
        responder.addAlpn(authz.identifier.value, alpnKey.toString(), alpnCert.toString())
      }
    },
    challengeRemoveFn: async (authz, challenge) => {
      // acme-client's types know only http-01 and dns-01; its objects carry every type the CA offers.
      const offered: string = challenge.type
      if (offered === 'http-01') responder.removeHttp(challenge.token)
      else if (offered === 'tls-alpn-01') responder.removeAlpn(authz.identifier.value)
    },
  })
  return { keyPem: key.toString(), chainPem }
}
