// The admin API's access token routes: GET /admin/api/tokens (list), POST (create; the secret is in this answer only), DELETE ?id= (revoke).
import { AccessTokenError, parseCreateBody, tokenView, type AccessTokens, type ExpiryPolicy } from '../auth/access-tokens/index.js'
import { AdminError } from '../observe/admin.js'
import { reply, type AdminApi } from './api.js'

export const TOKENS_PATH = '/admin/api/tokens'

function refusal(error: unknown): unknown {
  if (!(error instanceof AccessTokenError)) return error
  const code = error.kind === 'not_found' ? 'ADMIN_NOT_FOUND' : error.kind === 'conflict' ? 'ADMIN_CONFLICT' : 'ADMIN_BAD_REQUEST'
  return new AdminError(code, { message: error.message })
}

/** Every route needs an administrator: they see and revoke every token and make robot accounts. */
export function registerTokenRoutes(api: AdminApi, tokens: AccessTokens, policy: ExpiryPolicy): void {
  api.route('GET', TOKENS_PATH, async (call) => {
    const owner = call.params.get('owner')
    return { tokens: (await tokens.list(owner ? { owner } : {})).map((record) => tokenView(record)) }
  }, { admin: true })

  api.route('POST', TOKENS_PATH, async (call) => {
    try {
      const body = parseCreateBody(await call.json(), policy)
      const { secret, record } = await tokens.create({ ...body, owner: body.owner ?? call.user, by: call.user, client: call.clientIp })
      return reply(201, { token: secret, ...tokenView(record) })
    } catch (error) {
      throw refusal(error)
    }
  })

  api.route('DELETE', TOKENS_PATH, async (call) => {
    const id = call.params.get('id')
    if (!id) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'give the token to revoke as ?id=tok_…' })
    try {
      return tokenView(await tokens.revoke(id, call.user, call.clientIp, () => true))
    } catch (error) {
      throw refusal(error)
    }
  })
}
