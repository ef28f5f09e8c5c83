// Public surface of Docker token auth: scopes and challenges, signing keys, the issuer, the token endpoint and the verifier.
export { bearerToken, challengeFor, covers, formatScope, intersectScopes, parseScope, parseScopes, type Action, type ChallengeError, type Scope } from './scope.js'
export { TokenError, type TokenErrorReason, type TokenProblem } from './errors.js'
export {
  ES256_OPENSSL_HINT,
  generateTokenKey,
  jwkThumbprint,
  libtrustKeyId,
  loadTokenKey,
  parseCertificateBundle,
  TokenKeyError,
  tokenJwks,
  writeTokenJwks,
  type GeneratedTokenKey,
  type GenerateTokenKeyOptions,
  type TokenAlg,
  type TokenJwks,
  type TokenKey,
} from './keys.js'
export { createIssuer, REFRESH_TOKEN_TYPE, refreshAudience, type IssuedToken, type Issuer, type IssuerOptions } from './issuer.js'
export { createTokenEndpoint, type Requester, type TokenEndpoint, type TokenEndpointOptions, type TokenEvent, type TokenRequestEnded } from './server.js'
export { createVerifier, parseAccessClaim, type JsonWebKeySet, type VerifiedToken, type Verifier, type VerifierKeys, type VerifierOptions } from './verifier.js'
