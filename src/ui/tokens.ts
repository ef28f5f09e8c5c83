// The web UI's "Access tokens" API (/ui/api/tokens): every signed-in user lists, creates and revokes their own; administrators see all and make robot accounts.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AccessTokenError, parseCreateBody, tokenView, type AccessTokens, type ExpiryPolicy } from '../auth/access-tokens/index.js'
import { RegistryError } from '../registry/errors.js'
import type { AccessTokenEntry, AccessTokenPage, CreatedAccessToken } from './types.js'
import type { Session } from './session.js'
import type { UiClient } from './api.js'

/** What the page needs: the tokens in the store and the lifetimes allowed (access_tokens.*). */
export interface UiAccessTokens {
  tokens: AccessTokens
  policy: ExpiryPolicy
}

/** The API's checks and answers, lent by src/ui/api.ts. */
export interface TokenRouteKit {
  requireSession(req: IncomingMessage): Session
  requireStateChange(req: IncomingMessage, client: UiClient, session: Session): void
  isAdmin(session: Session, client: UiClient): boolean
  /** The groups the ACL sees for the session's user (single sign-on claims, a directory's groups). */
  groupsOf(session: Session): readonly string[] | undefined
  readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>>
  sendJson(res: ServerResponse, status: number, body: unknown): void
}

const days = (ms: number): string => (ms === 0 ? '' : ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${Math.round(ms / 3_600_000)}h`)

function refusal(error: unknown): unknown {
  if (!(error instanceof AccessTokenError)) return error
  if (error.kind === 'not_found') return new RegistryError('NOT_FOUND', { reason: error.message }, {}, error.message)
  // UNSUPPORTED is the catalogue's 400 for a body the UI cannot take (as for maintenance switches).
  return new RegistryError(error.kind === 'conflict' ? 'DENIED' : 'UNSUPPORTED', { reason: error.message }, {}, error.message)
}

export async function tokensRoute(kit: TokenRouteKit, deps: UiAccessTokens, req: IncomingMessage, res: ServerResponse, params: URLSearchParams, client: UiClient): Promise<void> {
  const session = kit.requireSession(req)
  // Tokens act as an account: with auth.mode none there is none (and nothing needs a token).
  if (session.user === '') throw new RegistryError('DENIED', { reason: 'access tokens need an account: sign in (auth.mode none has no accounts)' })
  const admin = kit.isAdmin(session, client)
  const { tokens, policy } = deps
  try {
    if (req.method === 'POST') {
      kit.requireStateChange(req, client, session)
      const body = parseCreateBody(await kit.readJsonBody(req), policy)
      if (body.robot && !admin) throw new RegistryError('DENIED', { reason: 'robot accounts are made by administrators (ui.admin_users)' })
      if (body.owner !== undefined && body.owner !== session.user && !admin) throw new RegistryError('DENIED', { reason: 'you make tokens for yourself only' })
      const owner = body.owner ?? session.user
      // A token of one's own gets the groups the ACL sees for this session now: with them the ACL gives the token what
      // its owner has (a token made for someone else gets none of the maker's). Later group changes at the provider or
      // directory reach tokens made after them.
      const groups = owner === session.user && !body.robot ? kit.groupsOf(session) : undefined
      const { secret, record } = await tokens.create({ ...body, owner, by: session.user, client: client.clientIp, ...(groups && groups.length > 0 ? { groups } : {}) })
      return kit.sendJson(res, 201, { token: secret, ...(tokenView(record) satisfies AccessTokenEntry) } satisfies CreatedAccessToken)
    }
    if (req.method === 'DELETE') {
      kit.requireStateChange(req, client, session)
      const id = params.get('id') ?? ''
      const record = await tokens.revoke(id, session.user, client.clientIp, (token) => admin || (!token.robot && token.owner === session.user))
      return kit.sendJson(res, 200, tokenView(record) satisfies AccessTokenEntry)
    }
    const all = admin && params.get('all') === '1'
    const page: AccessTokenPage = {
      tokens: (await tokens.list(all ? {} : { owner: session.user })).map((record) => tokenView(record)),
      admin,
      defaultExpiry: days(policy.default_expiry),
      maxExpiry: days(policy.max_expiry),
    }
    return kit.sendJson(res, 200, page)
  } catch (error) {
    throw refusal(error)
  }
}
