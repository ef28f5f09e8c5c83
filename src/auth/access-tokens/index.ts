// Public surface of access tokens: personal tokens and robot accounts in the store, used as the password of Basic logins and at the token endpoint.
export { AccessTokens, AccessTokenError, describeToken, ROBOT_PREFIX, type AccessTokensOptions, type CreateRequest, type TokenAuditEvent, type TokenCheck, type TokenRefusalReason } from './tokens.js'
export type { AccessTokenRecord } from './table.js'
export { createTokenLogin, isTokenPassword, withAccessTokens, type TokenLogin } from './login.js'
export { formatTokenScope, parseTokenScope, parseTokenScopes } from './scopes.js'
export { generateSecret, hashSecret, isAccessTokenSecret, TOKEN_PREFIX } from './secret.js'
export { accessTokensSection, type AccessTokensConfig } from './section.js'
export { parseCreateBody, tokenView, type CreateBody, type ExpiryPolicy, type TokenState, type TokenView } from './requests.js'
